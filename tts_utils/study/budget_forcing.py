"""Budget forcing (``budget_mode: force``): at each budget, end the thinking and let the model answer.

Under ``cut`` (the default) a budget takes the first L tokens of the one-pass output and grades
them. Under ``force`` the kit also continues each output the budget cut: the continuation's
prompt is, in token ids, the problem's prompt + the first L generated tokens + the model's
end-of-thinking marker and a final-answer cue (``FORCING_SUFFIX``), and the model writes at most
``force_answer_tokens`` more tokens (greedy, as the run). Cut prefix + suffix + forced answer is
graded (``forced_*`` columns); the budget's own tokens and timings stay as they were, and the
forced answer's tokens and seconds are counted apart (``forced_tokens``, ``forced_latency_s``),
which is what forcing costs on top of the budget. With prefix caching off (the study measures
cold prompts) a continuation recomputes its whole prompt, so ``forced_latency_s`` is the price of a
separate request, an upper bound on forcing inside one request.

* A request that stopped on its own within L tokens is not forced (its answer is there).
* A request whose reasoning already ended within L tokens (the budget cut its answer) is continued
  without a suffix: the model finishes the answer it had started.

s1 (simplescaling/s1) forces with the end-of-thinking marker and "Final Answer:"; the cue here ends
in an opened ``\\boxed{`` so the answer lands where the graders look. Used by sweep.py (01-03 runs
with ``budget_mode: force``) and 04_analysis (``forcing_table``).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from tts_utils.engine.model_source import load_tokenizer
from tts_utils.engine.runner import RequestSpec, run_requests
from tts_utils.models import ModelSpec
from tts_utils.store import append_record
from tts_utils.study.budgets import record_for_budget, view_at_budget

# End-of-thinking marker -> what follows it when the kit forces an answer.
FORCING_SUFFIX = {
    "</think>": "</think>\n\n**Final Answer**\n\\boxed{",  # R1-Distill (and the tiny model)
    "<|im_start|>answer": "<|im_start|>answer\nFinal Answer: \\boxed{",  # s1.1
}
FORCED_FILE = "forced.jsonl"
FORCED_COLUMNS = ("forced", "forced_tokens", "forced_latency_s", "forced_strict_correct",
                  "forced_lenient_correct", "forced_reasoning_finished", "forced_answer")


def forcing_suffix(model: ModelSpec) -> str:
    """The text appended at the budget: the model's end-of-thinking marker and the answer cue."""
    return FORCING_SUFFIX.get(model.reasoning_end, model.reasoning_end + "\n\nFinal Answer: \\boxed{")


def forced_request_id(request_id: str, budget: int) -> str:
    return f"{request_id}#force{budget}"


def continuation(prompt_ids: list[int], record: dict, budget: int, model: ModelSpec, tokenizer) -> list[int] | None:
    """Token ids of the forced continuation's prompt at ``budget``, or None when nothing is forced
    (the request stopped on its own within the budget)."""
    view = view_at_budget(record, budget)
    if not view.hit_budget or view.finish_reason != "length":
        return None
    cut = list(record["token_ids"][:view.output_tokens])
    text = tokenizer.decode(cut, skip_special_tokens=False)
    suffix = "" if model.reasoning_end in text else forcing_suffix(model)
    suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    return list(prompt_ids) + cut + list(suffix_ids)


def forced_specs(records: list[dict], budgets: tuple[int, ...], prompts: dict[str, list[int]], model: ModelSpec,
                 tokenizer, answer_tokens: int, done: set[str]) -> list[RequestSpec]:
    """Continuation requests not yet on disk: one per record and budget that the budget cut, from
    the record that covers that budget (the long run in one-pass mode)."""

    by_sample: dict[tuple[str, int], list[dict]] = {}
    for record in records:
        by_sample.setdefault((record["problem_id"], record["sample_index"]), []).append(record)
    specs = []
    for (problem_id, sample), group in sorted(by_sample.items()):
        for budget in budgets:
            try:
                record = record_for_budget(group, budget)
            except ValueError:
                continue
            request_id = forced_request_id(record["request_id"], budget)
            if request_id in done:
                continue
            ids = continuation(prompts[problem_id], record, budget, model, tokenizer)
            if ids is not None:
                specs.append(RequestSpec(request_id, problem_id, sample, ids, answer_tokens))
    return specs


