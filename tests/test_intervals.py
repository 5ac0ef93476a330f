"""Bootstrap intervals on known distributions, the verdict rules, and the analysis on hand-made studies."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tts_utils.intervals import (
    MIN_PROBLEMS,
    Interval,
    bootstrap_weights,
    configuration_intervals,
    interval,
    observed_spread,
    paired_ratio,
    planned_widths,
    problem_totals,
)
from tts_utils.report.analysis import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    UNKNOWN,
    VERDICTS,
    Check,
    all_must_hold,
    check_claims,
    claim_speculation_faster,
    configuration_table,
    decide,
)
from tts_utils.report.claims import REGISTRY
from tts_utils.study.metrics import summarise


def requests(problems: int, samples: int = 1, correct=None, latency=None, tokens=100, num_gpus: int = 1,
             **columns) -> pd.DataFrame:
    """Per-request rows of one configuration at one budget; ``correct``/``latency`` map (problem, sample)."""
    records = []
    for problem in range(problems):
        for sample in range(samples):
            records.append({
                "problem_id": f"p{problem}", "sample_index": sample, "request_id": f"p{problem}#s{sample}",
                "strict_correct": correct(problem, sample) if correct else False,
                "lenient_correct": correct(problem, sample) if correct else False,
                "e2e_latency_s": latency(problem, sample) if latency else 1.0,
                "output_tokens": tokens, "num_gpus": num_gpus, **columns,
            })
    return pd.DataFrame(records)


def test_bernoulli_half_with_400_problems_gives_the_normal_width() -> None:
    outcomes = np.random.default_rng(7).random(400) < 0.5
    rows = requests(400, correct=lambda p, s: bool(outcomes[p]))
    result = interval(rows, "accuracy_strict")
    assert result.estimate == pytest.approx(outcomes.mean())
    assert result.high - result.low == pytest.approx(2 * 1.96 * 0.025, rel=0.1)
    assert result.low < result.estimate < result.high


def test_repetitions_stay_with_their_problem() -> None:
    # Every problem answered the same way in all 4 repetitions: the width is that of 100 draws, not 400.
    outcomes = np.random.default_rng(3).random(100) < 0.5
    nested = interval(requests(100, samples=4, correct=lambda p, s: bool(outcomes[p])), "accuracy_strict")
    single = interval(requests(100, correct=lambda p, s: bool(outcomes[p])), "accuracy_strict")
    assert nested.high - nested.low == pytest.approx(single.high - single.low, rel=0.02)
    assert nested.high - nested.low == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 100), rel=0.15)


def test_mean_latency_interval_matches_the_standard_error() -> None:
    latencies = np.random.default_rng(5).normal(10.0, 2.0, 500)
    result = interval(requests(500, latency=lambda p, s: float(latencies[p])), "mean_e2e_latency_s")
    standard_error = latencies.std(ddof=1) / math.sqrt(500)
    assert result.estimate == pytest.approx(latencies.mean())
    assert result.high - result.low == pytest.approx(2 * 1.96 * standard_error, rel=0.1)


def test_cost_per_token_is_a_ratio_of_totals_like_the_summary() -> None:
    rows = requests(10, latency=lambda p, s: 1.0 + p, num_gpus=2)
    rows["output_tokens"] = [10 * (p + 1) for p in range(10)]
    result = interval(rows, "cost_gpu_s_per_token")
    assert result.estimate == pytest.approx(2 * rows["e2e_latency_s"].sum() / rows["output_tokens"].sum())
    assert result.low <= result.estimate <= result.high


def test_the_bootstrap_is_seeded() -> None:
    rows = requests(50, latency=lambda p, s: float(p % 7))
    assert interval(rows, "mean_e2e_latency_s") == interval(rows, "mean_e2e_latency_s")
    assert bootstrap_weights(50).sum(axis=1).tolist() == [50] * bootstrap_weights(50).shape[0]


def test_energy_counts_only_finite_readings_and_is_absent_without_the_column() -> None:
    rows = requests(10, energy_j=50.0)
    rows.loc[0, "energy_j"] = math.nan
    assert interval(rows, "energy_j_per_token").estimate == pytest.approx(0.5)
    assert problem_totals(rows, "energy_j_per_token").shape[0] == 9
    assert not interval(requests(10), "energy_j_per_token").known


def test_too_few_problems_give_no_interval() -> None:
    result = interval(requests(MIN_PROBLEMS - 1, samples=3), "mean_e2e_latency_s")
    assert not result.known and result.estimate == 1.0 and "no interval" in str(result)


def test_paired_ratio_resamples_shared_problems_jointly() -> None:
    # B is exactly twice as slow on every problem, however different the problems are: the ratio is exact.
    latencies = np.random.default_rng(2).lognormal(0, 1, 60)
    a = requests(60, latency=lambda p, s: float(latencies[p]))
    b = requests(60, latency=lambda p, s: 2 * float(latencies[p]))
    ratio = paired_ratio(a, b, "mean_e2e_latency_s")
    assert (ratio.estimate, ratio.low, ratio.high) == pytest.approx((0.5, 0.5, 0.5))
    shorter = paired_ratio(a, b[b["problem_id"] != "p0"], "mean_e2e_latency_s")
    assert shorter.problems == 59


def test_configuration_intervals_per_run_and_budget() -> None:
    rows = pd.concat([requests(20, run_name="r", budget_tokens=64), requests(20, run_name="r", budget_tokens=128)])
    frame = configuration_intervals(rows, ["accuracy_strict", "mean_e2e_latency_s"])
    assert len(frame) == 2 and {"accuracy_strict_lo", "mean_e2e_latency_s_hi"} <= set(frame)


@pytest.mark.parametrize(
    ("low", "high", "holds_below", "verdict"),
    [(0.2, 0.3, True, HOLDS), (1.2, 1.3, True, FAILS), (0.9, 1.1, True, INCONCLUSIVE),
     (1.2, 1.3, False, HOLDS), (0.2, 0.3, False, FAILS), (0.9, 1.1, False, INCONCLUSIVE),
     (math.nan, math.nan, True, UNKNOWN)],
)
def test_verdict_rules(low: float, high: float, holds_below: bool, verdict: str) -> None:
    assert decide(Interval(0.5 * (low + high), low, high, 100), 1.0, holds_below) == verdict


def test_a_failing_part_decides_then_an_inconclusive_one_then_the_weakest_holding_part() -> None:
    clear, close = Check("clear", Interval(0.2, 0.1, 0.3, 50), 1.0, True), Check("close", Interval(0.8, 0.7, 0.95, 50), 1.0, True)
    spans, fails = Check("spans", Interval(1.0, 0.9, 1.1, 50), 1.0, True), Check("fails", Interval(2, 1.5, 2.5, 50), 1.0, True)
    assert all_must_hold("c", [clear, close], "").interval.startswith("close")
    assert all_must_hold("c", [clear, spans], "").verdict == INCONCLUSIVE
    verdict = all_must_hold("c", [clear, spans, fails], "")
    assert verdict.verdict == FAILS and verdict.interval.startswith("fails 2 [1.5, 2.5]")
    assert all_must_hold("c", [], "").verdict == UNKNOWN


def test_planned_widths_follow_the_normal_approximation() -> None:
    frame = planned_widths([100, 400], samples_per_problem=2)
    assert frame["accuracy_half_width"].tolist() == pytest.approx([1.96 * 0.05, 1.96 * 0.025], rel=1e-3)
    assert frame.loc[0, "latency_half_width_pct"] == pytest.approx(196 * math.sqrt(0.25 + 0.03 ** 2 / 2) / 10, rel=1e-3)
    assert frame["requests_per_configuration"].tolist() == [200, 800]


def test_observed_spread_measures_a_first_run_and_keeps_assumptions_it_cannot_measure() -> None:
    rows = requests(30, samples=2, latency=lambda p, s: (1.0 + p % 2) * (1.01 if s else 0.99),
                    correct=lambda p, s: p % 4 == 0, run_name="r", budget_tokens=64)
    spread = observed_spread(rows)
    assert spread.accuracy == pytest.approx(8 / 30)
    assert spread.latency_cv_between == pytest.approx(0.5 / 1.5 * math.sqrt(30 / 29), rel=0.01)
    assert 0 < spread.latency_cv_within < 0.02 and "measured" in spread.source
    assert observed_spread(pd.DataFrame()).source.startswith("assumed")


# --- the analysis on a hand-made study ------------------------------------------------------------------------

def study(spec_factor: float = 0.5, tp_latency: dict | None = None, problems: int = 40) -> pd.DataFrame:
    """Rows of a small study: 1.5b baseline at TP 1/2/4 and n-gram at TP 1, three budgets."""
    tp_latency = tp_latency or {1: 1.0, 2: 0.7, 4: 0.6}
    noise = np.random.default_rng(11).lognormal(0, 0.3, problems)
    frames = []
    for method, tp, factor in [("baseline", t, f) for t, f in tp_latency.items()] + [("ngram-spec", 1, spec_factor)]:
        for budget, solved in ((64, 0.2), (128, 0.5), (256, 0.6)):
            frames.append(requests(
                problems, samples=2, latency=lambda p, s, b=budget, f=factor: b / 64 * f * noise[p] * (1 + 0.01 * s),
                correct=lambda p, s, q=solved: (p * 0.618) % 1 < q, tokens=budget, num_gpus=tp,
                run_name=f"1.5b-{method}-tp{tp}", model="1.5b", method=method, tensor_parallel_size=tp,
                budget_tokens=budget, grade_status="ok", hit_budget=True, ttft_s=0.01, tpot_s=0.01,
                system_only=False, hardware="1x NVIDIA H200 (driver 580.1)"))
    return pd.concat(frames, ignore_index=True)


def analyse(rows: pd.DataFrame, **options) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = summarise(rows, ["run_name", "model", "method", "tensor_parallel_size", "system_only", "hardware",
                               "budget_tokens"])
    table = configuration_table(rows, summary, **options)
    return table, check_claims(table, rows)


def test_the_table_carries_intervals_and_dollars() -> None:
    table, _ = analyse(study(), gpu_hour_usd=3.6)
    assert len(table) == 12
    for metric in ("accuracy_strict", "mean_e2e_latency_s", "cost_gpu_s_per_token", "usd_per_million_output_tokens"):
        assert (table[f"{metric}_lo"] <= table[metric]).all() and (table[metric] <= table[f"{metric}_hi"]).all()
    # 3.6 $/h = 0.001 $/s: a million tokens at c GPU-s each cost 1000 c dollars.
    assert table["usd_per_million_output_tokens"].tolist() == pytest.approx((table["cost_gpu_s_per_token"] * 1000).tolist())
    row = table.iloc[0]
    assert row["usd_per_correct_answer"] == pytest.approx(row["gpu_s_per_request"] / row["accuracy_strict"] * 0.001)
    assert "energy_j_per_token_lo" not in table and (table["price_source"] == "gpu_hour_usd parameter").all()


def test_the_table_without_a_price_has_no_dollars_and_with_zero_takes_the_list_price() -> None:
    assert "usd_per_gpu_hour" not in analyse(study())[0]
    table, _ = analyse(study(), gpu_hour_usd=0.0)
    assert table["usd_per_gpu_hour"].iloc[0] == pytest.approx(50.44 / 8)


def test_claims_hold_on_a_study_built_to_satisfy_them() -> None:
    _, claims = analyse(study())
    verdicts = dict(zip(claims["claim"], claims["verdict"]))
    assert verdicts["Speculative decoding lowers latency at every budget"] == HOLDS
    assert verdicts["Tensor parallelism has diminishing returns"] == HOLDS
    assert verdicts["For the smallest model, more GPUs are slower"] == FAILS
    assert verdicts["Accuracy gains flatten as the output budget grows"] == HOLDS
    assert set(claims["verdict"]) <= set(VERDICTS) and (claims["interval"].str.len() > 0).all()
    assert "[" in claims.loc[1, "interval"] and "holds if < 1" in claims.loc[1, "interval"]


def test_a_speculation_speedup_within_noise_is_inconclusive() -> None:
    rows = study(spec_factor=1.0)
    spec = rows["method"] == "ngram-spec"
    jitter = np.random.default_rng(4).normal(1.0, 0.05, spec.sum())
    rows.loc[spec, "e2e_latency_s"] *= jitter
    table, claims = analyse(rows)
    assert claims.loc[1, "verdict"] == INCONCLUSIVE
    assert claim_speculation_faster(table, rows).interval.split(" [")[0].endswith(tuple("0123456789"))


def test_slower_speculation_does_not_hold_and_too_few_problems_is_not_enough_data() -> None:
    assert analyse(study(spec_factor=1.5))[1].loc[1, "verdict"] == FAILS
    assert set(analyse(study(problems=3))[1]["verdict"]) == {UNKNOWN}


def test_the_speculation_claim_splits_by_acceptance_source_when_the_column_exists() -> None:
    rows = study()
    synthetic = rows[rows["method"] == "ngram-spec"].copy()
    synthetic["run_name"] = "1.5b-ngram-spec-tp1-synthetic"
    synthetic["e2e_latency_s"] *= 3
    rows = pd.concat([rows.assign(acceptance="engine"), synthetic.assign(acceptance="synthetic: replay")])
    summary = summarise(rows, ["run_name", "model", "method", "tensor_parallel_size", "acceptance", "system_only",
                               "hardware", "budget_tokens"])
    table = configuration_table(rows, summary)
    assert len(table) == 15
    verdict = claim_speculation_faster(table, rows)
    assert verdict.verdict == FAILS and "1.5b ngram-spec synthetic: replay" in verdict.interval
    assert "1.5b ngram-spec engine: spec/baseline latency" in verdict.evidence


def test_each_model_gets_its_own_answer_where_the_claim_is_judged_per_model() -> None:
    """Two models: n-gram faster for 7b at every budget, slower for 1.5b at the largest. The claim does
    not hold overall, and the per-model line says where: 7b holds, 1.5b fails at 256 only. The same
    verdicts come out with the rows in reverse order."""
    fast = study()
    slow = study(spec_factor=0.5).assign(model="7b")
    slow["run_name"] = "7b-" + slow["run_name"]
    late = (fast["method"] == "ngram-spec") & (fast["budget_tokens"] == 256)
    fast.loc[late, "e2e_latency_s"] *= 3  # 1.5b n-gram at 256: 1.5x greedy
    rows = pd.concat([fast, slow], ignore_index=True)
    _, claims = analyse(rows)
    by_key = claims.set_index("key")
    assert list(claims["key"]) == [entry.key for entry in REGISTRY]
    speculation = by_key.loc["speculation_faster"]
    assert speculation["verdict"] == FAILS
    assert speculation["per_model"] == ("1.5b ngram-spec, measured: does not hold (holds at 64, 128; does not hold "
                                        "at 256); 7b ngram-spec, measured: holds (64, 128, 256)")
    assert by_key.loc["accuracy_flattens", "per_model"] == "1.5b: holds; 7b: holds"
    assert by_key.loc["compute_not_system_optimal", "per_model"] == "compared across models"
    reversed_claims = analyse(rows.iloc[::-1].reset_index(drop=True))[1]
    pd.testing.assert_frame_equal(claims, reversed_claims)


def test_an_empty_study_says_not_enough_data() -> None:
    claims = check_claims(pd.DataFrame(), pd.DataFrame())
    assert len(claims) == 5 and set(claims["verdict"]) == {UNKNOWN} and "interval" in claims


def test_every_figure_draws_the_intervals(tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PolyCollection

    from tts_utils.report.figures import accuracy_vs_budget, accuracy_vs_cost, metric_vs_budget

    rows = study()
    rows["e2e_latency_s"] *= np.random.default_rng(1).lognormal(0, 0.2, len(rows))
    table, _ = analyse(rows, gpu_hour_usd=2.0)
    bands = [accuracy_vs_budget(table, "t", tmp_path / "a.png"),
             metric_vs_budget(table, "mean_e2e_latency_s", "s", "t", tmp_path / "l.png"),
             metric_vs_budget(table, "usd_per_million_output_tokens", "$", "t", tmp_path / "d.png")]
    for figure in bands:
        assert any(isinstance(c, PolyCollection) for ax in figure.axes for c in ax.collections)
    scatter = accuracy_vs_cost(table, "gpu_s_per_request", "GPU-s", "t", tmp_path / "c.png")
    assert any(container.has_xerr and container.has_yerr for container in scatter.axes[0].containers)
    assert "95% bootstrap interval" in scatter.axes[0].get_title()


def test_energy_per_token_gets_an_interval_when_rows_and_summary_carry_energy() -> None:
    rows = study()
    rows["energy_j"] = rows["e2e_latency_s"] * 300.0 * rows["num_gpus"]
    summary = summarise(rows, ["run_name", "model", "method", "tensor_parallel_size", "system_only", "hardware",
                               "budget_tokens"])
    totals = rows.groupby(["run_name", "budget_tokens"])[["energy_j", "output_tokens"]].sum()
    summary["energy_j_per_token"] = [totals.loc[(r, b), "energy_j"] / totals.loc[(r, b), "output_tokens"]
                                     for r, b in zip(summary["run_name"], summary["budget_tokens"])]
    table = configuration_table(rows, summary)
    assert (table["energy_j_per_token_lo"] <= table["energy_j_per_token"]).all()
    assert (table["energy_j_per_token"] <= table["energy_j_per_token_hi"]).all()
    # 300 W per GPU: energy per token is 300 x cost per token, so the intervals scale too.
    assert table["energy_j_per_token_hi"].tolist() == pytest.approx((300 * table["cost_gpu_s_per_token_hi"]).tolist())


def test_no_verdict_depends_on_row_order_and_flops_ties_are_named() -> None:
    rows = study(spec_factor=0.8)
    table, claims = analyse(rows)
    for order in (table.index[::-1], np.random.default_rng(3).permutation(table.index)):
        again = check_claims(table.loc[order].reset_index(drop=True), rows.iloc[::-1].reset_index(drop=True))
        assert again[["verdict", "evidence", "interval"]].equals(claims[["verdict", "evidence", "interval"]])
    compute = claims.set_index("claim").iloc[4]
    # greedy and n-gram of one model and budget emit the same tokens: FLOPs cannot tell them apart
    assert "FLOPs tie between" in compute["evidence"] and "0.95 x the best strict accuracy" in compute["evidence"]


def test_one_model_and_method_at_several_budgets_is_not_enough_data_for_compute_vs_system() -> None:
    rows = study()
    greedy = rows[(rows["method"] == "baseline") & (rows["tensor_parallel_size"] == 1)].copy()
    for column in ("strict_correct", "lenient_correct"):  # 128 tokens solve what 256 do: two budgets eligible
        greedy.loc[greedy["budget_tokens"] == 128, column] = greedy.loc[greedy["budget_tokens"] == 256, column].to_numpy()
    _, claims = analyse(greedy)
    assert claims.iloc[4]["verdict"] == UNKNOWN and "its budgets alone" in claims.iloc[4]["evidence"]


def test_one_models_traces_on_two_datasets_are_two_accuracy_curves_judged_apart(tmp_path) -> None:
    """1.5b's MATH500 traces flatten (0.3 -> 0.7 -> 0.8), its GSM8K traces do not (0.3 -> 0.4 -> 0.9):
    the claim is judged on each curve, so it does not hold, and the per-model line names both sets.
    Keeping one row per (model, budget) would have judged only the set listed last, whichever it was."""
    from tts_utils.report.analysis import claim_accuracy_flattens
    from tts_utils.report.verdicts import trace_accuracy

    def replay(trace_set: str, accuracy: dict[int, float]) -> dict:
        frames = [requests(200, correct=lambda p, s, a=share: p < a * 200).assign(budget_tokens=budget)
                  for budget, share in accuracy.items()]
        return {"model": "1.5b", "trace_set": trace_set, "replay": f"replay-{trace_set}",
                "rows": pd.concat(frames, ignore_index=True)}

    math = replay("r1-1.5b.math500", {1024: 0.3, 4096: 0.7, 16384: 0.8})
    gsm = replay("r1-1.5b.gsm8k", {1024: 0.3, 4096: 0.4, 16384: 0.9})
    for order in ([math, gsm], [gsm, math]):
        verdict = claim_accuracy_flattens(*trace_accuracy(order))
        assert verdict.verdict == FAILS
        assert sorted(check.series for check in verdict.checks) == ["r1-1.5b.gsm8k", "r1-1.5b.math500"]
        assert set(verdict.per_model().split("; ")) == {"1.5b r1-1.5b.math500: holds",
                                                         "1.5b r1-1.5b.gsm8k: does not hold"}
    alone = claim_accuracy_flattens(*trace_accuracy([math]))
    assert alone.verdict == HOLDS and alone.per_model() == "1.5b: holds"
    # GSM8K's real traces end before 1K tokens: the same answers at every budget judge nothing.
    flat = replay("r1-1.5b.gsm8k", {1024: 0.7, 4096: 0.7, 16384: 0.7})
    verdict = claim_accuracy_flattens(*trace_accuracy([flat, math]))
    assert verdict.verdict == HOLDS and [check.series for check in verdict.checks] == ["r1-1.5b.math500"]
    assert "some parts lack data" in verdict.evidence
    assert ("1.5b (r1-1.5b.gsm8k): strict accuracy 0.700 at every budget from 1,024 tokens, no answer changes"
            in verdict.evidence)
    import matplotlib

    matplotlib.use("Agg")
    from tts_utils.report.figures import accuracy_vs_budget

    figure = accuracy_vs_budget(trace_accuracy([gsm, math])[0], "t", tmp_path / "a.png")
    assert figure.axes[0].get_legend_handles_labels()[1] == [
        f"1.5b (r1-1.5b.{name}) {rule}" for name in ("gsm8k", "math500") for rule in ("strict", "lenient")]
