"""Modelled rows (real traces x step costs), the verdicts they decide, the pick and the TP import."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from tts_utils.errors import ConfigError
from tts_utils.models import get_model
from tts_utils.paths import REPO_ROOT
from tts_utils.report.analysis import configuration_table, speculation_ratios
from tts_utils.report.figures import ratio_vs_budget
from tts_utils.report.modelled import (
    PricedRun,
    build_modelled,
    import_tp_runs,
    load_replay_sets,
    modelled_table,
    priced_runs,
    real_trace_sets,
)
from tts_utils.report.pick import for_accuracy, for_latency, pick_table
from tts_utils.report.pick import main as pick_main
from tts_utils.report.verdicts import check_all_claims
from tts_utils.speculation.replay_sets import current_replay_folders, load_replays
from tts_utils.store import write_sealed

REFERENCE = REPO_ROOT / "reference_results"


def _costs(**steps: tuple[float, float, float]) -> pd.DataFrame:
    """step -> (intercept ms, slope ms per 1K context, longest context measured)."""
    return pd.DataFrame([{"step": step, "intercept_ms": a, "slope_ms_per_1k_context": b, "max_context_tokens": reach}
                         for step, (a, b, reach) in steps.items()])


def _run(method: str, tp: int, costs: pd.DataFrame, model: str = "1.5b", study: str = "own") -> PricedRun:
    return PricedRun(f"{model}-{method}-tp{tp}-x", study, model, method, tp, "1x NVIDIA H200", "abc", False,
                     "steps.csv", costs, ttft_s=0.1, mean_power_w=100.0)


def _replay(problems: int = 6, tokens: int = 10, prompt: int = 5) -> dict:
    """A hand-made replayed trace set: every trace ``tokens`` long, a draft of 2 at every odd step that
    emits 3 tokens (prefill emits 1); problems with an even index are correct from budget 8, and only
    p0 at budget 4 (the others are cut before their answer): accuracy 1/6, 1/2, 1/2."""
    steps, rows = [], []
    for index in range(problems):
        drafts, emitted = [0], [1]
        while sum(emitted) < tokens:
            drafted = len(drafts) % 2 == 1
            drafts.append(2 if drafted else 0)
            emitted.append(min(3 if drafted else 1, tokens - sum(emitted)))
        steps.append({"problem_id": f"p{index}", "prompt_tokens": prompt, "output_tokens": tokens,
                      "draft_tokens": drafts, "emitted": emitted})
        for budget in (4, 8, 16):
            rows.append({"problem_id": f"p{index}", "budget_tokens": budget,
                         "strict_correct": index % 2 == 0 and (budget > 4 or index == 0),
                         "lenient_correct": True})
    return {"model": "1.5b", "trace_set": "hand.jsonl", "replay": "1.5b-hand", "proxy_of": None,
            "rows": pd.DataFrame(rows), "steps": steps}


def test_known_steps_give_known_latencies():
    # plain step: 2 ms + 1 ms per 1K context; at budget 8 the greedy trace has 7 steps after the
    # prefill, at contexts 6..12 (prompt 5 + tokens so far).
    greedy = _run("baseline", 1, _costs(plain=(2.0, 1.0, 100)))
    spec = _run("ngram-spec", 1, _costs(draft=(4.0, 0.0, 100), **{"no-draft": (6.0, 0.0, 100)}))
    modelled = build_modelled([_replay()], [greedy, spec])
    rows = modelled.rows.set_index(["method", "budget_tokens", "problem_id"])
    expected = 0.1 + sum(0.002 + 0.001 * context / 1000 for context in range(6, 13))
    assert rows.loc[("baseline", 8, "p0"), "e2e_latency_s"] == pytest.approx(expected)
    # n-gram: steps emit 1 (prefill), 3 (draft), 1, 3 ... -> budget 8 is reached at step 4 (1+3+1+3):
    # steps 1 and 3 drafted (4 ms), step 2 found none (6 ms).
    assert rows.loc[("ngram-spec", 8, "p0"), "e2e_latency_s"] == pytest.approx(0.1 + 0.004 + 0.006 + 0.004)
    assert rows.loc[("baseline", 16, "p0"), "output_tokens"] == 10  # the trace ended before the budget
    assert rows.loc[("baseline", 8, "p1"), "strict_correct"] == 0.0
    assert rows.loc[("baseline", 8, "p0"), "energy_j"] == pytest.approx(100.0 * expected)
    assert (modelled.rows["evidence"] == "modelled").all() and set(modelled.rows["num_gpus"]) == {1}
    table = modelled_table(modelled, 3.6)  # $3.6 per GPU-hour = $0.001 per GPU-second
    row = table[(table["method"] == "baseline") & (table["budget_tokens"] == 8)].iloc[0]
    assert row["accuracy_strict"] == 0.5 and row["configuration"].endswith("(modelled)")
    assert row["usd_per_correct_answer"] == pytest.approx(expected * 0.001 / 0.5)
    assert row["compute_tflop_per_request"] == pytest.approx(2 * get_model("1.5b").params_billion * 1e9 * 8 / 1e12)


def test_no_extrapolation_beyond_measured_context():
    # plain steps measured up to context 10: budget 4 (context <= 9) is priced, 8 and 16 are refused.
    modelled = build_modelled([_replay()], [_run("baseline", 1, _costs(plain=(2.0, 0.0, 10)))])
    assert sorted(modelled.rows["budget_tokens"].unique()) == [4]
    assert sorted(modelled.refused["budget_tokens"]) == [8, 16]
    assert modelled.refused["reason"].str.contains("not extrapolated").all()


def _measured_table() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A system-only greedy run at TP 1: latency, no accuracy."""
    rows = pd.DataFrame([{"study": "own", "run_name": "1.5b-baseline-tp1-m", "model": "1.5b", "method": "baseline",
                          "acceptance": "engine", "tensor_parallel_size": 1, "system_only": True,
                          "hardware": "1x NVIDIA H200", "budget_tokens": b, "request_id": f"p{i}", "problem_id": f"p{i}",
                          "sample_index": 0, "output_tokens": b, "hit_budget": True, "e2e_latency_s": 0.002 * b + 0.1,
                          "ttft_s": 0.1, "tpot_s": 0.002, "num_gpus": 1, "strict_correct": math.nan,
                          "lenient_correct": math.nan, "grade_status": "not graded"}
                         for i in range(6) for b in (4, 8, 16)])
    from tts_utils.study.metrics import summarise

    summary = summarise(rows, ["study", "run_name", "model", "method", "acceptance", "tensor_parallel_size",
                               "system_only", "hardware", "budget_tokens"])
    return configuration_table(rows, summary, 3.6), rows


