"""Every shipped profile through the whole notebook chain on the CPU engine, trimmed to the tiny model.

Each profile in params/ keeps its features (batched accuracy pass, latency subset, budget forcing,
repetitions, n-gram speculation, trace sets and proxies, TP sizes up to 2, a local weights folder,
system-only mode) and loses only its size: the tiny model (loaded from a folder of random weights written by the kit where
the profile loads local weights), 4 problems, budgets 64 and 128. What only a GPU engine can do
(synthetic acceptance, CUDA graphs) is first shown refused by the pre-flight in one line, then run
with the engine's own acceptance. A profile added to params/ is in this matrix without an edit here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tts_utils.config import read_profile
from tts_utils.paths import PARAMS_DIR, REPO_ROOT
from tts_utils.pipeline import CHAIN

pytestmark = pytest.mark.engine
# Run whole by tests/test_notebooks.py (the embedded default, with its own stricter assertions).
COVERED_ELSEWHERE = {"smoke"}
PROFILES = sorted(path.stem for path in PARAMS_DIR.glob("*.yaml") if path.stem not in COVERED_ELSEWHERE)
# GPU-only settings: (parameter, its CPU stand-in, the words the pre-flight's refusal must contain).
GPU_ONLY = (("spec_acceptance", "engine", "needs a GPU engine"), ("cudagraph_mode", "", "needs a GPU engine"))


def cpu_trim(profile: dict, random_folder: Path, math500: Path) -> dict:
    """The profile's overrides that make it seconds of work on the CPU engine, features kept."""
    trimmed: dict = {"study": f"matrix-{profile.get('study', 'profile')}", "budgets": [64, 128], "num_problems": 4,
                     "cpu_kv_cache_gib": 1, "gpu_memory_utilization": 0.9}
    trimmed["model"] = "tiny"
    if "model_paths" in profile:  # a local weights folder: random weights of the tiny shape, written by the kit
        trimmed["model_paths"] = [f"tiny={random_folder}"]
    if profile.get("dataset", "auto") in {"hub", "auto"}:
        trimmed["dataset"] = str(math500)
    if profile.get("batch_concurrency"):
        trimmed["batch_concurrency"] = 4
    if profile.get("latency_problems"):
        trimmed["latency_problems"] = 2
    if profile.get("samples_per_problem", 1) > 1:
        trimmed["samples_per_problem"] = 2
    if profile.get("trace_sets"):
        trimmed["trace_limit"] = 10
    return trimmed


def _sets(values: dict) -> list[str]:
    """``--set`` pairs; text as it is (model, study and dataset are read raw), the rest as JSON (YAML reads it)."""
    return [arg for key, value in values.items()
            for arg in ("--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}")]


def _chain_command(command: str, profile: str, values: dict, outputs: Path, env: dict[str, str], timeout: int = 900):
    return subprocess.run([sys.executable, "-m", "tts_utils.pipeline", command, "--profile", profile, *_sets(values)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env, "TTS_OUTPUTS_DIR": str(outputs)})


@pytest.fixture(scope="module")
def random_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local weights folder as ``random_weights`` writes one: the tiny model's shape, random weights."""
    from tts_utils.engine.random_weights import write_random_weights
    from tts_utils.engine.tiny_model import ensure_tiny_model

    tiny = ensure_tiny_model()
    return write_random_weights(str(tiny), tiny, tmp_path_factory.mktemp("weights") / "tiny-random")


def test_the_matrix_holds_every_shipped_profile() -> None:
    shipped = {path.stem for path in PARAMS_DIR.glob("*.yaml")}
    assert set(PROFILES) | COVERED_ELSEWHERE == shipped and {"paper", "gpu-first-run"} <= set(PROFILES)


