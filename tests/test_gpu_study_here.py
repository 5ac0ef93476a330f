"""A GPU study planned and rendered on a CPU machine: ``dry_run`` starts no engine, so the GPU-only
refusals (synthetic acceptance, CUDA-graph modes) wait for a machine that would start one, and the
sweep CLI replays the trace sets first, as 03_spec does (benchmarks/gpu_traces_round.sh relies on it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tts_utils.paths import replays_dir
from tts_utils.study import sweep


def test_sweep_cli_replays_then_plans_a_gpu_study_on_a_dry_run(shared_trace_env: dict[str, str], outputs_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in shared_trace_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["03_spec", "--profile", "one-gpu-traces", "--set", "study=gpu-here", "--set", "model=1.5b",
            "--set", "num_problems=1", "--set", "trace_limit=4"]
    assert sweep.main([*args, "--set", "dry_run=true"]) == 0
    printed = capsys.readouterr().out
    replays = sorted(p.name for p in replays_dir("gpu-here").iterdir())
    assert any(name.startswith("1.5b-r1-distill-qwen-1") for name in replays), replays
    assert "1.5b-ngram-spec-synthetic-tp1-" in printed and "dry run: nothing is started." in printed
    # Without dry_run the same study would start a CPU engine that cannot do synthetic acceptance.
    assert sweep.main(args) == 2
    assert "synthetic acceptance (spec_acceptance: replay) needs a GPU engine" in capsys.readouterr().err