def test_a_modelled_row_is_never_counted_as_measured():
    table, rows = _measured_table()
    runs = [_run("baseline", tp, _costs(plain=(2.0 / tp ** 0.5, 0.0, 100))) for tp in (1, 2, 4)]
    modelled = build_modelled([_replay()], runs)
    mtable = modelled_table(modelled, 3.6)
    claims = check_all_claims("own", table, rows, modelled, mtable, [_replay()], host="here").set_index("claim")
    assert not table["run_name"].str.startswith("modelled").any() and "evidence" not in table
    tp = claims.loc["Tensor parallelism has diminishing returns"]
    assert tp["decided_by"] == "modelled" and tp["evidence"].startswith("[modelled")
    accuracy = claims.loc["Accuracy gains flatten as the output budget grows"]
    assert accuracy["decided_by"] == "real traces" and accuracy["verdict"] != "not enough data"
    optimal = claims.loc["Compute-optimal is not system-optimal"]
    assert optimal["decided_by"] == "modelled" and optimal["evidence"].startswith("[modelled")
    # Measured rows alone decide nothing about TP or accuracy: the modelled rows did.
    measured_only = check_all_claims("own", table, rows, build_modelled([], []), pd.DataFrame(), [], host="here").set_index("claim")
    assert (measured_only.loc[["Tensor parallelism has diminishing returns",
                               "Compute-optimal is not system-optimal"], "verdict"] == "not enough data").all()


def _pick_table() -> pd.DataFrame:
    """Hand-made configurations: A and B reach 0.8, B fastest, A's latency interval overlaps B's;
    C is faster still but only 0.6 accurate; D is 0.9 accurate and slow."""
    rows = [("A", 0.80, 10.0, 8.0, 12.0, 0.05), ("B", 0.82, 7.0, 6.0, 9.0, 0.04), ("C", 0.60, 2.0, 1.5, 2.5, 0.01),
            ("D", 0.90, 30.0, 28.0, 32.0, 0.20)]
    return pd.DataFrame([{"model": name, "method": "baseline", "tensor_parallel_size": 1, "budget_tokens": 1024,
                          "accuracy_strict": acc, "accuracy_strict_lo": acc - 0.05, "accuracy_strict_hi": acc + 0.05,
                          "mean_e2e_latency_s": lat, "mean_e2e_latency_s_lo": lo, "mean_e2e_latency_s_hi": hi,
                          "usd_per_correct_answer": usd, "usd_per_correct_answer_lo": usd * 0.9,
                          "usd_per_correct_answer_hi": usd * 1.1, "evidence": "measured"}
                         for name, acc, lat, lo, hi, usd in rows])


