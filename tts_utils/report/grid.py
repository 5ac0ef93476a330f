"""The fast grid in tables (04_analysis): batched accuracy passes and latency runs on a subset.

With ``batch_concurrency > 0`` 01_greedy runs one batched accuracy pass per model (method
``baseline-batched``) and checks its tokens against batch-1 runs (``batch_check``); with
``latency_problems > 0`` latency runs measure a subset and predict the rest, gated by a
``prediction_check``. These functions read both from a study's run folders (``store.load_study``
and each run's ``segments.jsonl``); they compute nothing the sweep did not record.
"""

from __future__ import annotations

import math

import pandas as pd

from tts_utils.models import get_model
from tts_utils.paths import study_dir
from tts_utils.store import RunFolder, StudyResults
from tts_utils.study.plan import BATCHED_METHOD


def _span_s(study: str, run_name: str) -> float:
    """Seconds the batched requests were in flight: the measured spans of the run's engine sessions
    (``energy_seconds``, timed around the requests alone, with or without an energy counter)."""
    folder = RunFolder(study_dir(study) / run_name)
    spans = [entry.get("energy_seconds") for segment in folder.segments() for entry in segment.get("energy", [])]
    spans = [span for span in spans if span]
    return float(sum(spans)) if spans else math.nan


def batch_check_verdict(check: dict | None) -> str:
    """One line on the batched pass's live check against batch-1 tokens."""
    if not isinstance(check, dict):
        return "not checked"
    checked, mismatches = len(check.get("checked", [])), len(check.get("mismatches", []))
    kernels = "" if check.get("batch_invariant_env") else " (VLLM_BATCH_INVARIANT was not set)"
    if not checked:
        return "nothing checked" + kernels
    if check.get("consistent"):
        return f"equal: {checked} of {checked} problems re-run alone gave the same tokens{kernels}"
    return (f"differs on {mismatches} of {checked} problems: latency runs of this model measure every "
            f"problem{kernels}")


def batched_passes(study: str, results: StudyResults) -> pd.DataFrame:
    """One row per batched accuracy pass: problems, concurrency, output tokens at the largest budget
    (the pass's own budget; smaller ones are cut from it), the span they took and the throughput
    (tokens / span), next to batch-1 decoding of the same model where the study has it."""
    if results.batched.empty:
        return pd.DataFrame()
    runs = results.runs.set_index("run_name")
    plain = results.summary[(results.summary["method"] == "baseline") & (results.summary["tensor_parallel_size"] == 1)
                            ] if not results.summary.empty else results.summary
    rows = []
    for run_name, summary in results.batched.groupby("run_name", sort=False):
        largest = summary.loc[summary["budget_tokens"].idxmax()]
        span = _span_s(study, run_name)
        source = "measured span of the requests (segments.jsonl energy_seconds)"
        if math.isnan(span):  # no session span recorded: at most `concurrency` requests overlap
            concurrency = min(int(runs.loc[run_name, "concurrency"]), int(largest["num_requests"]))
            span = float(largest["total_e2e_latency_s"]) / concurrency
            source = "sum of request latencies / concurrency (lower bound on the span)"
        throughput = float(largest["total_output_tokens"]) / span if span else math.nan
        batch1 = plain[(plain["model"] == largest["model"]) & (plain["budget_tokens"] == largest["budget_tokens"])
                       ] if not plain.empty else plain
        batch1_tokens_per_s = 1e3 / float(batch1["ms_per_token"].iloc[-1]) if len(batch1) else math.nan
        check = runs.loc[run_name, "batch_check"]
        rows.append({"model": largest["model"], "problems": int(largest["num_requests"]),
                     "concurrency": int(runs.loc[run_name, "concurrency"]),
                     "budget_tokens": int(largest["budget_tokens"]), "output_tokens": int(largest["total_output_tokens"]),
                     "span_s": span, "throughput_tokens_per_s": throughput,
                     "per_request_tokens_per_s": float(largest["tokens_per_s"]),
                     "batch1_tokens_per_s": batch1_tokens_per_s, "speedup_vs_batch1": throughput / batch1_tokens_per_s,
                     "batch_check": batch_check_verdict(check),
                     "batch_invariant_env": check.get("batch_invariant_env") if isinstance(check, dict) else None,
                     "span_source": source, "run_name": run_name})
    return pd.DataFrame(rows).sort_values("model", key=lambda models: models.map(
        lambda key: get_model(key).params_billion), ignore_index=True)


def latency_checks(results: StudyResults) -> pd.DataFrame:
    """One row per latency run on a subset (``latency_problems``) or with a prediction check: the
    check's worst error against its tolerance, per budget, and what the run's latency stands on
    (``latency_scope``; ``measured_fraction`` of problems measured, at the largest budget)."""
    if results.runs.empty:
        return pd.DataFrame()
    runs = results.runs[results.runs["method"] != BATCHED_METHOD]
    subset = runs["latency_problems"].fillna(0) > 0 if "latency_problems" in runs else False
    runs = runs[subset | runs["prediction_check"].map(lambda c: isinstance(c, dict))]
    rows = []
    for run in runs.itertuples():
        summary = results.summary[results.summary["run_name"] == run.run_name].sort_values("budget_tokens")
        last = summary.iloc[-1] if len(summary) else pd.Series(dtype=object)
        check = run.prediction_check if isinstance(run.prediction_check, dict) else {}
        rows.append({"model": run.model, "method": run.method, "tensor_parallel_size": run.tensor_parallel_size,
                     "latency_problems": getattr(run, "latency_problems", math.nan),
                     "tolerance": check.get("tolerance", math.nan), "worst_error": check.get("worst_error", math.nan),
                     "passed": check.get("passed") if check else None,
                     "error_per_budget": ", ".join(f"{b['budget_tokens']}: {b['error']:+.1%} ({b['requests']} req.)"
                                                   for b in check.get("per_budget", [])) or "no prediction check",
                     "measured_fraction": float(last.get("measured_fraction", math.nan)),
                     "latency_scope": last.get("latency_scope", "not recorded"), "run_name": run.run_name})
    return pd.DataFrame(rows)
