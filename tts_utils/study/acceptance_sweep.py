"""Break-even acceptance: latency per token as a function of mean acceptance length.

For each model of a study and the study's ``spec_method`` (n-gram, draft model, EAGLE-3), one
system-only engine starts with vLLM's synthetic rejection sampling and the kit's worker extension
(worker_ext.py). For every length in ``acceptance_lengths`` the kit sets the engine's rates through
``/collective_rpc`` (one engine start, many points), streams the first ``acceptance_requests``
problems of the study at the smallest budget at concurrency 1, and reads the speculation counters. Rates for a length follow
vLLM's own ``synthetic_acceptance_length`` schedule (the minimum-variance one: the first draft
positions always accepted, one partly, the rest never).

Points go to ``outputs/acceptance/<study>/<run_name>/`` (``points.jsonl``, one line per length,
appended as each finishes, so a re-run measures only the missing lengths; ``sweep.json`` holds the
identity and provenance). 03_spec runs the sweep (GPU engines only: the CPU build has no synthetic
sampling); 04_analysis draws the curves (``curves``, ``break_even_lengths``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from tts_utils import provenance
from tts_utils.cli import run, study_config, study_parser
from tts_utils.config import StudyConfig
from tts_utils.engine import vllm_compat
from tts_utils.engine.runner import RequestSpec, counter_delta, make_client, read_counters, stream_one
from tts_utils.engine.server import VLLMServer
from tts_utils.errors import ConfigError, CorruptResultError
from tts_utils.intervals import interval
from tts_utils.models import get_model
from tts_utils.paths import acceptance_dir
from tts_utils.store import (
    append_record,
    atomic_write_json,
    read_json,
    read_records,
    study_lock,
)
from tts_utils.study.plan import plan_runs

EXTENSION = "tts_utils.engine.worker_ext.SyntheticAcceptance"
# What the sweep's runs are named by; a count of requests per length other than 1 (the first
# reference sweeps') is added to it, so sweeps of different depth never resume into each other.
SWEEP_ACCEPTANCE = "synthetic: break-even sweep"


def rates_for_length(length: float, spec_tokens: int) -> tuple[float, ...]:
    """Unconditional per-position rates with mean acceptance length ``length`` (accepted drafts + 1),
    as vLLM resolves ``synthetic_acceptance_length``: [1, .., 1, fraction, 0, .., 0]."""
    if not 1.0 <= length <= spec_tokens + 1:
        raise ConfigError(f"acceptance length {length} outside [1, {spec_tokens + 1}]")
    accepted = length - 1.0
    full = min(int(accepted), spec_tokens)
    rates = [1.0] * full + ([round(accepted - full, 6)] if full < spec_tokens else [])
    return tuple((rates + [0.0] * spec_tokens)[:spec_tokens])


def plan_sweeps(config: StudyConfig) -> list:
    """One 03_spec plan per model, started at the first length's rates with the worker extension
    and the dev-mode RPC switched on. Raises ConfigError (including on CPU engines) before launch."""

    if not config.acceptance_lengths:
        raise ConfigError("acceptance_lengths is empty; give mean acceptance lengths such as [1.5, 2, 3, 6]")
    if not config.system_only:
        raise ConfigError("the break-even sweep times random weights at chosen acceptance: set load_format: dummy")
    first = rates_for_length(config.acceptance_lengths[0], config.spec_tokens)
    swept = replace(config, spec_acceptance=" ".join(map(str, first)) + " @ break-even sweep")
    plans, _ = plan_runs(swept, "03_spec")
    available = len(sweep_problems(plans[0])) if plans else 0
    if config.acceptance_requests > available:
        raise ConfigError(f"acceptance_requests {config.acceptance_requests} > the {available} problems this study "
                          "measures latency on (num_problems, latency_problems)")
    acceptance = SWEEP_ACCEPTANCE + (f", {config.acceptance_requests} requests per length"
                                     if config.acceptance_requests != 1 else "")
    out = []
    for plan in plans:
        engine = replace(plan.engine, extra_args=(*plan.engine.extra_args, "--worker-extension-cls", EXTENSION),
                         env=(*plan.engine.env, ("VLLM_SERVER_DEV_MODE", "1")))
        out.append(replace(plan, engine=engine, acceptance=acceptance, budgets=(min(plan.budgets),)))
    return out


def sweep_problems(plan) -> list:
    """The problems a sweep may time, in order: the study's latency subset if any, else all."""
    return [p for p in plan.problems.problems if not plan.latency_subset or p.unique_id in plan.latency_subset]