def test_pick_with_ties():
    table = _pick_table()
    fastest, cheapest = for_accuracy(table, 0.8)
    assert fastest["pick"].startswith("B ") and fastest["ties"] == 1 and fastest["tied_with"].startswith("A ")
    assert cheapest["pick"].startswith("B ") and cheapest["ties"] == 0  # A's 0.045..0.055 misses B's 0.036..0.044
    assert for_accuracy(table, 0.95)[0]["pick"] == "none reaches it"
    (accurate,) = for_latency(table, 10.0)
    assert accurate["pick"].startswith("B ") and accurate["tied_with"].startswith("A ")  # 0.82 +-0.05 vs 0.80
    assert for_latency(table, 2.0)[0]["pick"].startswith("C ")
    assert len(pick_table(table)) == 5 * 2 + 7


def test_the_pick_never_depends_on_row_order_and_counts_a_configuration_once():
    table = _pick_table()
    assert pick_table(table).equals(pick_table(table.iloc[::-1].reset_index(drop=True)))
    # Equal accuracy within a latency limit: the faster one, whichever row comes first.
    equal = table.assign(accuracy_strict=[0.82, 0.82, 0.6, 0.9])
    for frame in (equal, equal.iloc[::-1]):
        assert for_latency(frame, 12.0)[0]["pick"].startswith("B ")
    # The lower rule asks the interval's lower end to reach the target: A (0.75) and B (0.77) miss 0.8.
    assert for_accuracy(table, 0.8, "lower")[0]["pick"].startswith("D ")
    with pytest.raises(SystemExit, match="2"):
        pick_main(["--study", "nowhere", "--accuracy", "0.8", "--rule", "upper"])
    # An own and an imported pricing of one modelled configuration: the own one, once, never tied with itself.
    modelled = table.assign(evidence="modelled", trace_set="t", priced_by="own/run")
    imported = modelled[modelled["model"] == "B"].assign(priced_by="other/run (imported)", mean_e2e_latency_s=7.5)
    picks = pick_table(pd.concat([imported, modelled], ignore_index=True))
    fastest = picks[(picks["target"] == 0.8) & (picks["objective"] == "fastest")].iloc[0]
    assert fastest["pick"].startswith("B ") and "step costs" not in fastest["pick"] + fastest["tied_with"]


def test_pick_ties_are_paired_over_the_problems_both_ran():
    """n-gram 23% faster than greedy on every one of 40 problems whose lengths vary 10x: the unpaired
    95% intervals overlap, the paired ratio 0.77 does not span 1, so with the request rows the two
    are not tied; a configuration equal to the pick within noise still is."""
    spread = np.random.default_rng(3).lognormal(0, 0.8, 40)
    jitter = np.random.default_rng(4).normal(1.0, 0.02, 40)
    frames = []
    for method, factor in (("baseline", 1.0), ("ngram-spec", 0.77), ("eagle", 0.77)):
        noise = jitter if method == "eagle" else 1.0
        frames.append(pd.DataFrame({"problem_id": [f"p{i}" for i in range(40)], "sample_index": 0,
                                    "request_id": [f"p{i}" for i in range(40)], "strict_correct": True,
                                    "lenient_correct": True, "e2e_latency_s": spread * factor * noise,
                                    "output_tokens": 100, "num_gpus": 1, "run_name": method, "model": "7b",
                                    "method": method, "tensor_parallel_size": 1, "budget_tokens": 1024,
                                    "system_only": False, "hardware": "1x NVIDIA H100", "grade_status": "ok",
                                    "hit_budget": False, "ttft_s": 0.01, "tpot_s": 0.01}))
    rows = pd.concat(frames, ignore_index=True)
    from tts_utils.study.metrics import summarise

    summary = summarise(rows, ["run_name", "model", "method", "tensor_parallel_size", "system_only", "hardware",
                               "budget_tokens"])
    table = configuration_table(rows, summary, 3.6).assign(evidence="measured")
    greedy = table[table["method"] == "baseline"].iloc[0]
    ngram = table[table["method"] == "ngram-spec"].iloc[0]
    assert greedy["mean_e2e_latency_s_lo"] < ngram["mean_e2e_latency_s_hi"]  # unpaired intervals overlap
    unpaired = for_accuracy(table, 0.8)[0]
    paired = for_accuracy(table, 0.8, rows=rows)[0]
    assert "greedy" in unpaired["tied_with"] and "greedy" not in paired["tied_with"]
    assert paired["pick"].split()[1] in {"ngram-spec", "eagle"} and paired["ties"] == 1  # the other 0.77x one
    assert pick_table(table, rows=rows).equals(pick_table(table.iloc[::-1].reset_index(drop=True), rows=rows))


