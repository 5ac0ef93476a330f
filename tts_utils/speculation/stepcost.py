"""The step-cost model: what one engine step costs, by kind and context length, and the latency
it predicts for any step sequence (a measured request's, or a replayed real trace's).

``classify_chunks`` turns a streamed request into engine steps: the prefill step, a plain decoding
step (no speculation), a speculative step whose n-gram look-up found no draft, or one that
verified a draft (draft lengths from the installed vLLM's own n-gram matcher; a drafter model
proposes k tokens every step). Per run and kind, step seconds are fitted as ``a + b x context``;
validated on held-out requests; applied to replayed real traces; and turned into the break-even
tokens per step at which speculation pays off. Used by sweep.py (steps.csv per run) and
04_analysis (fit, validation, realistic predictions, break-even).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from tts_utils.errors import CorruptResultError
from tts_utils.paths import study_dir
from tts_utils.speculation.replay import NgramSettings, TraceSteps, engine_ngram_matcher, replay_steps
from tts_utils.speculation.replay_sets import load_replay_steps, load_replays
from tts_utils.store import RunFolder

# A configuration whose predicted mean latency misses the measured one by more than this is
# reported as not validated.
TOLERANCE = 0.10


def known_steps(record: dict, prompt_ids: list[int], speculative, greedy: bool) -> TraceSteps | None:
    """The engine's exact steps when they follow from the tokens: plain decoding (one token a step)
    and greedy n-gram verification (replay). None when acceptance was sampled or synthetic."""
    produced = len(record["token_ids"])
    if speculative is None:
        return TraceSteps(np.zeros(produced, int), np.zeros(produced, int), np.ones(produced, int))
    if speculative.method == "ngram" and greedy and speculative.synthetic_acceptance_rates is None:

        settings = NgramSettings(speculative.num_speculative_tokens, speculative.prompt_lookup_min,
                                 speculative.prompt_lookup_max)
        return replay_steps(prompt_ids, record["token_ids"], settings)
    return None


def classify_chunks(record: dict, prompt_ids: list[int], speculative, kind: str, greedy: bool = False) -> pd.DataFrame:
    """One row per engine step of a streamed request: context before it, draft length, tokens, seconds.

    Where the steps follow from the tokens (plain decoding, greedy n-gram), a chunk that carried
    several steps (the server's output loop fell behind) has its time split evenly between them,
    and ``chunk`` numbers steps.
    Otherwise every chunk is one step, and one that carries more tokens than its draft allows is
    marked ``merged`` and left out of fits.
    """
    ends = list(record["chunk_tokens"])
    times = list(record["chunk_times_s"])
    known = known_steps(record, prompt_ids, speculative, greedy)
    if known is not None:
        step_ends = np.minimum(known.produced, len(record["token_ids"]))
        chunk_of = np.searchsorted(ends, step_ends)  # the chunk that delivered each step's last token
        chunk_of = np.minimum(chunk_of, len(ends) - 1)
        starts = np.concatenate([[0.0], np.asarray(times)[:-1]])
        per_chunk = np.bincount(chunk_of, minlength=len(ends))
        rows, previous_end = [], 0
        for index, (end, chunk) in enumerate(zip(step_ends, chunk_of)):
            draft = int(known.draft_tokens[index])
            step = "prefill" if index == 0 else ("plain" if speculative is None else ("draft" if draft else "no-draft"))
            rows.append({"request_id": record["request_id"], "kind": kind, "chunk": index, "step": step,
                         "context_tokens": len(prompt_ids) + previous_end, "draft_tokens": draft,
                         "emitted": int(end - previous_end),
                         "seconds": (times[chunk] - starts[chunk]) / per_chunk[chunk], "merged": False})
            previous_end = int(end)
        return pd.DataFrame(rows)
    tokens = np.asarray(list(prompt_ids) + list(record["token_ids"]), dtype=np.int32)
    match = None
    if speculative.method == "ngram":

        match = engine_ngram_matcher()
    rows, previous_end, previous_time = [], 0, 0.0
    for index, (end, at) in enumerate(zip(ends, times)):
        context = len(prompt_ids) + previous_end
        draft = 0
        if index > 0 and match is not None:
            draft = len(match(tokens[:context], speculative.prompt_lookup_min, speculative.prompt_lookup_max,
                              context + speculative.num_speculative_tokens + 1, speculative.num_speculative_tokens))
        elif index > 0:
            draft = speculative.num_speculative_tokens  # a drafter model proposes k tokens at every step
        emitted = end - previous_end
        step = "prefill" if index == 0 else ("draft" if draft else "no-draft")
        rows.append({"request_id": record["request_id"], "kind": kind, "chunk": index, "step": step,
                     "context_tokens": context, "draft_tokens": draft, "emitted": emitted,
                     "seconds": at - previous_time, "merged": emitted > draft + 1})
        previous_end, previous_time = end, at
    return pd.DataFrame(rows)


def fit_step_costs(steps: pd.DataFrame) -> pd.DataFrame:
    """Per run and step kind: seconds = a + b x context, least squares over unmerged steps."""
    rows = []
    usable = steps[(steps["step"] != "prefill") & ~steps["merged"].astype(bool)]
    for (run_name, step), group in usable.groupby(["run_name", "step"]):
        x, y = group["context_tokens"].to_numpy(float), group["seconds"].to_numpy(float)
        slope, intercept = non_negative_line(x, y)
        rows.append({"run_name": run_name, "step": step, "steps": len(group), "intercept_ms": intercept * 1e3,
                     "slope_ms_per_1k_context": slope * 1e6, "mean_ms": y.mean() * 1e3})
    return pd.DataFrame(rows)


def non_negative_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y = intercept + slope x`` with neither below zero: a step never costs less at
    a longer context, nor less than nothing. Bursty step times (a loaded CPU's stream delivers
    hundreds of steps at once) can tilt a free fit below zero and predict negative latencies."""
    if len(x) <= 2 or np.ptp(x) == 0:
        return 0.0, float(y.mean())
    slope, intercept = np.polyfit(x, y, 1)
    if slope < 0:
        return 0.0, float(y.mean())
    if intercept < 0:
        return float(np.dot(x, y) / np.dot(x, x)), 0.0
    return float(slope), float(intercept)


def step_seconds(costs: pd.DataFrame, step: str, context: np.ndarray) -> np.ndarray:
    """Predicted seconds of steps of one kind at these context lengths (costs of one run)."""
    row = costs[costs["step"] == step]
    if row.empty:
        return np.full(len(context), math.nan)
    row = row.iloc[0]
    return row["intercept_ms"] / 1e3 + row["slope_ms_per_1k_context"] / 1e6 * context


def predict_request(costs: pd.DataFrame, prompt_tokens: int, ttft_s: float, draft_tokens: np.ndarray,
                    emitted: np.ndarray, budget: int, speculative: bool) -> float:
    """Latency of one request at ``budget`` from its step sequence (step 0 is the prefill)."""
    produced = np.cumsum(emitted)
    count = int(min(np.searchsorted(produced, budget) + 1, len(emitted)))
    context = prompt_tokens + produced[:count - 1].astype(float)
    drafts = draft_tokens[1:count]
    if not speculative:
        seconds = step_seconds(costs, "plain", context)
    else:
        seconds = np.where(drafts > 0, step_seconds(costs, "draft", context), step_seconds(costs, "no-draft", context))
    return ttft_s + float(seconds.sum())


def validate(steps: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Predicted vs measured mean latency per run and budget.

    Costs are fitted on every other request and the other half is predicted from its own step
    sequence (all requests when a run has fewer than four).
    """
    out = []
    measured = steps[steps["kind"] == "measured"]
    for run_name, run_steps in measured.groupby("run_name"):
        requests = sorted(run_steps["request_id"].unique())
        held_out = requests[1::2] if len(requests) >= 4 else requests
        fit_on = [r for r in requests if r not in held_out] or requests
        costs = fit_step_costs(steps[(steps["run_name"] == run_name) & (steps["request_id"].isin(fit_on)
                                                                          | (steps["kind"] == "probe"))])
        speculative = (run_steps["step"].isin(["draft", "no-draft"])).any()
        run_results = results[results["run_name"] == run_name]
        for budget, at_budget in run_results.groupby("budget_tokens"):
            predicted, actual = [], []
            for request_id in held_out:
                chunks = run_steps[run_steps["request_id"] == request_id].sort_values("chunk")
                row = at_budget[at_budget["request_id"] == request_id]
                if chunks.empty or row.empty:
                    continue
                predicted.append(predict_request(
                    costs, int(chunks["context_tokens"].iloc[0]), float(chunks["seconds"].iloc[0]),
                    chunks["draft_tokens"].to_numpy(), chunks["emitted"].to_numpy(), int(budget), speculative))
                actual.append(float(row["e2e_latency_s"].iloc[0]))
            if actual:
                error = np.mean(predicted) / np.mean(actual) - 1.0
                out.append({"run_name": run_name, "budget_tokens": int(budget), "requests": len(actual),
                            "measured_mean_e2e_s": np.mean(actual), "predicted_mean_e2e_s": np.mean(predicted),
                            "error": error, "within_tolerance": abs(error) <= TOLERANCE})
    return pd.DataFrame(out)


def predict_traces(costs: pd.DataFrame, ttft_s: float, replay_steps: list[dict], budgets: list[int],
                   speculative: bool) -> pd.DataFrame:
    """Predicted latency of every replayed real trace (``replay_sets.load_replay_steps``) at every
    budget, one row each (shaped like results.csv rows, so intervals.py can bootstrap them):
    greedy decoding emits one token per step; n-gram follows the replayed drafts and acceptance."""
    rows = []
    for trace in replay_steps:
        drafts, emitted = np.asarray(trace["draft_tokens"]), np.asarray(trace["emitted"])
        if not speculative:
            emitted = np.ones(int(emitted.sum()), int)
            drafts = np.zeros(len(emitted), int)
        for budget in budgets:
            rows.append({"problem_id": trace["problem_id"], "sample_index": 0, "budget_tokens": budget,
                         "output_tokens": min(budget, trace["output_tokens"]),
                         "e2e_latency_s": predict_request(costs, trace["prompt_tokens"], ttft_s, drafts, emitted,
                                                          budget, speculative)})
    return pd.DataFrame(rows)


def summarise_predictions(per_trace: pd.DataFrame) -> pd.DataFrame:
    """Mean predicted latency and ms per token per model, trace set, method and budget."""
    if per_trace.empty:
        return per_trace
    keys = ["model", "trace_set", "method", "budget_tokens"]
    summary = per_trace.groupby(keys).agg(predicted_mean_e2e_s=("e2e_latency_s", "mean"),
                                          mean_output_tokens=("output_tokens", "mean"),
                                          total_s=("e2e_latency_s", "sum"), tokens=("output_tokens", "sum")).reset_index()
    summary["predicted_ms_per_token"] = summary.pop("total_s") / summary.pop("tokens") * 1e3
    return summary


def checked_step_files(study: str) -> list[Path]:
    """The study's steps.csv files that match the checksums their runs recorded; one that does not
    is left out and said so (one changed byte can move a fitted step cost twofold)."""

    files = []
    for path in sorted(study_dir(study).glob("*/steps.csv")):
        try:
            files.append(RunFolder(path.parent).checked("steps.csv"))
        except CorruptResultError as error:
            print(f"!! excluded {error}")
    return files


def study_predictions(study: str, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """04_analysis: fitted step costs, their validation, and latency at real-trace acceptance.

    For each model with a baseline run and an n-gram run at TP=1 and a replay of its own trace set
    in the study, greedy and n-gram latency at every trace budget are predicted from the replayed
    steps (no-draft steps included) and the fitted costs. Returns (costs, validation, per-trace
    predictions); ``summarise_predictions`` gives the table.
    """

    files = checked_step_files(study)
    if not files or rows.empty:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    steps = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    steps = steps[steps["run_name"].isin(rows["run_name"].unique())]
    costs = fit_step_costs(steps)
    runs = rows.drop_duplicates("run_name").set_index("run_name")
    costs = costs.join(runs[["model", "method", "tensor_parallel_size"]], on="run_name")
    validation = validate(steps, rows).join(runs[["model", "method"]], on="run_name")
    replays, predictions = load_replays(study), []
    for model, model_costs in costs[costs["tensor_parallel_size"] == 1].groupby("model"):
        base = model_costs[model_costs["method"] == "baseline"]
        spec = model_costs[model_costs["method"].str.startswith("ngram-spec")]
        base, spec = (frame[frame["run_name"] == frame["run_name"].iloc[-1]] if not frame.empty else frame
                      for frame in (base, spec))  # one run each: the most recent by name order
        own = replays[replays["model"] == model] if not replays.empty else replays
        if base.empty or spec.empty or own.empty or not {"draft", "no-draft"} <= set(spec["step"]):
            continue
        ttft = float(rows[(rows["model"] == model) & (rows["method"] == "baseline")]["ttft_s"].mean())
        for replay_name in own["replay"].unique():
            trace_steps = load_replay_steps(study, replay_name)
            budgets = sorted(own[own["replay"] == replay_name]["budget_tokens"].unique())
            for label, model_run, speculative in (("baseline", base, False), (spec["method"].iloc[0], spec, True)):
                frame = predict_traces(model_run, ttft, trace_steps, budgets, speculative)
                frame.insert(0, "method", label)
                frame.insert(0, "trace_set", own[own["replay"] == replay_name]["trace_set"].iloc[0])
                frame.insert(0, "model", model)
                predictions.append(frame)
    return costs, validation, pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame()


def break_even(costs: pd.DataFrame, replays: pd.DataFrame) -> pd.DataFrame:
    """How good a drafter must be: per model and speculative method at TP=1, the mean tokens per
    verified step at which speculation equals plain decoding (verify-step ms / plain-step ms), and
    where the replayed real traces of n-gram fall (tokens per step, no-draft steps priced).

    Mean step costs (over the contexts measured) stand for each kind. Used by 04_analysis.
    """
    if costs.empty:
        return pd.DataFrame()
    tp1 = costs[costs["tensor_parallel_size"] == 1]
    out = []
    for model, frame in tp1.groupby("model"):
        plain = frame[(frame["method"] == "baseline") & (frame["step"] == "plain")]["mean_ms"]
        if plain.empty:
            continue
        for method, spec in frame[frame["method"] != "baseline"].groupby("method"):
            draft = spec[spec["step"] == "draft"]["mean_ms"]
            if draft.empty:
                continue
            nodraft = spec[spec["step"] == "no-draft"]["mean_ms"]
            row = {"model": model, "method": method, "plain_step_ms": plain.iloc[-1], "draft_step_ms": draft.iloc[-1],
                   "no_draft_step_ms": nodraft.iloc[-1] if not nodraft.empty else math.nan}
            row["break_even_tokens_per_step"] = row["draft_step_ms"] / row["plain_step_ms"]
            own = replays[replays["model"] == model] if not replays.empty else replays
            if method.startswith("ngram") and not own.empty:
                last = own[own["budget_tokens"] == own["budget_tokens"].max()].iloc[0]
                share = last["no_draft_step_fraction"]
                step_ms = (1 - share) * row["draft_step_ms"] + share * row["no_draft_step_ms"]
                row.update(real_trace_set=last["trace_set"], real_tokens_per_step=last["tokens_per_step"],
                           real_no_draft_fraction=share, real_ms_per_token=step_ms / last["tokens_per_step"])
            out.append(row)
    return pd.DataFrame(out)
