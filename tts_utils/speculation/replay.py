"""Replay n-gram speculation on real outputs: the drafts vLLM would propose, and what greedy
verification of the same output would accept, step by step.

The drafts come from the installed vLLM's own n-gram proposer (``NgramProposer``'s matching
function), called on every prefix, so the replay follows whatever engine version the kit runs.
Verification is greedy: a draft token is accepted while it equals the trace's next token; each
step then emits the accepted tokens plus one. Step 0 is the prefill step (one token, no draft),
as in the engine. One pass over a trace gives every budget (the one-pass rule): budget L takes
the steps up to the one that produced the L-th token; that step's acceptance is read from the
trace's continuation, as the engine counts it. What replay cannot tell: timing, and acceptance
under sampled verification (a sampled trace is replayed as if it were the greedy output).

Used by 03_spec (replays before the runs, rates for synthetic acceptance), stepcost.py (which step
had a draft), 04_analysis (through the files written here) and ``python -m tts_utils replay``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from tts_utils.cli import OneLineParser, check_output_file, run
from tts_utils.config import MAX_SPEC_TOKENS
from tts_utils.datasets import DATASETS
from tts_utils.engine.model_source import ModelSource, load_tokenizer, resolve
from tts_utils.errors import ConfigError
from tts_utils.grading import GradeItem, Grader
from tts_utils.models import MODELS, get_model
from tts_utils.speculation.traces import EOS_CONVENTION, TraceSet, load_trace_set


@dataclass(frozen=True)
class NgramSettings:
    """n-gram speculation settings (the engine's ``--speculative-config`` fields)."""

    num_speculative_tokens: int = 5
    prompt_lookup_min: int = 1
    prompt_lookup_max: int = 4

    def label(self) -> str:
        return f"k={self.num_speculative_tokens} look-up {self.prompt_lookup_min}..{self.prompt_lookup_max}"

    def check(self) -> None:
        if self.num_speculative_tokens <= 0 or self.prompt_lookup_min <= 0:
            raise ConfigError("spec_tokens and spec_lookup_min must be positive integers")
        if self.num_speculative_tokens > MAX_SPEC_TOKENS:
            raise ConfigError(f"spec_tokens must be 1..{MAX_SPEC_TOKENS} (as in studies), got {self.num_speculative_tokens}")
        if self.prompt_lookup_min > self.prompt_lookup_max:
            raise ConfigError("spec_lookup_min must not exceed spec_lookup_max")


@lru_cache(maxsize=1)
def engine_ngram_matcher():
    """vLLM's own n-gram matching function (what ``NgramProposer`` calls for each request)."""
    # On the CPU build vLLM warns at import that Triton has no CPU backend, before its own logging
    # is set up (so the warning lands raw on stderr, in every report); it says nothing about replay.
    logging.getLogger("vllm.triton_utils.importing").setLevel(logging.ERROR)
    try:
        from vllm.v1.spec_decode.ngram_proposer import _find_longest_matched_ngram_and_propose_tokens
    except ImportError as error:
        raise ConfigError(f"this vLLM has no n-gram proposer the replay can call ({error}); "
                          "replay needs vLLM >= 0.10 (v1 engine)") from None
    return _find_longest_matched_ngram_and_propose_tokens


@dataclass(frozen=True)
class TraceSteps:
    """The replayed steps of one trace: per step, draft length, accepted drafts, tokens emitted.

    ``emitted`` of the last step counts every token the step produced, also past the trace end,
    so budgets are cut by ``steps_for_budget``.
    """

    draft_tokens: np.ndarray
    accepted: np.ndarray
    emitted: np.ndarray

    @property
    def produced(self) -> np.ndarray:
        return np.cumsum(self.emitted, dtype=np.int64)


def replay_steps(prompt_ids: tuple[int, ...] | list[int], output_ids: tuple[int, ...] | list[int],
                 settings: NgramSettings, max_model_len: int | None = None) -> TraceSteps:
    """Replay one output under n-gram speculation and greedy verification."""
    match = engine_ngram_matcher()
    tokens = np.asarray(list(prompt_ids) + list(output_ids), dtype=np.int32)
    prompt, total = len(prompt_ids), len(output_ids)
    limit = max_model_len or len(tokens) + settings.num_speculative_tokens + 1
    drafts, accepted, emitted = [0], [0], [1]  # the prefill step emits the first token
    produced = 1
    while produced < total:
        context = tokens[:prompt + produced]
        draft = match(context, settings.prompt_lookup_min, settings.prompt_lookup_max, limit,
                      settings.num_speculative_tokens)
        continuation = tokens[prompt + produced:prompt + produced + len(draft)]
        agree = draft[:len(continuation)] == continuation
        count = int(len(agree) if agree.all() else agree.argmin())
        drafts.append(len(draft))
        accepted.append(count)
        emitted.append(count + 1)
        produced += count + 1
    # int8: at most 17 per step, so a trace's steps take 3 bytes each, not 24.
    return TraceSteps(np.array(drafts, np.int8), np.array(accepted, np.int8), np.array(emitted, np.int8))


def steps_for_budget(steps: TraceSteps, budget: int) -> int:
    """How many steps (prefill included) produce the first ``budget`` tokens."""
    return int(min(np.searchsorted(steps.produced, budget) + 1, len(steps.emitted)))


def step_stats(steps: TraceSteps, budget: int, settings: NgramSettings) -> dict:
    """Totals of one trace at one budget (decode steps only: the prefill step has no draft)."""
    count = steps_for_budget(steps, budget)
    drafts = steps.draft_tokens[1:count].astype(np.int64)
    accepted = steps.accepted[1:count].astype(np.int64)
    output_tokens = int(min(steps.produced[count - 1], budget))
    row = {
        "budget_tokens": budget, "output_tokens": output_tokens, "decode_steps": len(drafts),
        "drafts": int((drafts > 0).sum()), "draft_tokens": int(drafts.sum()),
        "accepted_tokens": int(accepted.sum()), "no_draft_steps": int((drafts == 0).sum()),
    }
    for position in range(settings.num_speculative_tokens):
        row[f"accepted_pos_{position}"] = int((accepted > position).sum())
    return row


def aggregate(rows: pd.DataFrame, settings: NgramSettings) -> dict:
    """Pooled speculation figures over traces (ratios of totals, as vLLM's counters give them)."""
    steps, drafts = rows["decode_steps"].sum(), rows["drafts"].sum()
    draft_tokens, accepted = rows["draft_tokens"].sum(), rows["accepted_tokens"].sum()
    result = {
        "traces": len(rows),
        "tokens_per_step": (rows["output_tokens"] - 1).clip(lower=0).sum() / steps if steps else math.nan,
        "acceptance_rate": accepted / draft_tokens if draft_tokens else math.nan,
        "mean_acceptance_length": 1 + accepted / drafts if drafts else math.nan,
        "no_draft_step_fraction": rows["no_draft_steps"].sum() / steps if steps else math.nan,
        "mean_draft_tokens": draft_tokens / drafts if drafts else math.nan,
    }
    result["acceptance_per_position"] = [
        float(rows[f"accepted_pos_{i}"].sum() / drafts) if drafts else math.nan
        for i in range(settings.num_speculative_tokens)
    ]
    return result


def replay_trace_set(trace_set: TraceSet, settings: NgramSettings, budgets: list[int],
                     on_steps=None) -> tuple[pd.DataFrame, list[TraceSteps]]:
    """Per trace x budget rows of speculation figures, and each trace's replayed steps (or, with
    ``on_steps(trace, steps)``, each trace's steps handed over and not kept: memory stays bounded by
    one trace)."""
    settings.check()
    rows, all_steps = [], []
    for trace in trace_set.traces:
        steps = replay_steps(trace.prompt_ids, trace.output_ids, settings)
        if on_steps is None:
            all_steps.append(steps)
        else:
            on_steps(trace, steps)
        for budget in budgets:
            rows.append({"problem_id": trace.problem_id, "sample_index": trace.sample_index,
                         **step_stats(steps, budget, settings)})
    return pd.DataFrame(rows), all_steps


def grade_at_budgets(trace_set: TraceSet, tokenizer, budgets: list[int], reasoning_end: str,
                     timeout_s: float = 10.0) -> pd.DataFrame:
    """Each trace cut at each budget and graded (strict and lenient); identical cuts graded once."""

    rows = []
    with Grader(timeout_s) as grader:
        for trace in trace_set.traces:
            graded: dict[int, object] = {}
            for budget in budgets:
                cut = min(budget, len(trace.output_ids))
                if cut not in graded:
                    text = tokenizer.decode(list(trace.output_ids[:cut]), skip_special_tokens=False)
                    graded[cut] = grader.grade(GradeItem(text, trace.gold, reasoning_end))
                grade = graded[cut]
                rows.append({"problem_id": trace.problem_id, "sample_index": trace.sample_index, "budget_tokens": budget,
                             "strict_correct": grade.strict_correct, "lenient_correct": grade.lenient_correct,
                             "reasoning_finished": grade.reasoning_finished, "grade_status": grade.status})
    return pd.DataFrame(rows)


# One trace at one budget: the key of every replayed row (a problem may have several samples).
TRACE_KEYS = ["problem_id", "sample_index", "budget_tokens"]


@dataclass(frozen=True)
class ReplayResult:
    """Everything one replay produced: per trace x budget rows, per budget summary, steps."""

    identity: dict
    rows: pd.DataFrame
    summary: pd.DataFrame
    steps: list[TraceSteps]


def summarise_replay(rows: pd.DataFrame, settings: NgramSettings) -> pd.DataFrame:
    """One row per budget: accuracy (when graded) and the pooled speculation figures."""
    out = []
    for budget, group in rows.groupby("budget_tokens", sort=True):
        figures = aggregate(group, settings)
        per_position = figures.pop("acceptance_per_position")
        row = {"budget_tokens": int(budget), **figures,
               **{f"acceptance_pos_{i}": rate for i, rate in enumerate(per_position)},
               "mean_output_tokens": group["output_tokens"].mean()}
        if "strict_correct" in group:
            row.update(accuracy_strict=group["strict_correct"].mean(), accuracy_lenient=group["lenient_correct"].mean(),
                       reasoning_finished=int(group["reasoning_finished"].sum()))
        out.append(row)
    return pd.DataFrame(out)


def replay(trace_set: TraceSet, settings: NgramSettings, budgets: list[int], tokenizer=None,
           reasoning_end: str | None = None, grade_timeout_s: float = 10.0, on_steps=None) -> ReplayResult:
    """Replay speculation (and grade, when a tokenizer and reasoning marker are given) at every budget.
    ``on_steps``: see ``replay_trace_set`` (the result's ``steps`` is then empty)."""
    budgets = sorted(set(budgets))
    rows, steps = replay_trace_set(trace_set, settings, budgets, on_steps)
    if tokenizer is not None and reasoning_end is not None:
        grades = grade_at_budgets(trace_set, tokenizer, budgets, reasoning_end, grade_timeout_s)
        rows = rows.merge(grades, on=TRACE_KEYS, how="left", validate="one_to_one")
    identity = {"trace_set": trace_set.source, "trace_fingerprint": trace_set.fingerprint,
                "model": trace_set.model, "sampling": trace_set.sampling, "settings": asdict(settings),
                "budgets": budgets, "traces": len(trace_set.traces), "notes": list(trace_set.notes)}
    return ReplayResult(identity, rows, summarise_replay(rows, settings), steps)


def summary_json(result: ReplayResult) -> dict:
    """The CLI's JSON: per budget the issue's keys, plus identity and per-position acceptance."""
    keys = ["budget_tokens", "accuracy_strict", "accuracy_lenient", "tokens_per_step", "acceptance_rate",
            "no_draft_step_fraction", "mean_acceptance_length", "reasoning_finished", "traces"]
    budgets = []
    for row in result.summary.to_dict("records"):
        entry = {key: row.get(key) for key in keys if key in row}
        entry["acceptance_per_position"] = [row[k] for k in sorted(row) if k.startswith("acceptance_pos_")]
        budgets.append(entry)
    return {"identity": result.identity, "budgets": budgets}






















def main(argv: list[str] | None = None) -> int:
    """``python -m tts_utils replay TRACE_FILE --model 1.5b``: replay speculation and grade by budget."""
    parser = OneLineParser(prog="python -m tts_utils replay", description=main.__doc__)
    parser.add_argument("trace_file", help="a JSON Lines trace file (.jsonl or .jsonl.gz) or one of the kit's run folders")
    parser.add_argument("--model", required=True, help="registry key of the model that wrote the traces")
    parser.add_argument("--budgets", default="1024,2048,4096,8192,16384", help="comma-separated output budgets")
    parser.add_argument("--spec-tokens", type=int, default=5, help=f"draft tokens per step, 1..{MAX_SPEC_TOKENS}")
    parser.add_argument("--lookup-min", type=int, default=1)
    parser.add_argument("--lookup-max", type=int, default=4)
    parser.add_argument("--tokenizer", default=None, help="local tokenizer folder (default: the model's hub id)")
    parser.add_argument("--dataset", default="auto", help=f"problems and gold answers: {', '.join(DATASETS)} (the "
                        "hub), a .jsonl/.parquet file of MATH500's fields, NAME:PATH, builtin or auto (MATH500)")
    parser.add_argument("--no-grade", action="store_true", help="speculation figures only")
    parser.add_argument("--grade-timeout-s", type=float, default=10.0,
                        help="per-output grading limit; a slower output counts as ungradable (a loaded machine may need more)")
    parser.add_argument("--json", default=None, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    return run(lambda: _replay_command(args))


def _replay_command(args) -> None:
    """The replay CLI's work for ``main``; a ConfigError for bad input (cli.run makes it one line)."""
    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) <= 0:
        raise ConfigError(f"--budgets must be comma-separated positive integers, got {args.budgets!r}")
    if args.model not in MODELS:
        raise ConfigError(f"unknown model {args.model!r}; known: {', '.join(MODELS)}")
    if args.json:
        check_output_file(args.json, "--json")  # before the replay, which can take minutes
    model = get_model(args.model)
    source = resolve(model, "auto")
    if args.tokenizer:
        source = ModelSource(source.engine_path, args.tokenizer, source.identity, source.max_context)
    settings = NgramSettings(args.spec_tokens, args.lookup_min, args.lookup_max)
    settings.check()
    if not args.grade_timeout_s > 0:
        raise ConfigError(f"--grade-timeout-s must be positive, got {args.grade_timeout_s}")
    trace_set = load_trace_set(args.trace_file, model, source, args.dataset)
    for note in (*trace_set.notes, trace_set.prompt_note):
        if note:
            print(f"!! {trace_set.name}: {note}", file=sys.stderr)
    tokenizer = None if args.no_grade else load_tokenizer(source)
    result = replay(trace_set, settings, budgets, tokenizer, model.reasoning_end, args.grade_timeout_s,
                    on_steps=lambda *_: None)
    columns = [c for c in ("budget_tokens", "accuracy_strict", "accuracy_lenient", "reasoning_finished",
                           "mean_output_tokens", "tokens_per_step", "acceptance_rate", "mean_acceptance_length",
                           "no_draft_step_fraction") if c in result.summary]
    print(f"{len(trace_set.traces)} traces of {model.key} from {trace_set.source}; n-gram "
          f"{settings.label()}")
    if tokenizer is not None:
        print(f"gold answers: {trace_set.gold_source}")
    print(f"token counts: {EOS_CONVENTION}")
    print(result.summary[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json:
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            with open(args.json, "w", encoding="utf-8") as out:
                json.dump(_cli_json(result, trace_set, graded=tokenizer is not None), out, indent=2, default=float)
                out.write("\n")
        except OSError as error:
            raise ConfigError(f"--json {args.json}: cannot write ({error.strerror or error})") from None


def _cli_json(result: ReplayResult, trace_set: TraceSet, graded: bool) -> dict:
    """``summary_json`` with what the text output also states: the gold graded against, the prompt
    check, the token-count convention and each budget's mean output tokens."""
    payload = summary_json(result)
    payload["identity"] = {**payload["identity"], "gold_source": trace_set.gold_source if graded else None,
                           "prompt_note": trace_set.prompt_note, "eos_convention": EOS_CONVENTION}
    for entry, mean in zip(payload["budgets"], result.summary["mean_output_tokens"]):
        entry["mean_output_tokens"] = mean
    return payload


if __name__ == "__main__":
    raise SystemExit(main())
