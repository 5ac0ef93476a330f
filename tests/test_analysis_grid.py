"""04_analysis's break-even sweep and fast-grid sections on small synthetic results (no engine)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from tts_utils.paths import acceptance_dir, study_dir
from tts_utils.report.estimate_check import estimate_vs_actual
from tts_utils.report.figures import break_even_curves
from tts_utils.report.grid import batched_passes, latency_checks
from tts_utils.store import RunFolder, append_record, atomic_write_json, atomic_write_text, file_sha256, load_study
from tts_utils.study.acceptance_sweep import (
    break_even_lengths,
    curves,
    plain_ms_per_token,
    real_trace_acceptance,
    study_break_even,
)

STUDY = "synthetic"


def _curve(model: str, method: str, lengths: list[float], ms: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"model": model, "method": method, "budget_tokens": 1024,
                         "acceptance_length": lengths, "measured_acceptance_length": lengths, "ms_per_token": ms,
                         "ms_per_token_lo": [m * 0.95 for m in ms], "ms_per_token_hi": [m * 1.05 for m in ms]})


def _write_run(name: str, identity: dict, summary: list[dict], status: dict | None = None,
               segments: list[dict] | None = None) -> None:
    """A complete run folder as the sweep leaves it, written with the store's own functions."""
    run = RunFolder(study_dir(STUDY) / name)
    atomic_write_json(run.run_file, {"identity": identity, "run_name": name})
    frame = pd.DataFrame([{"study": STUDY, "run_name": name, **row} for row in summary])
    atomic_write_text(run.results_file, frame.to_csv(index=False))
    atomic_write_text(run.summary_file, frame.to_csv(index=False))
    for segment in segments or []:
        append_record(run.segments_file, segment)
    run.set_status("complete", budget_mode="one-pass", **(status or {}),
                   sha256={f: file_sha256(run.path / f) for f in ("results.csv", "summary.csv")})


def _identity(model: str, method: str, concurrency: int = 1, **extra) -> dict:
    return {"model": model, "method": method, "tensor_parallel_size": 1, "budgets": [512, 1024],
            "concurrency": concurrency, "system_only": True, **extra}


def _summary(model: str, method: str, budget: int, ms_per_token: float, **extra) -> dict:
    return {"model": model, "method": method, "tensor_parallel_size": 1, "budget_tokens": budget,
            "num_requests": 4, "total_output_tokens": 4 * budget, "total_e2e_latency_s": 4 * budget * ms_per_token / 1e3,
            "tokens_per_s": 1e3 / ms_per_token, "ms_per_token": ms_per_token, **extra}


def test_break_even_interpolates_where_the_curve_comes_down_through_plain_decoding() -> None:
    frame = _curve("1.5b", "ngram-spec-synthetic", [1.2, 1.5, 2.0, 3.0], [3.0, 2.6, 2.0, 1.4])
    row = break_even_lengths(frame, {"1.5b": 2.3}, {"1.5b": 2.5}).iloc[0]
    # 2.3 lies halfway between 2.6 (at 1.5) and 2.0 (at 2.0).
    assert row["break_even_length"] == pytest.approx(1.75)
    assert row["break_even"] == "1.75"
    assert row["real_trace_ms_per_token"] == pytest.approx(1.7)
    assert (row["fastest_ms_per_token"], row["at_length"], row["points"]) == (1.4, 3.0, 4)


def test_break_even_says_when_the_curve_never_crosses_either_way_or_has_no_plain_run() -> None:
    frame = _curve("7b", "draft-model-spec-synthetic", [1.25, 1.5, 2.0], [29.0, 27.0, 22.0])
    slower = break_even_lengths(frame, {"7b": 4.8}).iloc[0]
    faster = break_even_lengths(frame, {"7b": 40.0}).iloc[0]
    missing = break_even_lengths(frame, {}).iloc[0]
    assert slower["break_even"].startswith("> 2.00") and math.isnan(slower["break_even_length"])
    assert faster["break_even"].startswith("< 1.25") and math.isnan(faster["break_even_length"])
    assert missing["break_even"] == "no plain decoding run" and math.isnan(missing["plain_ms_per_token"])
    # Below plain decoding at short lengths only: no crossing downwards, said as such, not a length.
    rising = break_even_lengths(_curve("7b", "ngram-spec-synthetic", [1.25, 2.0], [4.0, 6.0]), {"7b": 5.0}).iloc[0]
    assert "short lengths only" in rising["break_even"] and math.isnan(rising["break_even_length"])
    # A real-trace length outside the measured range is not extrapolated.
    outside = break_even_lengths(_curve("7b", "ngram-spec-synthetic", [1.5, 2.0], [6.0, 4.0]), {"7b": 5.0},
                                 {"7b": 1.2}).iloc[0]
    assert outside["real_trace_length"] == 1.2 and math.isnan(outside["real_trace_ms_per_token"])


