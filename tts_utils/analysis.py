"""Tables, Pareto frontiers and the paper's claims, re-tested on whatever results a study holds.

Every verdict is ``holds``, ``does not hold`` or ``not enough data``, with the numbers that
decided it. Used by 04_analysis (which only reads result files, through store.load_study).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tts_utils.models import get_model

HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "not enough data"
# The compute-only rule looks for the cheapest configuration within this share of the best accuracy.
ACCURACY_TARGET_SHARE = 0.95


def configuration_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per model x method x TP x budget: the numbers behind every figure."""
    if summary.empty:
        return summary
    table = summary.copy()
    table["configuration"] = table["method"] + " TP" + table["tensor_parallel_size"].astype(str)
    table["gpu_s_per_request"] = table["cost_gpu_s_per_token"] * table["mean_output_tokens"]
    table["compute_tflop_per_request"] = [
        2.0 * get_model(m).params_billion * 1e9 * tokens / 1e12
        for m, tokens in zip(table["model"], table["mean_output_tokens"])
    ]
    keys = ["model", "method", "tensor_parallel_size", "budget_tokens"]
    duplicated = table.duplicated(keys, keep=False)
    if duplicated.any():
        print(f"!! {int(duplicated.sum())} rows share model/method/TP/budget (runs with other settings); "
              "keeping the most recent run of each.")
        table = table.drop_duplicates(keys, keep="last")
    columns = ["model", "configuration", "method", "tensor_parallel_size", "budget_tokens", "num_requests",
               "accuracy_strict", "accuracy_lenient", "mean_output_tokens", "mean_e2e_latency_s",
               "p90_e2e_latency_s", "mean_ttft_s", "mean_tpot_ms", "tokens_per_s", "cost_gpu_s_per_token",
               "gpu_s_per_request", "compute_tflop_per_request", "spec_acceptance_rate",
               "spec_mean_acceptance_length", "system_only", "hardware", "run_name"]
    return table[[c for c in columns if c in table]].sort_values(
        ["model", "method", "tensor_parallel_size", "budget_tokens"]).reset_index(drop=True)


def pareto_front(frame: pd.DataFrame, cost: str, value: str) -> pd.Series:
    """True for points no other point beats on both: lower ``cost`` and higher ``value``."""
    points = frame[[cost, value]].to_numpy(dtype=float)
    mask = []
    for c, v in points:
        if math.isnan(c) or math.isnan(v):
            mask.append(False)
            continue
        dominated = np.any((points[:, 0] <= c) & (points[:, 1] >= v) & ((points[:, 0] < c) | (points[:, 1] > v)))
        mask.append(not dominated)
    return pd.Series(mask, index=frame.index)


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    evidence: str


def _combine(claim: str, per_model: dict[str, tuple[str, str]]) -> Verdict:
    if not per_model:
        return Verdict(claim, UNKNOWN, "no run covers it")
    verdicts = {v for v, _ in per_model.values()}
    evidence = "; ".join(f"{model}: {text}" for model, (_, text) in per_model.items())
    if FAILS in verdicts:
        return Verdict(claim, FAILS, evidence)
    if verdicts == {HOLDS}:
        return Verdict(claim, HOLDS, evidence)
    if HOLDS in verdicts:
        return Verdict(claim, HOLDS, evidence + " (some models lack data)")
    return Verdict(claim, UNKNOWN, evidence)


def _has_accuracy(frame: pd.DataFrame) -> str | None:
    """Why accuracy cannot decide anything here, or None if it can."""
    if frame.empty or frame["accuracy_strict"].isna().all():
        return "no accuracy (system-only runs use random weights)"
    if (frame["accuracy_strict"].fillna(0) == 0).all():
        return "no correct answer at any budget"
    return None


def claim_accuracy_flattens(table: pd.DataFrame) -> Verdict:
    """Accuracy gains flatten with length: the last budget doubling gains less than the first."""
    per_model = {}
    for model, frame in table[(table["method"] == "baseline") & (table["tensor_parallel_size"] == 1)].groupby("model"):
        frame = frame.sort_values("budget_tokens")
        reason = _has_accuracy(frame)
        if len(frame) < 3 or reason:
            per_model[model] = (UNKNOWN, reason or f"{len(frame)} budgets (need 3)")
            continue
        accuracy = frame["accuracy_strict"].to_numpy()
        gains = np.diff(accuracy)
        text = "strict accuracy " + " -> ".join(f"{a:.3f}@{b}" for a, b in zip(accuracy, frame["budget_tokens"]))
        per_model[model] = (HOLDS if gains[-1] < gains[0] else FAILS,
                            f"{text}; first gain {gains[0]:+.3f}, last gain {gains[-1]:+.3f}")
    return _combine("Accuracy gains flatten as the output budget grows", per_model)


def _latency(table: pd.DataFrame, model: str, method: str, tp: int) -> pd.Series:
    frame = table[(table["model"] == model) & (table["method"] == method) & (table["tensor_parallel_size"] == tp)]
    return frame.set_index("budget_tokens")["mean_e2e_latency_s"]