@pytest.mark.parametrize("profile", sorted(p.stem for p in PARAMS_DIR.glob("*.yaml") if p.stem not in COVERED_ELSEWHERE))
def test_a_shipped_profile_runs_the_whole_chain_on_the_cpu(profile: str, outputs_dir: Path, random_tiny: Path,
                                                         math500_path: Path, shared_trace_env: dict[str, str]) -> None:
    values = read_profile(PARAMS_DIR / f"{profile}.yaml")
    trimmed = cpu_trim(values, random_tiny, math500_path)
    gpu_only = [(name, stand_in, words) for name, stand_in, words in GPU_ONLY if values.get(name, stand_in) != stand_in]
    for name, stand_in, words in gpu_only:  # refused before anything runs, in one line
        check = _chain_command("check", profile, trimmed, outputs_dir, shared_trace_env, timeout=300)
        assert check.returncode == 2 and words in check.stderr and len(check.stderr.strip().splitlines()) == 1, \
            check.stderr[-2000:]
        trimmed[name] = stand_in
    result = _chain_command("reproduce", profile, trimmed, outputs_dir, shared_trace_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    study = trimmed["study"]
    reports = outputs_dir / "reports" / study
    assert all((reports / f"{name}.html").stat().st_size > 30_000 for name in CHAIN)
    landing = (reports / "index.html").read_text()
    # 04 ran after every run (batched passes are never table rows), and every verdict names its host
    assert "A run finished after 04_analysis last ran" not in landing and "Timings measured on: CPU only" in landing
    claims = pd.read_csv(outputs_dir / "figures" / study / "claims.csv")
    assert len(claims) == 5 and claims["verdict"].notna().all()
    runs = {path.name.rsplit("-", 1)[0]: path for path in (outputs_dir / "runs" / study).iterdir() if path.is_dir()}
    model = trimmed["model"]
    expected = {f"{model}-baseline-tp1", f"{model}-ngram-spec-tp1"}
    expected |= {f"{model}-baseline-tp2"} if 2 in values.get("tp_sizes", [1, 2, 4]) else set()
    expected |= {f"{model}-baseline-batched-tp1"} if trimmed.get("batch_concurrency") else set()
    assert set(runs) == expected, sorted(runs)
    for name, folder in runs.items():
        status = json.loads((folder / "status.json").read_text())
        assert status["state"] == "complete", name
        summary = pd.read_csv(folder / "summary.csv")
        assert (summary["num_requests"] == 4 * trimmed.get("samples_per_problem", 1)).all(), name
        results = pd.read_csv(folder / "results.csv")
        assert (results["e2e_latency_s"] > 0).all() and (results["output_tokens"] <= results["budget_tokens"]).all()
        if trimmed.get("latency_problems") and "batched" not in name:
            assert set(results["latency_source"]) <= {"measured", "predicted"}
            assert summary["measured_fraction"].isin([0.5, 1.0]).all(), name
    if trimmed.get("batch_concurrency") and values.get("placement", "sequential") == "sequential":
        # one engine for 01's batched pass and latency run (one configuration on a CPU)
        assert f"kept from {model}-baseline-batched-tp1-" in landing
    if "model_paths" in trimmed:  # random weights loaded as a checkpoint: labelled so everywhere
        assert "RANDOM WEIGHTS: tiny" in landing and "Real numbers here" not in landing
        table = pd.read_csv(outputs_dir / "figures" / study / "table.csv")
        assert set(table["weights"]) == {"random"}
        assert all(json.loads((folder / "run.json").read_text())["identity"]["random_weights"] for folder in runs.values())
    replays = outputs_dir / "replays" / study
    if values.get("trace_sets"):
        named = {entry.split("=")[0] for entry in values["trace_sets"] if "=" in entry}
        replayed = {json.loads((folder / "replay.json").read_text())["identity"]["model"] for folder in replays.iterdir()}
        assert named <= replayed, (named, replayed)
    if trimmed.get("samples_per_problem", 1) > 1:  # each sample replayed once: 4 problems x 2 samples
        own = [json.loads((folder / "replay.json").read_text()) for folder in replays.iterdir()
               if folder.name.startswith(f"{model}-")]
        assert own and all(row["traces"] == 8 for meta in own for row in meta["summary"])