def forced_record(record, spec: RequestSpec, budget: int, problem_prompt_tokens: int) -> dict:
    """What forced.jsonl keeps of one continuation: the streamed record, the ids the kit sent, the
    ids the engine reports it received, and where the generated part of the prompt starts."""
    entry = record.to_dict()
    entry.update(budget_tokens=budget, sent_prompt_token_ids=list(spec.prompt),
                 engine_prompt_token_ids=record.prompt_token_ids, problem_prompt_tokens=problem_prompt_tokens)
    return entry


def run_forcing(client, base_url: str, plan, records: list[dict], target, done: set[str],
                on_request: Callable[[], None] | None = None) -> int:
    """Send the continuations not yet in ``target`` (forced.jsonl) at the run's concurrency and
    sampling; returns how many ran. ``plan`` is a plan.RunPlan with ``force_answer_tokens`` > 0."""

    tokenizer = load_tokenizer(plan.source)
    prompts = plan.prompts_by_problem()
    specs = forced_specs(records, plan.budgets, prompts, plan.model, tokenizer, plan.force_answer_tokens, done)
    by_id = {spec.request_id: spec for spec in specs}

    def keep(record) -> None:
        spec = by_id[record.request_id]
        budget = int(spec.request_id.rpartition("#force")[2])
        append_record(target, forced_record(record, spec, budget, len(prompts[spec.problem_id])))
        if on_request is not None:
            on_request()

    return run_requests(client, base_url, plan.model.key, specs, plan.sampling, plan.concurrency, on_record=keep)


def forced_columns(row_budget: int, record: dict, forced: dict | None, tokenizer, model: ModelSpec,
                   grade: Callable[[str], object] | None) -> dict:
    """The ``forced_*`` columns of one results row. Not forced: the cut output stands, 0 tokens."""
    view = view_at_budget(record, row_budget)
    if forced is None:
        text = tokenizer.decode(record["token_ids"][:view.output_tokens], skip_special_tokens=False)
        tokens, seconds = 0, 0.0
    else:
        text = tokenizer.decode(forced["sent_prompt_token_ids"][forced["problem_prompt_tokens"]:] + forced["token_ids"],
                                skip_special_tokens=False)
        tokens, seconds = forced["completion_tokens"], forced["e2e_latency_s"]
    columns = {"forced": forced is not None, "forced_tokens": tokens, "forced_latency_s": seconds}
    if grade is None:
        columns.update(forced_strict_correct=float("nan"), forced_lenient_correct=float("nan"),
                       forced_reasoning_finished=float("nan"), forced_answer=None)
    else:
        result = grade(text)
        columns.update(forced_strict_correct=result.strict_correct, forced_lenient_correct=result.lenient_correct,
                       forced_reasoning_finished=result.reasoning_finished, forced_answer=result.strict_answer)
    return columns


def summary_columns(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys`` group: accuracy under forcing, share of requests forced, and what forcing cost
    (mean answer tokens and seconds per request, and as a share of the budget's own)."""
    grouped = rows.groupby(keys, dropna=False)
    table = pd.DataFrame({
        "accuracy_strict_forced": grouped["forced_strict_correct"].mean(),
        "accuracy_lenient_forced": grouped["forced_lenient_correct"].mean(),
        "forced_share": grouped["forced"].mean(),
        "mean_forced_tokens": grouped["forced_tokens"].mean(),
        "mean_forced_latency_s": grouped["forced_latency_s"].mean(),
        "forced_extra_tokens_pct": grouped["forced_tokens"].sum() / grouped["output_tokens"].sum() * 100.0,
        "forced_extra_latency_pct": grouped["forced_latency_s"].sum() / grouped["e2e_latency_s"].sum() * 100.0,
    })
    return table.reset_index()


def forcing_table(summary: pd.DataFrame) -> pd.DataFrame:
    """04_analysis: accuracy by budget under cut and under force, and forcing's extra tokens and
    time, for every run that forced (empty when none did)."""
    if "accuracy_strict_forced" not in summary.columns:
        return pd.DataFrame()
    forced = summary[summary["accuracy_strict_forced"].notna() | summary["mean_forced_tokens"].notna()]
    columns = ["model", "method", "tensor_parallel_size", "budget_tokens", "accuracy_strict", "accuracy_strict_forced",
               "accuracy_lenient", "accuracy_lenient_forced", "forced_share", "mean_output_tokens",
               "mean_forced_tokens", "mean_forced_latency_s", "forced_extra_tokens_pct", "forced_extra_latency_pct"]
    return forced[[c for c in columns if c in forced.columns]].sort_values(
        ["model", "method", "tensor_parallel_size", "budget_tokens"]).reset_index(drop=True)