def test_plain_ms_per_token_is_greedy_tp1_at_the_sweep_budget_from_load_study() -> None:
    _write_run("1.5b-baseline", _identity("1.5b", "baseline"),
               [_summary("1.5b", "baseline", 512, 2.5), _summary("1.5b", "baseline", 1024, 2.4)])
    _write_run("1.5b-ngram", _identity("1.5b", "ngram-spec"), [_summary("1.5b", "ngram-spec", 1024, 1.9)])
    _write_run("7b-batched", _identity("7b", "baseline-batched", 64), [_summary("7b", "baseline-batched", 1024, 14.0)])
    results = load_study(STUDY)
    assert plain_ms_per_token(results.summary, 1024) == {"1.5b": 2.4}
    assert plain_ms_per_token(results.summary, 512) == {"1.5b": 2.5}
    assert plain_ms_per_token(results.summary, 2048) == {}


def _write_sweep(model: str, method: str, points: list[tuple[float, float]], requests: int = 1) -> None:
    folder = acceptance_dir(STUDY) / f"{model}-{method}-{requests}"
    atomic_write_json(folder / "sweep.json", {"run_name": folder.name, "identity": {
        "model": model, "method": method, "budgets": [1024],
        "engine": {"speculative": {"num_speculative_tokens": 5, "draft_model_path": None}}}})
    for length, ms in points:
        append_record(folder / "points.jsonl", {"acceptance_length": length, "measured_acceptance_length": length,
                                                "requests": [{"problem_id": f"p{index}", "e2e_latency_s": ms * 1.024,
                                                              "output_tokens": 1024} for index in range(requests)]})


def test_study_break_even_and_its_figure(tmp_path: Path) -> None:
    _write_run("1.5b-baseline", _identity("1.5b", "baseline"), [_summary("1.5b", "baseline", 1024, 2.4)])
    _write_sweep("1.5b", "ngram-spec-synthetic", [(1.25, 3.0), (1.5, 2.6), (2.0, 2.0), (3.0, 1.4)])
    _write_sweep("7b", "ngram-spec-synthetic", [(1.25, 5.3), (2.0, 3.7), (3.0, 2.5)])  # no plain run of 7b
    replays = pd.DataFrame({"model": "1.5b", "trace_set": ["a", "b", "a", "b"], "budget_tokens": [1024, 1024, 4096, 4096],
                            "traces": [10, 30, 10, 30], "tokens_per_step": [1.5, 1.5, 1.6, 2.0],
                            "mean_acceptance_length": [1.7, 1.7, 1.8, 2.2], "no_draft_step_fraction": [0.3, 0.3, 0.2, 0.1]})
    real = real_trace_acceptance(replays).iloc[0]
    assert real["budget_tokens"] == 4096 and real["tokens_per_step"] == pytest.approx(1.9)  # weighted by traces
    assert real["no_draft_step_fraction"] == pytest.approx(0.125)
    assert real_trace_acceptance(replays, 1024).iloc[0]["tokens_per_step"] == pytest.approx(1.5)

    sweep = curves(STUDY)
    assert set(sweep["budget_tokens"]) == {1024} and sweep["ms_per_token"].iloc[0] == pytest.approx(3.0)
    table = study_break_even(sweep, load_study(STUDY).summary, replays).set_index("model")
    assert table.loc["1.5b", "break_even_length"] == pytest.approx(1.5 + 0.5 * 0.2 / 0.6)
    assert table.loc["1.5b", "real_trace_length"] == pytest.approx(1.9)
    assert bool(table.loc["1.5b", "real_trace_pays"]) is True
    assert table.loc["7b", "break_even"] == "no plain decoding run"
    assert list(table.index) == ["1.5b", "7b"]  # ordered by size

    figure = break_even_curves(sweep, table.reset_index(), tmp_path)
    assert (tmp_path / "break_even_curves.png").stat().st_size > 10_000
    small, large = figure.axes[:2]
    labels = [text.get_text() for text in small.get_legend().get_texts()]
    assert any(label.startswith("real traces @4096: 1.90 tokens/step") for label in labels)
    assert "plain decoding 2.40 ms/token" in labels
    assert "no plain decoding run" in [text.get_text() for text in large.get_legend().get_texts()]
    vertical = [line.get_xdata()[0] for line in small.get_lines() if line.get_linestyle() == ":"]
    assert vertical == [pytest.approx(table.loc["1.5b", "break_even_length"])]
    assert "Below the black line speculation pays" in figure._suptitle.get_text()


