"""What 01-03 say their runs show (report/findings.py, notebook.what_results_show) and 04's one
show-and-write helper, on hand-made summary rows: the numbers, and honest words for plumbing,
system-only and random-weight runs."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from tts_utils import notebook
from tts_utils.banners import PLUMBING_NOTE, RANDOM_WEIGHTS_NOTE, SYSTEM_ONLY_NOTE
from tts_utils.config import StudyConfig
from tts_utils.report.findings import greedy_findings, spec_findings, tp_findings

HARDWARE = "1x NVIDIA H100 80GB HBM3 (driver 570.1)"


def summary(model: str, method: str = "baseline", tp: int = 1, budgets=(1024, 4096, 16384), accuracy=None,
            latency=(2.5, 10.0, 40.0), acceptance=(None, None), **extra) -> pd.DataFrame:
    """summary.csv rows of one run, one per budget, in the columns the findings read."""
    accuracy = accuracy or [float("nan")] * len(budgets)
    return pd.DataFrame({
        "run_name": f"{model}-{method}-tp{tp}-abc", "model": model, "method": method, "acceptance": "engine",
        "tensor_parallel_size": tp, "system_only": False, "weights": "real", "hardware": HARDWARE,
        "budget_tokens": list(budgets), "num_requests": 100, "accuracy_strict": accuracy,
        "mean_output_tokens": [b * 0.9 for b in budgets], "mean_e2e_latency_s": list(latency),
        "cost_gpu_s_per_token": [tp * s / (b * 0.9) for s, b in zip(latency, budgets)],
        "spec_acceptance_rate": acceptance[0], "spec_mean_acceptance_length": acceptance[1], **extra})


def test_greedy_reads_accuracy_latency_and_flattening_of_a_real_model() -> None:
    lines = greedy_findings(summary("1.5b", accuracy=[0.5, 0.75, 0.8]))
    print("\n".join(lines))
    assert lines[0] == f"Measured on {HARDWARE}; 100 requests per budget."
    assert lines[1] == ("1.5b greedy, TP 1: strict accuracy 0.50 at 1,024 -> 0.80 at 16,384 tokens; mean latency "
                        "2.5 s at 1,024 -> 40 s at 16,384 tokens (16.0x for 16x the budget); mean output 922 -> "
                        "14,746 tokens; cost 0.00271 -> 0.00271 GPU-s per token.")
    assert lines[2] == ("1.5b: strict accuracy gained +0.25 over the first budget step (1,024 -> 4,096) and +0.05 "
                        "over the last (4,096 -> 16,384): gains flatten.")
    assert lines[-1].startswith("Point estimates of these runs; 04_analysis re-tests \"Accuracy gains flatten")
    rising = greedy_findings(summary("7b", accuracy=[0.5, 0.55, 0.8]))
    assert rising[2].endswith("gains do not flatten.")


@pytest.mark.parametrize(("rows", "note"), [
    (summary("tiny", accuracy=[0.0, 0.1, 0.1]), PLUMBING_NOTE),
    (summary("7b", system_only=[True] * 3), SYSTEM_ONLY_NOTE),
    (summary("7b", accuracy=[0.0, 0.1, 0.0], weights="random"), RANDOM_WEIGHTS_NOTE),
])
def test_greedy_labels_runs_that_are_not_real_checkpoints_and_shows_no_accuracy(rows, note) -> None:
    lines = greedy_findings(rows)
    assert f"[{note}]" in lines[1] and "mean latency 2.5 s" in lines[1]
    assert not any("accuracy 0." in line or "gains" in line for line in lines[:-1])


def test_greedy_takes_accuracy_from_the_batched_pass_and_says_when_no_batch1_latency_ran() -> None:
    batched = summary("1.5b", method="baseline-batched", accuracy=[0.5, 0.7, 0.72], latency=(9.0, 9.0, 9.0))
    lines = greedy_findings(pd.concat([summary("1.5b"), batched, summary("7b", "baseline-batched", accuracy=[.6] * 3)]))
    assert "strict accuracy 0.50 at 1,024 -> 0.72 at 16,384 tokens (batched accuracy pass); mean latency 2.5 s" in lines[1]
    assert "7b greedy, TP 1: strict accuracy 0.60" in lines[3] and "no batch-1 latency" in lines[3]


def test_tp_compares_each_size_with_tp1() -> None:
    rows = pd.concat([summary("1.5b", accuracy=[.5, .7, .8]),
                      summary("1.5b", tp=2, latency=(2.7, 10.8, 43.2), accuracy=[.5, .71, .8]),
                      summary("7b", system_only=[True] * 3),
                      summary("7b", tp=2, latency=(1.5, 6.0, 24.0), system_only=[True] * 3),
                      summary("14b")])
    lines = tp_findings(rows, ["TP=4 needs 4 devices; this machine has 2 GPUs"])
    print("\n".join(lines))
    assert lines[1] == ("1.5b greedy: mean latency over TP 1's 1.08x at TP 2 (averaged over budgets): more GPUs are "
                        "slower (TP 2); efficiency 0.46 at TP 2 (1 = n GPUs n times faster); cost per token 2.16x at "
                        "TP 2; strict accuracy within 0.01 of TP 1's at every budget.")
    assert lines[2].startswith(f"7b greedy [{SYSTEM_ONLY_NOTE}]: mean latency over TP 1's 0.60x at TP 2")
    assert "more GPUs are faster, by less than their number; efficiency 0.83 at TP 2" in lines[2]
    assert "accuracy" not in lines[2].split("]")[1]
    assert lines[3] == "14b greedy: only TP 1 ran, so there is nothing to compare."
    assert lines[4] == "Skipped: TP=4 needs 4 devices; this machine has 2 GPUs."
    assert "\"Tensor parallelism has diminishing returns\"" in lines[5]


def test_spec_compares_with_greedy_per_budget_and_reads_the_replayed_traces() -> None:
    spec = pd.concat([summary("1.5b", "ngram-spec", latency=(2.0, 9.0, 44.0), acceptance=(0.3, 2.5),
                              accuracy=[.5, .7, .8]),
                      summary("tiny", "ngram-spec", latency=(1.0, 2.0, 3.0), acceptance=(0.99, 5.9)),
                      summary("7b", "ngram-spec")])
    greedy = pd.concat([summary("1.5b", accuracy=[.5, .7, .8]), summary("tiny", latency=(2.0, 4.0, 6.0))])
    replays = pd.DataFrame({
        "model": ["1.5b"] * 2 + ["tiny"] * 2, "trace_set": ["r1.jsonl"] * 2 + ["own.jsonl"] * 2,
        "budget_tokens": [1024, 16384] * 2, "traces": 100, "accuracy_strict": [0.4, 0.8, 0.0, 0.0],
        "acceptance_rate": [0.2, 0.35, 0.9, 0.9], "tokens_per_step": [1.5, 1.9, 5.0, 5.0],
        "random_weights": [False, False, True, True], "proxy_of": None})
    lines = spec_findings(spec, greedy, replays)
    print("\n".join(lines))
    assert lines[2] == ("1.5b ngram-spec: ngram-spec / greedy mean latency 0.80x at 1,024, 0.90x at 4,096, 1.10x at "
                        "16,384 tokens: speculation is faster at 2 of 3 budgets; the engine accepted 0.30 of drafted "
                        "tokens, 2.50 tokens per verification step; strict accuracy within 0.00 of greedy's at every "
                        "budget.")
    assert f"[{PLUMBING_NOTE}]" in lines[1] and "speculation is faster at every budget" in lines[1]
    assert "drafts are almost always accepted: a best case" in lines[1]  # models in order of size
    assert lines[3].startswith("7b ngram-spec: no greedy TP 1 run of 7b") and "nothing to compare" in lines[3]
    assert lines[4] == ("1.5b traces r1.jsonl (100 traces), replayed: strict accuracy 0.40 at 1,024 -> 0.80 at 16,384 "
                        "tokens; n-gram acceptance rate 0.20 at 1,024 -> 0.35 at 16,384 tokens; 1.90 tokens per step "
                        "at the largest budget (a replay measures acceptance, not time).")
    assert f"[{PLUMBING_NOTE}]" in lines[5] and "strict accuracy" not in lines[5]
    proxy = replays[replays["model"] == "1.5b"].assign(model="14b", accuracy_strict=float("nan"), proxy_of="1.5b")
    assert spec_findings(pd.DataFrame(), pd.DataFrame(), proxy)[0].startswith(
        "14b traces r1.jsonl (100 traces; a proxy, so no grades), replayed: n-gram acceptance rate 0.20 at 1,024")
    assert "\"Speculative decoding lowers latency at every budget\"" in lines[6]


def test_nothing_to_say_without_rows() -> None:
    assert greedy_findings(pd.DataFrame()) == [] and tp_findings(pd.DataFrame()) == []
    assert spec_findings(pd.DataFrame(), pd.DataFrame()) == []


def test_what_results_show_names_runs_with_no_results(monkeypatch: pytest.MonkeyPatch) -> None:
    plans = [SimpleNamespace(run_name="1.5b-baseline-tp1-abc"), SimpleNamespace(run_name="7b-baseline-tp1-abc")]
    monkeypatch.setattr(notebook, "plan_runs", lambda config, name: (plans, []))
    monkeypatch.setattr(notebook, "_planned_summary", lambda config, name, plans=None: summary("1.5b"))
    shown = notebook.what_results_show(StudyConfig.create(study="s", model="1.5b,7b"), "01_greedy")
    assert shown[0] == ("1 of the 2 planned run(s) have no results in study 's' (the sweep above stopped or has "
                        "not run): 7b-baseline-tp1-abc.")
    assert shown[2].startswith("1.5b greedy, TP 1: mean latency")
    assert repr(shown).startswith("- 1 of the 2") and shown._repr_html_().startswith("<ul><li>1 of the 2")


def test_show_and_write_writes_every_column_shows_the_chosen_ones_or_says_why_empty(
        tmp_path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.DataFrame({"model": ["1.5b"], "budget_tokens": [1024], "detail": ["x"]})
    shown = []
    monkeypatch.setattr(notebook, "display", shown.append)  # what IPython would render
    path = tmp_path / "x.csv"
    notebook.show_and_write(frame, path, "nothing", columns=["model", "budget_tokens"])
    assert pd.read_csv(path).columns.tolist() == ["model", "budget_tokens", "detail"]
    assert shown[0].columns.tolist() == ["model", "budget_tokens"] and "x.csv</a>" in shown[0]._repr_html_()
    notebook.show_and_write(frame.iloc[:0], tmp_path / "empty.csv", "no rows in this study")
    assert capsys.readouterr().out == "no rows in this study\n" and not (tmp_path / "empty.csv").exists()
    written = []
    notebook.show_and_write(frame, path, write=lambda p, text: written.append(p))
    assert written == [path]
