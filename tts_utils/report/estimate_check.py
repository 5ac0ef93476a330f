"""How close 00_setup's estimate came: estimated vs actual seconds per run and for the study,
from ``estimate.json`` and the engine sessions the run folders record. Used by 04_analysis.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tts_utils.paths import study_dir

if TYPE_CHECKING:
    pass
from tts_utils.store import RunFolder, read_json
from tts_utils.study.run_costs import ESTIMATE_JSON, GOAL_RATIO, run_key


def _parse_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp() if stamp else float("nan")


def estimate_vs_actual(study: str) -> pd.DataFrame:
    """Estimated vs actual seconds per run and for the whole study.

    Actual per run: the sum of ``wall_s`` (else ``engine_startup_s``, marked) of its engine sessions
    in ``segments.jsonl``; the study's: first session start to last session end. ``ratio`` =
    actual / estimate; ``within_goal``: within 20%. Rows for runs on one side only have NaN there;
    ``note`` says why (also when a latency subset fell back to measuring every problem).
    Raises FileNotFoundError without the study's estimate.json (written by 00_setup).
    """

    source = study_dir(study) / ESTIMATE_JSON
    if not source.exists():
        raise FileNotFoundError(f"{source}: no estimate of study {study!r}; 00_setup writes it (make setup-report)")
    estimate = read_json(source)
    expected: dict[str, float] = {}
    for run in estimate["runs"]:
        name = run_key(run)
        expected[name] = expected.get(name, 0.0) + run["engine_s"]
    actual: dict[str, float] = {}
    incomplete: dict[str, str] = {}
    spans = []
    for folder in sorted(p for p in study_dir(study).iterdir() if (p / "run.json").exists()):
        run = RunFolder(folder)
        name = run_key(read_json(run.run_file)["identity"])
        scope = run.status().get("latency_scope", "")
        if scope.startswith("every problem") and "latency_problems" in read_json(run.run_file)["identity"]:
            incomplete[name] = scope  # a subset run that measured everything: why it took longer
        for segment in run.segments():
            wall = segment.get("wall_s")
            if wall is None:
                wall = segment.get("engine_startup_s") or 0.0
                incomplete[name] = "wall_s not recorded: engine start only"
            actual[name] = actual.get(name, 0.0) + wall
            started = _parse_time(segment.get("started_at", ""))
            spans.append((started, started + wall))
    rows = [{"run": name, "estimated_s": expected.get(name, float("nan")), "actual_s": actual.get(name, float("nan")),
             "note": incomplete.get(name, "" if name in expected and name in actual
                                    else "not in the estimate" if name in actual else "no run folder")}
            for name in sorted(set(expected) | set(actual))]
    study_wall = (max(end for _, end in spans) - min(start for start, _ in spans)) if spans else float("nan")
    matched = [r for r in rows if not np.isnan(r["estimated_s"]) and not np.isnan(r["actual_s"])]
    rows.append({"run": "all runs (engine seconds, matched runs)", "estimated_s": sum(r["estimated_s"] for r in matched),
                 "actual_s": sum(r["actual_s"] for r in matched), "note": ""})
    rows.append({"run": f"study wall time ({estimate['placement']}; estimate includes grading)",
                 "estimated_s": estimate["wall_s"], "actual_s": study_wall,
                 "note": "first engine start to last engine stop (a resumed study includes its pauses)"})
    frame = pd.DataFrame(rows)
    frame["ratio"] = frame["actual_s"] / frame["estimated_s"]
    frame["within_goal"] = pd.Series([None if np.isnan(ratio) else bool(abs(ratio - 1.0) <= GOAL_RATIO)
                                      for ratio in frame["ratio"]], dtype=object)
    return frame
