"""Every study committed under reference_results/ re-rendered by dry run with today's kit: its
claims.csv and pick.csv must equal the committed files, so no committed page can go stale.

A dry run plans a GPU study on any machine and starts no engine; the traces studies replay their
real traces through vLLM's proposer on the CPU (about a minute each). After a change that moves a
verdict or its wording, re-render them all into reference_results/ and commit the result with it:
    .venv/bin/python tests/test_reference.py      (offline: TTS_TRACES_DIR and TTS_TRACE_TOKENIZER set)
The pick compares a study with the others' committed configurations, so if a pick moved, run it twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from tts_utils.paths import REPO_ROOT

REFERENCE = REPO_ROOT / "reference_results"
TRACES_ROUND = {"study": "", "model": "1.5b,7b", "num_problems": "1", "dry_run": "true"}
# study -> (pipeline command and notebook, profile, --set values): what rendered the committed files.
RENDERS: dict[str, tuple[list[str], str, dict[str, str]]] = {
    "h200-system": (["run", "04_analysis"], "h200-system", {}),
    "h200-grid": (["run", "04_analysis"], "h200-grid", {}),
    "h200-realistic": (["reproduce"], "h200-realistic", {
        "dry_run": "true", "tp_import": "[h200-system]", "dataset": "{math500}",
        "trace_sets": "[1.5b=public:r1-distill-qwen-1.5b.math500-first100, "
                      "7b=public:r1-distill-qwen-7b.math500-first100, 14b=proxy:7b]"}),
    "h100-traces": (["reproduce"], "one-gpu-traces", {**TRACES_ROUND, "study": "h100-traces"}),
    "h200-traces": (["reproduce"], "one-gpu-traces", {**TRACES_ROUND, "study": "h200-traces",
                                                      "tp_import": "[h200-system]"}),
}
COMPARED = ("claims.csv", "pick.csv")


def copy_of_reference(folder: Path, study: str) -> Path:
    """reference_results/ copied to ``folder`` with the archived run folders unpacked beside the others
    and ``study``'s figures left out, so that everything of it is rendered afresh (other studies'
    committed configurations.csv stay: the pick compares against them)."""
    shutil.copytree(REFERENCE, folder, ignore=shutil.ignore_patterns("reports"))
    shutil.rmtree(folder / "figures" / study)
    for archive in sorted((folder / "archives").glob("*-runs.tar.xz")):
        with tarfile.open(archive) as tar:
            tar.extractall(folder / "runs", filter="data")
    return folder


def render(study: str, outputs: Path, env: dict[str, str], math500: Path) -> subprocess.CompletedProcess:
    """``study``'s render command into ``outputs``; ``math500``: the dataset file the traces are checked against."""
    command, profile, values = RENDERS[study]
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value.format(math500=math500)}")]
    return subprocess.run([sys.executable, "-m", "tts_utils.pipeline", *command, "--profile", profile, *sets],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env, "TTS_OUTPUTS_DIR": str(outputs)})


def test_every_committed_study_has_a_render_command() -> None:
    committed = {path.parent.name for path in (REFERENCE / "figures").glob("*/claims.csv")}
    assert committed == set(RENDERS)


@pytest.mark.slow
@pytest.mark.parametrize("study", sorted(RENDERS))
def test_a_committed_study_equals_its_render_with_todays_kit(study: str, tmp_path: Path, math500_path: Path,
                                                            shared_trace_env: dict[str, str]) -> None:
    outputs = copy_of_reference(tmp_path / "reference", study)
    done = render(study, outputs, shared_trace_env, math500_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in COMPARED:
        committed = REFERENCE / "figures" / study / name
        assert committed.exists() == (outputs / "figures" / study / name).exists(), name
        if committed.exists():
            pd.testing.assert_frame_equal(pd.read_csv(outputs / "figures" / study / name), pd.read_csv(committed),
                                          obj=f"{study}/{name} (re-render: python tests/test_reference.py)")


if __name__ == "__main__":
    # Re-render every committed study; write back the files committed of it and its landing page.
    import tempfile

    from conftest import MATH500

    trace_env = {name: os.environ[name] for name in ("TTS_TRACES_DIR", "TTS_TRACE_TOKENIZER") if name in os.environ}
    with tempfile.TemporaryDirectory() as scratch:
        for name in sorted(RENDERS):
            outputs = copy_of_reference(Path(scratch) / name, name)
            result = render(name, outputs, trace_env, MATH500)
            if result.returncode:
                sys.exit(f"{name}: render failed\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
            for committed in (REFERENCE / "figures" / name).iterdir():
                shutil.copy(outputs / "figures" / name / committed.name, committed)
            shutil.copy(outputs / "reports" / name / "index.html", REFERENCE / "reports" / name / "index.html")
            print(f"{name}: re-rendered")