def test_pick_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TTS_OUTPUTS_DIR", str(tmp_path))
    assert pick_main(["--study", "s", "--accuracy", "0.8"]) == 2
    assert "run 04_analysis first" in capsys.readouterr().err
    write_sealed(tmp_path / "figures" / "s" / "configurations.csv", _pick_table().to_csv(index=False))  # as 04 does
    assert pick_main(["--study", "s", "--accuracy", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "fastest with strict accuracy >= 0.8: B " in out and "tied (95% intervals overlap; " in out
    assert pick_main(["--study", "s", "--latency-s", "-1"]) == 2
    assert pick_main(["--study", "s", "--accuracy", "1.5"]) == 2
    assert capsys.readouterr().err.count("error:") == 2


def test_tp_import_keeps_provenance_and_refuses_other_hardware(tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_OUTPUTS_DIR", str(tmp_path))
    shutil.copytree(REFERENCE / "runs" / "h200-system", tmp_path / "runs" / "h200-system")
    runs = import_tp_runs(["h200-system"], {"1x NVIDIA H200 (driver 1)"}, {"1.5b"})
    assert sorted(r.tensor_parallel_size for r in runs) == [1, 2, 4]
    assert all(r.imported and r.study == "h200-system" and r.source == "results.csv" for r in runs)
    assert all(r.label().endswith("(imported)") and abs(r.validation["validation_error"]) < 0.10 for r in runs)
    tp1 = next(r for r in runs if r.tensor_parallel_size == 1)
    # The budget segments of the 1.5B TP1 run: 2.45 ms/token at 16K in the README.
    assert np.isclose(tp1.costs["mean_ms"].iloc[0], 2.45, rtol=0.05) and tp1.reach() > 16384
    with pytest.raises(ConfigError, match="tp_import_any_hardware"):
        import_tp_runs(["h200-system"], {"1x NVIDIA H100 80GB HBM3"}, {"1.5b"})
    assert import_tp_runs(["h200-system"], {"1x NVIDIA H100 80GB HBM3"}, {"1.5b"}, any_hardware=True)
    with pytest.raises(ConfigError, match="neither a study"):
        import_tp_runs(["no-such-study"], set(), {"1.5b"})
    with pytest.raises(ConfigError, match="is this study itself"):  # 04 itself, as pipeline check before 00
        import_tp_runs([str(tmp_path / "runs" / "h200-system")], set(), {"1.5b"}, study="h200-system")


def test_priced_runs_from_steps_validate_at_the_longest_budget():
    runs = priced_runs(REFERENCE / "runs" / "h200-realistic", "h200-realistic")
    assert {r.method for r in runs} == {"baseline", "ngram-spec-synthetic"}
    for run in runs:
        assert run.source == "steps.csv" and run.validation["validated_budget"] == 2048
        assert run.validation["within_tolerance"]
    spec = next(r for r in runs if r.speculative)
    assert spec.reach() < 2048  # the old 1K no-draft probes: n-gram is priced only up to there


def test_ngram_pricing_refuses_a_replay_with_other_settings():
    """A trace's drafts replayed with k=3 do not price a run that speculated with k=5; greedy still prices."""
    replay = {**_replay(), "settings": {"num_speculative_tokens": 3, "prompt_lookup_min": 1, "prompt_lookup_max": 4}}
    spec = _run("ngram-spec", 1, _costs(draft=(4.0, 0.0, 100), **{"no-draft": (6.0, 0.0, 100)}))
    spec.ngram_settings = {"num_speculative_tokens": 5, "prompt_lookup_min": 1, "prompt_lookup_max": 4}
    modelled = build_modelled([replay], [spec, _run("baseline", 1, _costs(plain=(2.0, 0.0, 100)))])
    assert set(modelled.rows["method"]) == {"baseline"}
    assert sorted(modelled.refused["budget_tokens"]) == [4, 8, 16]
    assert modelled.refused["reason"].str.contains("replayed with n-gram k=3 look-up 1..4, the run speculated "
                                                   "with k=5 look-up 1..4").all()
    # The runs' own settings come from their identity.
    reference = priced_runs(REFERENCE / "runs" / "h200-realistic", "h200-realistic")
    assert {str(r.ngram_settings) for r in reference if r.speculative} == {
        str({"num_speculative_tokens": 5, "prompt_lookup_min": 1, "prompt_lookup_max": 4})}


def test_a_trace_set_replayed_again_counts_once(outputs_dir, capsys):
    """A study re-rendered by another vLLM replays its trace sets into new folders: the newest counts."""
    study = outputs_dir / "replays" / "again"
    source = next((REFERENCE / "replays" / "h200-realistic").glob("1.5b-*"))
    shutil.copytree(source, study / "1.5b-old")
    shutil.copytree(source, study / "1.5b-new")
    meta = json.loads((study / "1.5b-new" / "replay.json").read_text())
    # Later in UTC although earlier on the clock: the stamps' time zones count.
    meta["created_by"]["recorded_at"] = "2099-01-01T00:30:00-0100"
    old = json.loads((study / "1.5b-old" / "replay.json").read_text())
    old["created_by"]["recorded_at"] = "2099-01-01T01:00:00+0100"
    (study / "1.5b-old" / "replay.json").write_text(json.dumps(old))
    (study / "1.5b-new" / "replay.json").write_text(json.dumps(meta))
    (study / "1.5b-broken").mkdir()
    (study / "1.5b-broken" / "replay.json").write_text("{not json")
    assert [p.name for p in current_replay_folders("again")] == ["1.5b-broken", "1.5b-new"]
    assert "!! replay 1.5b-old left out: 1.5b-new replayed the same trace set later" in capsys.readouterr().out
    replays = load_replays("again")  # the broken one is reported and left out by its reader
    assert set(replays["replay"]) == {"1.5b-new"} and replays["budget_tokens"].is_unique
    assert len(load_replay_sets("again")) == 1
    assert real_trace_sets("again") == ["1.5b: r1-distill-qwen-1.5b.math500-first100.t0.6.jsonl"]


def test_the_speculation_figure_draws_the_intervals_that_decided(tmp_path):
    """speculation_ratio.csv/.png hold the verdict's own comparisons: n-gram against greedy at TP 1
    only (a TP 2 greedy run priced beside it is not pooled in), the decisive interval among them."""
    greedy = [_run("baseline", tp, _costs(plain=(2.0 / tp, 1.0, 100))) for tp in (1, 2)]
    spec = _run("ngram-spec", 1, _costs(draft=(4.0, 0.0, 100), **{"no-draft": (6.0, 0.0, 100)}))
    modelled = build_modelled([_replay()], [*greedy, spec])
    table, rows = _measured_table()
    ratios = speculation_ratios(table, rows, modelled.rows)
    at_8 = ratios[(ratios["budget_tokens"] == 8)].iloc[0]
    greedy_8 = 0.1 + sum(0.002 + 0.001 * context / 1000 for context in range(6, 13))
    assert at_8["evidence"] == "modelled" and at_8["ratio"] == pytest.approx((0.1 + 0.014) / greedy_8)
    assert set(ratios["budget_tokens"]) == {4, 8, 16} and (ratios["evidence"] == "modelled").all()
    claims = check_all_claims("own", table, rows, modelled, modelled_table(modelled, 3.6), [_replay()], host="here")
    speculation = claims.set_index("claim").loc["Speculative decoding lowers latency at every budget"]
    decisive = ratios[ratios["verdict"] == speculation["verdict"]].iloc[0]
    assert f"@{decisive['budget_tokens']} {decisive['ratio']:.3g}" in speculation["interval"]
    assert ratio_vs_budget(ratios, "speculation", tmp_path / "ratio.png") is not None
    assert (tmp_path / "ratio.png").stat().st_size > 5_000
    assert ratio_vs_budget(ratios.head(0), "nothing", tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