def _set_rates(client, server: VLLMServer, rates: tuple[float, ...]) -> list[float]:
    response = client.post(f"{server.base_url}/collective_rpc", timeout=60.0,
                           json={"method": "tts_set_synthetic_acceptance", "args": [json.dumps(list(rates))]})
    response.raise_for_status()
    answers = response.json()["results"]
    errors = {answer["error"] for answer in answers if "error" in answer}
    if errors:
        raise RuntimeError(f"could not set synthetic acceptance: {'; '.join(sorted(errors))}")
    return answers[0]["conditional"]


def _point(plan, length: float, rates: tuple[float, ...], conditional: list[float], records: list[dict],
           counters: dict[str, float]) -> dict:
    drafts = counters.get("vllm:spec_decode_num_drafts_total", 0.0)
    accepted = counters.get("vllm:spec_decode_num_accepted_tokens_total", 0.0)
    return {"acceptance_length": length, "rates": list(rates), "conditional_rates": conditional,
            "requests": [{"request_id": r["request_id"], "problem_id": r["problem_id"],
                          "output_tokens": r["completion_tokens"], "e2e_latency_s": r["e2e_latency_s"],
                          "ttft_s": r["chunk_times_s"][0] if r["chunk_times_s"] else math.nan} for r in records],
            "drafts": drafts, "accepted_tokens": accepted,
            "steps": sum(max(0, len(r["chunk_tokens"]) - 1) for r in records),  # decoding chunks, prefill left out
            "measured_acceptance_length": 1.0 + accepted / drafts if drafts else math.nan,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def run_plan(plan, lengths: tuple[float, ...], requests: int) -> str:
    """Measure the missing lengths of one plan with one engine, ``requests`` problems each (one
    after another, the first problems of ``sweep_problems``); returns what happened."""
    folder = acceptance_dir(plan.study) / plan.run_name
    folder.mkdir(parents=True, exist_ok=True)
    points_file = folder / "points.jsonl"
    done = {round(p["acceptance_length"], 6) for p in read_records(points_file, repair=True)}
    missing = [length for length in lengths if round(length, 6) not in done]
    if not missing:
        return "skipped (complete)"
    if not (folder / "sweep.json").exists():
        atomic_write_json(folder / "sweep.json", {"identity": plan.identity(), "run_name": plan.run_name,
                                                  "created_by": provenance.collect()})
    specs = [RequestSpec(f"{p.unique_id}#b{plan.budgets[0]}", p.unique_id, 0, plan.model.prompt(p.problem),
                         plan.budgets[0]) for p in sweep_problems(plan)[:requests]]
    server = VLLMServer(plan.engine, folder / "engine.log", startup_timeout_s=plan.startup_timeout_s)
    with make_client(server.headers) as client, server:
        version = client.get(f"{server.base_url}/version").json().get("version")
        session = read_json(folder / "sweep.json")
        session.setdefault("sessions", []).append({"engine_version": version, "engine_startup_s": server.startup_s})
        atomic_write_json(folder / "sweep.json", session)
        stream_one(client, server.base_url, plan.model.key, replace(specs[0], request_id="warmup", max_tokens=16),
                   plan.sampling)
        for length in missing:
            rates = rates_for_length(length, plan.engine.speculative.num_speculative_tokens)
            conditional = _set_rates(client, server, rates)
            before = read_counters(client, server.base_url)
            records = [stream_one(client, server.base_url, plan.model.key, spec, plan.sampling).to_dict()
                       for spec in specs]
            counters = counter_delta(before, read_counters(client, server.base_url))
            append_record(points_file, _point(plan, length, rates, conditional, records, counters))
            print(f"{plan.run_name}: acceptance length {length:g} -> "
                  f"{_ms_per_token(records):.2f} ms/token")
    return f"measured {len(missing)} lengths"


def _ms_per_token(records: list[dict]) -> float:
    tokens = sum(r.get("completion_tokens", r.get("output_tokens", 0)) for r in records)
    return sum(r["e2e_latency_s"] for r in records) / tokens * 1e3 if tokens else math.nan


def run_sweeps(config: StudyConfig) -> pd.DataFrame:
    """03_spec: the break-even sweep of every model, under the study lock; one row per model."""
    vllm_compat.require(config)  # the worker extension's vLLM internals, before any engine starts
    plans = plan_sweeps(config)
    outcomes = []
    with study_lock(config.study):
        for plan in plans:
            started = time.monotonic()
            outcomes.append({"run_name": plan.run_name,
                             "outcome": run_plan(plan, config.acceptance_lengths, config.acceptance_requests),
                             "seconds": round(time.monotonic() - started, 1)})
    return pd.DataFrame(outcomes)


def curves(study: str) -> pd.DataFrame:
    """04_analysis: one row per model, method, drafter, budget and length: ms per token (total time /
    tokens, with a 95% bootstrap interval over problems, intervals.py: none below 5), target and
    measured acceptance length, and the sweep's budget (``budget_tokens``). Where sweeps of
    different depth (``acceptance_requests``) measured the same length, the deepest one counts."""
    rows = []
    for folder in sorted(acceptance_dir(study).glob("*/sweep.json")):
        meta = read_json(folder)
        identity = meta["identity"]
        speculative = identity["engine"]["speculative"]
        try:
            points = read_records(folder.parent / "points.jsonl")  # each point carries its checksum
        except CorruptResultError as error:
            print(f"!! excluded break-even sweep {folder.parent.name}: {error}; move the file away and re-run "
                  "the sweep to measure its lengths again")
            continue
        for point in points:
            requests = pd.DataFrame(point["requests"]).assign(num_gpus=1)  # seconds per token, not GPU-seconds
            per_token = interval(requests, "cost_gpu_s_per_token")
            rows.append({"run_name": meta["run_name"], "model": identity["model"], "method": identity["method"],
                         "budget_tokens": min(identity["budgets"]), "drafter": speculative.get("draft_model_path"),
                         "spec_tokens": speculative["num_speculative_tokens"],
                         "acceptance_length": point["acceptance_length"],
                         "measured_acceptance_length": point["measured_acceptance_length"],
                         "requests": len(requests), "output_tokens": int(requests["output_tokens"].sum()),
                         "ms_per_token": per_token.estimate * 1e3, "ms_per_token_lo": per_token.low * 1e3,
                         "ms_per_token_hi": per_token.high * 1e3})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    same = ["model", "method", "drafter", "budget_tokens", "acceptance_length"]
    deepest = frame.sort_values("requests", kind="stable").drop_duplicates(same, keep="last")
    return frame.loc[sorted(deepest.index)].reset_index(drop=True)


def break_even_lengths(frame: pd.DataFrame, plain_ms: dict[str, float],
                       real_lengths: dict[str, float] | None = None) -> pd.DataFrame:
    """Per model and method: the measured acceptance length at which the curve comes down through
    plain decoding's ms per token (linear interpolation between the two measured points around the
    first such crossing; ``<`` or ``>`` the measured range when it does not cross), and, for n-gram,
    the ms per token the curve gives at the real traces' length (NaN outside the measured range)."""
    out = []
    for (model, method), group in frame.groupby(["model", "method"]):
        group = group.dropna(subset=["measured_acceptance_length", "ms_per_token"])
        group = group.sort_values("measured_acceptance_length")
        x, y = group["measured_acceptance_length"].to_numpy(float), group["ms_per_token"].to_numpy(float)
        if not len(x):
            continue
        plain = plain_ms.get(model, math.nan)
        row = {"model": model, "method": method, "points": len(x), "plain_ms_per_token": plain,
               "fastest_ms_per_token": float(y.min()), "at_length": float(x[y.argmin()]),
               "break_even_length": math.nan, "break_even": "no plain decoding run"}
        if not math.isnan(plain):
            below = y <= plain
            # The first measured point at or below plain decoding that follows one above it.
            crossings = [i for i in range(1, len(x)) if below[i] and not below[i - 1]]
            if below.all():
                row["break_even"] = f"< {x.min():.2f} (faster at every measured length)"
            elif not below.any():
                row["break_even"] = f"> {x.max():.2f} (slower at every measured length)"
            elif not crossings:  # below at short lengths only: noise, or a curve that rises
                row["break_even"] = f"< {x.min():.2f} (faster at short lengths only: check the curve)"
            else:
                i = crossings[0]
                length = x[i - 1] + (plain - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1])
                row.update(break_even_length=float(length), break_even=f"{length:.2f}")
        real = (real_lengths or {}).get(model)
        if real is not None and method.startswith("ngram"):
            inside = len(x) > 1 and x.min() <= real <= x.max()
            row.update(real_trace_length=real,
                       real_trace_ms_per_token=float(np.interp(real, x, y)) if inside else math.nan)
        out.append(row)
    return pd.DataFrame(out)


