"""Trace sets and replay without the engine: bad input, the shipped traces' pinned figures, the
step-cost model on hand-made steps, and the replay CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tts_utils.engine.model_source import ModelSource, resolve
from tts_utils.errors import ConfigError
from tts_utils.models import get_model
from tts_utils.paths import REPO_ROOT
from tts_utils.speculation.replay import NgramSettings, replay, replay_steps
from tts_utils.speculation.stepcost import fit_step_costs, predict_request
from tts_utils.speculation.traces import load_trace_set

R15 = "r1-distill-qwen-1.5b.math500-first100.t0.6.jsonl"
R7 = "r1-distill-qwen-7b.math500-first20.t0.6.jsonl"


@pytest.fixture(scope="module")
def r1_source(r1_tokenizer_path) -> ModelSource:
    source = resolve(get_model("7b"), "dummy")
    return ModelSource(source.engine_path, str(r1_tokenizer_path), source.identity, source.max_context)


def test_replay_follows_greedy_verification_on_a_hand_made_sequence() -> None:
    # prompt 1 2 3; output 1 2 3 1 2 9: after "1 2 3 1" the look-up proposes "2 3 1 ..."; "2" is
    # accepted, "3" is not (the output says 9).
    steps = replay_steps([1, 2, 3], [1, 2, 3, 1, 2, 9], NgramSettings(3, 1, 2))
    assert steps.emitted.sum() >= 6 and steps.emitted[0] == 1 and steps.draft_tokens[0] == 0
    assert (steps.accepted <= steps.draft_tokens).all() and (steps.emitted == steps.accepted + 1).all()


@pytest.mark.parametrize(("record", "message"), [
    ({"problem": "What is 1+1?", "answer": "2"}, "line 1: problem 'What is 1+1?' is not in dataset"),
    ({"answer": "2", "output": "x"}, "line 1: missing field 'problem'"),
    ({"unique_id": "test/algebra/1349.json", "answer": "2"}, "line 1: missing field 'output'"),
    ({"unique_id": "test/algebra/1349.json", "output_ids": [1, 10**7]}, "token id 10000000 outside the tokenizer's vocabulary"),
    ({"unique_id": "test/algebra/1349.json", "output_ids": [1] * 140_000}, "longer than 7b's 131072-token context"),
    ({"unique_id": "test/algebra/1349.json", "output": "x", "model_name": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"},
     "trace set is for 'deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B', not model '7b'"),
])
def test_bad_trace_sets_are_one_line_errors_naming_file_and_line(tmp_path, math500_path, r1_source, record, message) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ConfigError) as error:
        load_trace_set(path, get_model("7b"), r1_source, str(math500_path))
    assert message in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_missing_and_empty_trace_files(tmp_path, math500_path, r1_source) -> None:
    with pytest.raises(ConfigError, match="trace set not found"):
        load_trace_set(tmp_path / "nope.jsonl", get_model("7b"), r1_source, str(math500_path))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="holds no traces"):
        load_trace_set(tmp_path / "empty.jsonl", get_model("7b"), r1_source, str(math500_path))


def test_shipped_7b_traces_pinned(traces_dir, math500_path, r1_source) -> None:
    """Pinned once with `python -m tts_utils replay` (k=5, look-up 1..4, vLLM's own matcher):
    tokens per step, no-draft share and per-position acceptance at 16K; the looping trace included."""
    trace_set = load_trace_set(traces_dir / R7, get_model("7b"), r1_source, str(math500_path))
    assert len(trace_set.traces) == 20 and trace_set.sampling["temperature"] == 0.6
    result = replay(trace_set, NgramSettings(), [4096, 16384])
    last = result.summary.set_index("budget_tokens").loc[16384]
    assert last["tokens_per_step"] == pytest.approx(1.798, abs=0.002)
    assert last["no_draft_step_fraction"] == pytest.approx(0.131, abs=0.002)
    rates = [last[f"acceptance_pos_{i}"] for i in range(5)]
    assert rates == pytest.approx([0.386, 0.214, 0.140, 0.102, 0.075], abs=0.002)


@pytest.mark.slow
def test_shipped_1p5b_traces_pinned_with_accuracy(traces_dir, math500_path, r1_tokenizer_path, tmp_path) -> None:
    """The CLI on the 100 1.5B traces: strict accuracy 0.80 at 16K (source's grader: 0.77)."""
    out = tmp_path / "json" / "replay-1.5b.json"  # its folder does not exist yet: the CLI makes it
    result = subprocess.run([sys.executable, "-m", "tts_utils.speculation.replay", str(traces_dir / R15), "--model", "1.5b",
                             "--tokenizer", str(r1_tokenizer_path), "--dataset", str(math500_path),
                             "--budgets", "1024,16384", "--json", str(out),
                             # no wall-clock in what is asserted: a loaded machine must not turn a slow grade wrong
                             "--grade-timeout-s", "300"],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    budgets = {b["budget_tokens"]: b for b in json.loads(out.read_text())["budgets"]}
    assert set(budgets[16384]) >= {"budget_tokens", "accuracy_strict", "accuracy_lenient", "tokens_per_step",
                                   "acceptance_rate", "no_draft_step_fraction"}
    assert budgets[16384]["accuracy_strict"] == pytest.approx(0.80) and budgets[1024]["accuracy_strict"] == pytest.approx(0.50)
    assert budgets[16384]["tokens_per_step"] == pytest.approx(1.852, abs=0.002)
    assert budgets[16384]["no_draft_step_fraction"] == pytest.approx(0.133, abs=0.002)


def test_replay_cli_rejects_bad_input_in_one_line(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "tts_utils.speculation.replay", str(tmp_path / "x.jsonl"), "--model", "13b"],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: unknown model '13b'")


def test_step_cost_fit_and_prediction_on_known_costs() -> None:
    context = np.arange(100, 1100, dtype=float)
    steps = pd.DataFrame({"run_name": "r", "request_id": "a", "kind": "measured", "step": ["plain"] * len(context),
                          "context_tokens": context, "seconds": 0.002 + 1e-6 * context, "merged": False})
    costs = fit_step_costs(steps)
    assert costs["intercept_ms"].iloc[0] == pytest.approx(2.0) and costs["slope_ms_per_1k_context"].iloc[0] == pytest.approx(1.0)
    # 11 tokens: a prefill then 10 plain steps at contexts 101..110 (prompt 100).
    predicted = predict_request(costs, 100, 0.5, np.zeros(11, int), np.ones(11, int), 11, speculative=False)
    assert predicted == pytest.approx(0.5 + sum(0.002 + 1e-6 * c for c in range(101, 111)))
