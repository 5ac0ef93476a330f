"""Latency, throughput and cost metrics, per request and per configuration, with units in names.

cost-per-token (the paper's) = num_gpus x latency / generated tokens, in GPU-seconds per token.
Per configuration it is a ratio of totals: num_gpus x sum(latency) / sum(tokens), so long and short
answers weigh by their tokens. On the CPU engine "GPUs" are the TP ranks (CPU core groups).
Used by sweep.py (01-03, per-request rows and summaries) and analysis.py (04).
"""

from __future__ import annotations

import math

import pandas as pd


def cost_per_token(num_gpus: int, latency_s: float, tokens: int) -> float:
    """GPU-seconds per generated token; NaN when nothing was generated."""
    if tokens <= 0:
        return math.nan
    return num_gpus * latency_s / tokens


def time_per_output_token(e2e_latency_s: float, ttft_s: float, tokens: int) -> float:
    """Seconds per token after the first (TPOT); NaN for answers of one token or fewer."""
    if tokens <= 1:
        return math.nan
    return (e2e_latency_s - ttft_s) / (tokens - 1)


def speculation_stats(counter_deltas: dict[str, float]) -> dict[str, float]:
    """Acceptance rate and mean accepted length from ``/metrics`` counter deltas.

    ``spec_mean_acceptance_length`` counts the token the target model adds after every draft
    (vLLM's definition: 1 + accepted / drafts); NaN when no draft was made.
    """
    drafts = counter_deltas.get("vllm:spec_decode_num_drafts_total", 0.0)
    draft_tokens = counter_deltas.get("vllm:spec_decode_num_draft_tokens_total", 0.0)
    accepted = counter_deltas.get("vllm:spec_decode_num_accepted_tokens_total", 0.0)
    return {
        "spec_num_drafts": drafts,
        "spec_acceptance_rate": accepted / draft_tokens if draft_tokens else math.nan,
        "spec_mean_acceptance_length": 1.0 + accepted / drafts if drafts else math.nan,
    }


def engine_timings(counter_deltas: dict[str, float]) -> dict[str, float]:
    """Mean request timings as the engine itself measured them (NaN when it reports none)."""

    def mean(histogram: str) -> float:
        count = counter_deltas.get(f"{histogram}_count", 0.0)
        return counter_deltas.get(f"{histogram}_sum", 0.0) / count if count else math.nan

    per_token = mean("vllm:request_time_per_output_token_seconds")
    if math.isnan(per_token):
        per_token = mean("vllm:inter_token_latency_seconds")
    return {
        "engine_mean_e2e_latency_s": mean("vllm:e2e_request_latency_seconds"),
        "engine_mean_ttft_s": mean("vllm:time_to_first_token_seconds"),
        "engine_mean_tpot_ms": per_token * 1000.0,
    }


def summarise(rows: pd.DataFrame, group_by: list[str]) -> pd.DataFrame:
    """Aggregate per-request-per-budget rows into one row per configuration and budget."""
    grouped = rows.groupby(group_by, dropna=False, sort=True)
    summary = grouped.agg(
        num_requests=("request_id", "count"),
        accuracy_strict=("strict_correct", "mean"),
        accuracy_lenient=("lenient_correct", "mean"),
        ungradable=("grade_status", lambda s: int((~s.isin(["ok", "not graded"])).sum())),
        mean_output_tokens=("output_tokens", "mean"),
        total_output_tokens=("output_tokens", "sum"),
        hit_budget_fraction=("hit_budget", "mean"),
        mean_e2e_latency_s=("e2e_latency_s", "mean"),
        p50_e2e_latency_s=("e2e_latency_s", "median"),
        p90_e2e_latency_s=("e2e_latency_s", lambda s: s.quantile(0.9)),
        std_e2e_latency_s=("e2e_latency_s", "std"),
        total_e2e_latency_s=("e2e_latency_s", "sum"),
        mean_ttft_s=("ttft_s", "mean"),
        mean_tpot_s=("tpot_s", "mean"),
        num_gpus=("num_gpus", "first"),
    ).reset_index()
    summary["mean_tpot_ms"] = summary["mean_tpot_s"] * 1000.0
    summary["tokens_per_s"] = summary["total_output_tokens"] / summary["total_e2e_latency_s"]
    summary["cost_gpu_s_per_token"] = (
        summary["num_gpus"] * summary["total_e2e_latency_s"] / summary["total_output_tokens"]
    )
    summary["ms_per_token"] = summary["total_e2e_latency_s"] / summary["total_output_tokens"] * 1000.0
    if "energy_j" in rows:
        measured = rows[rows["energy_j"].notna()]
        energy = measured.groupby(group_by, dropna=False, sort=True).agg(
            energy_j=("energy_j", "sum"), energy_tokens=("output_tokens", "sum"),
            energy_seconds=("e2e_latency_s", "sum")).reset_index()
        energy["energy_j_per_token"] = energy["energy_j"] / energy["energy_tokens"]
        energy["mean_power_w"] = energy["energy_j"] / energy["energy_seconds"]
        summary = summary.merge(energy[[*group_by, "energy_j_per_token", "mean_power_w"]], on=group_by, how="left")
    return summary