def plain_ms_per_token(summary: pd.DataFrame, budget_tokens: int) -> dict[str, float]:
    """Plain decoding's ms per output token per model: greedy ``baseline`` at TP 1 and this budget
    (the latest run where several match)."""
    if summary.empty:
        return {}
    plain = summary[(summary["method"] == "baseline") & (summary["tensor_parallel_size"] == 1)
                    & (summary["budget_tokens"] == budget_tokens)]
    return {model: float(group["ms_per_token"].iloc[-1]) for model, group in plain.groupby("model")}


def real_trace_acceptance(replays: pd.DataFrame, budget_tokens: int | None = None) -> pd.DataFrame:
    """Per model, n-gram acceptance on real traces at ``budget_tokens`` (None: the largest replayed
    budget; a model without that budget is left out), pooled over its trace sets (weighted by traces). ``tokens_per_step`` counts steps without a draft as one token,
    so it is what a real request gets per step; ``mean_acceptance_length`` counts drafted steps only."""
    columns = ["model", "budget_tokens", "traces", "tokens_per_step", "mean_acceptance_length",
               "no_draft_step_fraction", "trace_sets"]
    if replays.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for model, frame in replays.groupby("model"):
        last = frame[frame["budget_tokens"] == (budget_tokens or frame["budget_tokens"].max())]
        if last.empty:
            continue
        weights = last["traces"].to_numpy(float)
        rows.append({"model": model, "budget_tokens": int(last["budget_tokens"].iloc[0]), "traces": int(weights.sum()),
                     **{name: float(np.average(last[name], weights=weights))
                        for name in ("tokens_per_step", "mean_acceptance_length", "no_draft_step_fraction")},
                     "trace_sets": ", ".join(sorted(last["trace_set"].unique()))})
    return pd.DataFrame(rows, columns=columns)