def test_a_deeper_sweep_of_the_same_length_replaces_the_shallower_point() -> None:
    _write_sweep("7b", "ngram-spec-synthetic", [(1.25, 5.3), (2.0, 9.9)])
    _write_sweep("7b", "ngram-spec-synthetic", [(2.0, 3.7), (3.0, 2.5)], requests=3)
    sweep = curves(STUDY)
    assert sweep["acceptance_length"].tolist() == [1.25, 2.0, 3.0]
    assert sweep["ms_per_token"].tolist() == pytest.approx([5.3, 3.7, 2.5]) and sweep["requests"].tolist() == [1, 3, 3]


def test_study_break_even_without_a_sweep_is_empty() -> None:
    assert curves(STUDY).empty and study_break_even(curves(STUDY), pd.DataFrame(), pd.DataFrame()).empty


def test_grid_tables_from_batched_and_latency_runs() -> None:
    check = {"checked": ["p1", "p2", "p3"], "mismatches": [], "consistent": True, "batch_invariant_env": True}
    span = {"energy_j": None, "energy_seconds": 8.0, "energy_gpus": [], "energy_missing_reason": "no GPU"}
    _write_run("1.5b-batched", _identity("1.5b", "baseline-batched", 64), status={"batch_check": check},
               summary=[_summary("1.5b", "baseline-batched", 512, 6.7), _summary("1.5b", "baseline-batched", 1024, 6.3)],
               segments=[{"wall_s": 30.0, "energy": [span]}, {"wall_s": 5.0, "energy": []}])
    mismatch = {**check, "mismatches": ["p2"], "consistent": False}
    _write_run("7b-batched", _identity("7b", "baseline-batched", 2), status={"batch_check": mismatch},
               summary=[_summary("7b", "baseline-batched", 1024, 14.0)])  # no segments: span from latencies
    gate = {"tolerance": 0.15, "worst_error": -0.157, "passed": False,
            "per_budget": [{"budget_tokens": 512, "error": -0.157, "requests": 2},
                           {"budget_tokens": 1024, "error": -0.133, "requests": 2}]}
    scope = "every problem measured: the step-cost prediction missed by -15.7% (tolerance 15%)"
    _write_run("1.5b-baseline", _identity("1.5b", "baseline", latency_problems=2), status={"prediction_check": gate},
               summary=[_summary("1.5b", "baseline", b, 2.5, latency_scope=scope, measured_fraction=1.0)
                        for b in (512, 1024)])
    results = load_study(STUDY)

    passes = batched_passes(STUDY, results).set_index("model")
    assert list(passes.index) == ["1.5b", "7b"]
    first = passes.loc["1.5b"]
    assert (first["problems"], first["concurrency"], first["budget_tokens"], first["output_tokens"]) == (4, 64, 1024, 4096)
    assert first["span_s"] == 8.0 and first["throughput_tokens_per_s"] == pytest.approx(4096 / 8.0)
    assert first["speedup_vs_batch1"] == pytest.approx(4096 / 8.0 / 400.0)  # batch-1: 2.5 ms per token
    assert first["batch_check"].startswith("equal: 3 of 3")
    second = passes.loc["7b"]
    assert "lower bound" in second["span_source"]
    assert second["span_s"] == pytest.approx(4 * 1024 * 14.0 / 1e3 / 2)  # summed latency / concurrency 2
    assert second["batch_check"].startswith("differs on 1 of 3") and math.isnan(second["speedup_vs_batch1"])

    checks = latency_checks(results)
    assert len(checks) == 1
    row = checks.iloc[0]
    assert (row["tolerance"], row["worst_error"], row["passed"]) == (0.15, -0.157, False)
    assert row["error_per_budget"] == "512: -15.7% (2 req.), 1024: -13.3% (2 req.)"
    assert row["latency_scope"] == scope and row["measured_fraction"] == 1.0


def test_a_study_without_batched_runs_or_estimate() -> None:
    _write_run("1.5b-baseline", _identity("1.5b", "baseline"), [_summary("1.5b", "baseline", 1024, 2.4)])
    results = load_study(STUDY)
    assert batched_passes(STUDY, results).empty and latency_checks(results).empty
    with pytest.raises(FileNotFoundError):
        estimate_vs_actual(STUDY)