def claim_speculation_faster(table: pd.DataFrame) -> Verdict:
    """n-gram speculation has lower mean latency than baseline at every budget (both TP=1)."""
    per_model = {}
    for model in sorted(table["model"].unique()):
        base, spec = _latency(table, model, "baseline", 1), _latency(table, model, "ngram-spec", 1)
        shared = base.index.intersection(spec.index)
        if shared.empty:
            per_model[model] = (UNKNOWN, "needs baseline and ngram-spec at TP=1")
            continue
        ratios = spec[shared] / base[shared]
        text = "spec/baseline latency " + ", ".join(f"{r:.2f}@{b}" for b, r in ratios.items())
        per_model[model] = (HOLDS if (ratios < 1).all() else FAILS, text)
    return _combine("Speculative decoding lowers latency at every budget", per_model)


def _tp_speedups(table: pd.DataFrame, model: str) -> dict[int, float]:
    """Mean over budgets of latency(TP=1) / latency(TP=n)."""
    base = _latency(table, model, "baseline", 1)
    speedups = {}
    for tp in sorted(table.loc[(table["model"] == model) & (table["method"] == "baseline"),
                               "tensor_parallel_size"].unique()):
        if tp == 1:
            continue
        other = _latency(table, model, "baseline", int(tp))
        shared = base.index.intersection(other.index)
        if not shared.empty:
            speedups[int(tp)] = float((base[shared] / other[shared]).mean())
    return speedups


def claim_tp_diminishing(table: pd.DataFrame) -> Verdict:
    """TP has diminishing returns: speedup per GPU (efficiency) below 1 and falling with TP."""
    per_model = {}
    for model in sorted(table["model"].unique()):
        speedups = _tp_speedups(table, model)
        if not speedups:
            per_model[model] = (UNKNOWN, "needs baseline at TP=1 and a larger TP")
            continue
        efficiency = {tp: s / tp for tp, s in speedups.items()}
        falling = all(a >= b for a, b in zip(list(efficiency.values()), list(efficiency.values())[1:]))
        text = ", ".join(f"TP{tp}: speedup {s:.2f}x, efficiency {efficiency[tp]:.2f}" for tp, s in speedups.items())
        per_model[model] = (HOLDS if falling and all(e < 1 for e in efficiency.values()) else FAILS, text)
    return _combine("Tensor parallelism has diminishing returns", per_model)


def claim_small_model_slower_with_tp(table: pd.DataFrame) -> Verdict:
    """For the smallest model present, every TP>1 is slower than TP=1."""
    models = sorted(table["model"].unique(), key=lambda m: get_model(m).params_billion)
    for model in models:
        speedups = _tp_speedups(table, model)
        if speedups:
            text = ", ".join(f"TP{tp} latency = {1 / s:.2f}x TP1" for tp, s in speedups.items())
            verdict = HOLDS if all(s < 1 for s in speedups.values()) else FAILS
            return Verdict("For the smallest model, more GPUs are slower", verdict, f"{model}: {text}")
    return Verdict("For the smallest model, more GPUs are slower", UNKNOWN, "no model has runs at several TP sizes")


def claim_compute_not_system_optimal(table: pd.DataFrame) -> Verdict:
    """Among configurations within 95% of the best accuracy, compare the pick of a compute-only rule
    (fewest FLOPs per request: 2 x params x tokens) with the fastest and the cheapest per request."""
    claim = "Compute-optimal is not system-optimal"
    reason = _has_accuracy(table)
    if reason:
        return Verdict(claim, UNKNOWN, reason)
    target = ACCURACY_TARGET_SHARE * table["accuracy_strict"].max()
    eligible = table[table["accuracy_strict"] >= target]
    if len(eligible) < 2:
        return Verdict(claim, UNKNOWN, f"only {len(eligible)} configuration reaches {target:.3f} strict accuracy")

    def name(row: pd.Series) -> str:
        return f"{row['model']} {row['configuration']} @{row['budget_tokens']}"

    compute = eligible.loc[eligible["compute_tflop_per_request"].idxmin()]
    fastest = eligible.loc[eligible["mean_e2e_latency_s"].idxmin()]
    cheapest = eligible.loc[eligible["gpu_s_per_request"].idxmin()]
    differs = name(compute) != name(fastest) or name(compute) != name(cheapest)
    evidence = (f"accuracy target {target:.3f}; compute-only pick {name(compute)} "
                f"({compute['compute_tflop_per_request']:.1f} TFLOP, {compute['mean_e2e_latency_s']:.2f} s, "
                f"{compute['gpu_s_per_request']:.2f} GPU-s); fastest {name(fastest)} "
                f"({fastest['mean_e2e_latency_s']:.2f} s); cheapest {name(cheapest)} "
                f"({cheapest['gpu_s_per_request']:.2f} GPU-s per request)")
    return Verdict(claim, HOLDS if differs else FAILS, evidence)


def check_claims(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims, one row each, with verdict and evidence."""
    if table.empty:
        verdicts = [Verdict(c, UNKNOWN, "no complete runs") for c in (
            "Accuracy gains flatten as the output budget grows",
            "Speculative decoding lowers latency at every budget",
            "Tensor parallelism has diminishing returns",
            "For the smallest model, more GPUs are slower",
            "Compute-optimal is not system-optimal")]
    else:
        verdicts = [claim_accuracy_flattens(table), claim_speculation_faster(table), claim_tp_diminishing(table),
                    claim_small_model_slower_with_tp(table), claim_compute_not_system_optimal(table)]
    return pd.DataFrame([v.__dict__ for v in verdicts])