def study_break_even(frame: pd.DataFrame, summary: pd.DataFrame, replays: pd.DataFrame,
                     real_budget_tokens: int | None = None) -> pd.DataFrame:
    """04_analysis: ``break_even_lengths`` of a study's sweep (``curves``), against plain decoding
    from its runs (``StudyResults.summary``) at each sweep's budget, with the real traces' n-gram
    tokens per step (``real_trace_acceptance`` at ``real_budget_tokens``, None: the largest; steps
    without a draft included) placed on the curve."""
    if frame.empty:
        return pd.DataFrame()
    real = real_trace_acceptance(replays, real_budget_tokens).set_index("model")
    lengths = real["tokens_per_step"].to_dict()
    tables = []
    for budget, group in frame.groupby("budget_tokens"):
        table = break_even_lengths(group, plain_ms_per_token(summary, int(budget)), lengths)
        tables.append(table.assign(budget_tokens=int(budget)))
    table = pd.concat(tables, ignore_index=True)
    table = table.sort_values(["model", "method"], key=lambda column: column.map(
        lambda value: get_model(value).params_billion) if column.name == "model" else column, ignore_index=True)
    ngram = table["method"].str.startswith("ngram")
    table["real_trace_no_draft_fraction"] = table["model"].map(real["no_draft_step_fraction"]).where(ngram)
    table["real_trace_budget_tokens"] = table["model"].map(real["budget_tokens"]).where(ngram)
    table["real_trace_pays"] = [
        None if math.isnan(row.get("real_trace_ms_per_token", math.nan)) or math.isnan(row["plain_ms_per_token"])
        else bool(row["real_trace_ms_per_token"] < row["plain_ms_per_token"]) for _, row in table.iterrows()]
    first = ["model", "method", "budget_tokens", "points", "plain_ms_per_token", "break_even", "break_even_length"]
    return table[first + [column for column in table if column not in first]]


def main(argv: list[str] | None = None) -> int:
    """``python -m tts_utils acceptance_sweep [--profile P] [--set k=v]``: the sweep without Jupyter."""
    args = study_parser("python -m tts_utils acceptance_sweep", main.__doc__).parse_args(argv)
    return run(lambda: print(run_sweeps(study_config(args)).to_string(index=False)))


if __name__ == "__main__":
    raise SystemExit(main())
