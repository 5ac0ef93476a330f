"""A run's result files from its records: per request and budget (``results.csv``, graded), per
engine step (``steps.csv``), rows predicted for unmeasured problems, and ``summary.csv``; sealed with
checksums by ``finalize``. Used by sweep.execute and session.prediction_check (01-03).
"""

from __future__ import annotations

import math
from collections import defaultdict

import pandas as pd

from tts_utils.engine.model_source import load_tokenizer
from tts_utils.grading import GradeItem, Grader
from tts_utils.hardware import Hardware, detect
from tts_utils.speculation.stepcost import classify_chunks, fit_step_costs, known_steps, predict_request, validate
from tts_utils.store import (
    RunFolder,
    atomic_write_text,
    checksums,
    read_json,
    read_records,
)
from tts_utils.study import budget_forcing
from tts_utils.study.budgets import record_for_budget, view_at_budget
from tts_utils.study.metrics import (
    cost_per_token,
    engine_timings,
    speculation_stats,
    summarise,
    time_per_output_token,
)
from tts_utils.study.plan import BATCHED_METHOD, RunPlan


def _rows(plan: RunPlan, records: list[dict], hardware_label: str, engine_version: str | None,
          forced: dict[str, dict] | None = None) -> pd.DataFrame:
    """Per request x budget rows: timings at that budget, the text cut there, its grades (and,
    under budget forcing, the forced answer's tokens, seconds and grades)."""
    tokenizer = load_tokenizer(plan.source)
    by_sample: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for record in records:
        by_sample[(record["problem_id"], record["sample_index"])].append(record)
    gold = {p.unique_id: p.answer for p in plan.problems.problems}
    rows = []
    with Grader(plan.grade_timeout_s) as grader:
        for (problem_id, sample), sample_records in sorted(by_sample.items()):
            for budget in plan.budgets:
                record = record_for_budget(sample_records, budget)
                view = view_at_budget(record, budget)
                row = {
                    "study": plan.study, "run_name": plan.run_name, "model": plan.model.key,
                    "method": plan.method, "acceptance": plan.acceptance,
                    "tensor_parallel_size": plan.tensor_parallel_size,
                    "num_gpus": plan.tensor_parallel_size, "system_only": plan.system_only,
                    "weights": plan.weights,
                    "hardware": hardware_label, "engine_version": engine_version,
                    "request_id": record["request_id"], "problem_id": problem_id, "sample_index": sample,
                    "budget_tokens": budget, "prompt_tokens": record["prompt_tokens"],
                    "output_tokens": view.output_tokens, "hit_budget": view.hit_budget,
                    "finish_reason": view.finish_reason, "e2e_latency_s": view.e2e_latency_s,
                    "ttft_s": view.ttft_s,
                    "tpot_s": time_per_output_token(view.e2e_latency_s, view.ttft_s, view.output_tokens),
                    "tokens_per_s": view.output_tokens / view.e2e_latency_s if view.e2e_latency_s else float("nan"),
                    "cost_gpu_s_per_token": cost_per_token(plan.tensor_parallel_size, view.e2e_latency_s,
                                                           view.output_tokens),
                    # Energy is measured per request over its whole (one-pass) run, so only the
                    # row that covers the whole request has it.
                    "energy_j": (record.get("energy_j") if view.output_tokens == record["completion_tokens"]
                                 and record.get("energy_j") is not None else float("nan")),
                }
                if plan.system_only:
                    row.update(strict_correct=float("nan"), lenient_correct=float("nan"),
                               reasoning_finished=float("nan"), strict_answer=None,
                               grade_status="not graded")
                else:
                    text = tokenizer.decode(record["token_ids"][:view.output_tokens], skip_special_tokens=False)
                    grade = grader.grade(GradeItem(text, gold[problem_id], plan.model.reasoning_end))
                    row.update(strict_correct=grade.strict_correct, lenient_correct=grade.lenient_correct,
                               reasoning_finished=grade.reasoning_finished, strict_answer=grade.strict_answer,
                               grade_status=grade.status)
                if forced is not None:
                    row.update(budget_forcing.forced_columns(
                        budget, record, forced.get(budget_forcing.forced_request_id(record["request_id"], budget)),
                        tokenizer, plan.model, None if plan.system_only else
                        lambda text, gold_answer=gold[problem_id]: grader.grade(
                            GradeItem(text, gold_answer, plan.model.reasoning_end))))
                rows.append(row)
    return pd.DataFrame(rows)


def step_table(plan: RunPlan, records: list[dict], probes: list[dict]) -> pd.DataFrame:
    """One row per engine step of every request (measured and probe): context length, draft
    length, tokens and seconds; the input of the step-cost model (stepcost.py)."""

    prompts = plan.prompts_by_problem()
    speculative = plan.engine.speculative
    greedy = plan.sampling.temperature == 0
    frames = [classify_chunks(record, prompts[record["problem_id"]], speculative, kind, greedy and kind == "measured")
              for kind, group in (("measured", records), ("probe", probes)) for record in group]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    frame.insert(0, "run_name", plan.run_name)
    return frame


# What a predicted row takes from the batched pass: the tokens' facts and their grades.
TOKEN_COLUMNS = ("prompt_tokens", "output_tokens", "hit_budget", "finish_reason", "strict_correct",
                 "lenient_correct", "reasoning_finished", "strict_answer", "grade_status",
                 *(c for c in budget_forcing.FORCED_COLUMNS if c != "forced_latency_s"))


def predicted_rows(plan: RunPlan, folder: RunFolder, measured: pd.DataFrame) -> pd.DataFrame:
    """Rows for the problems outside the latency subset: tokens and grades from the batched pass,
    latency from this run's step-cost model (fitted on all its measured requests) applied to the
    batched tokens' steps (one token a step, or n-gram steps by replay). Empty when this run's
    acceptance is sampled or synthetic, where tokens do not determine the steps."""

    batched = batched_run(plan)
    if batched is None:
        return pd.DataFrame()
    prompts = plan.prompts_by_problem()
    costs = fit_step_costs(step_table(plan, read_records(folder.requests_file), read_records(folder.probe_file)))
    ttft = float(measured["ttft_s"].mean())
    grades = pd.read_csv(batched.results_file).set_index(["problem_id", "sample_index", "budget_tokens"])
    problems = {p.unique_id: p for p in plan.problems.problems}
    greedy = plan.sampling.temperature == 0
    rows = []
    for record in read_records(batched.requests_file):
        if record["problem_id"] in plan.latency_subset or record["problem_id"] not in problems:
            continue
        prompt_ids = prompts[record["problem_id"]]
        steps = known_steps(record, prompt_ids, plan.engine.speculative, greedy)
        if steps is None:
            return pd.DataFrame()
        for budget in plan.budgets:
            graded = grades.loc[(record["problem_id"], record["sample_index"], budget)]
            e2e = predict_request(costs, len(prompt_ids), ttft, steps.draft_tokens, steps.emitted, budget,
                                  plan.engine.speculative is not None)
            tokens = int(graded["output_tokens"])
            tokens_and_grades = {key: graded[key] for key in TOKEN_COLUMNS if key in graded}
            rows.append({**measured.iloc[0].to_dict(), **tokens_and_grades,
                         "problem_id": record["problem_id"], "sample_index": record["sample_index"],
                         "budget_tokens": budget, "request_id": f"predicted:{record['request_id']}",
                         "e2e_latency_s": e2e, "ttft_s": ttft, "tpot_s": time_per_output_token(e2e, ttft, tokens),
                         "tokens_per_s": tokens / e2e if e2e else float("nan"),
                         "cost_gpu_s_per_token": cost_per_token(plan.tensor_parallel_size, e2e, tokens),
                         "energy_j": float("nan"), "latency_source": "predicted",
                         # a batched continuation's time is no latency-mode time
                         **({"forced_latency_s": float("nan")} if "forced_latency_s" in measured else {})})
    return pd.DataFrame(rows)[list(measured.columns)] if rows else pd.DataFrame()


def run_hardware(folder: RunFolder) -> Hardware:
    """The machine a run measured on, as its ``run.json`` recorded it (this machine when it did not),
    so that results derived again elsewhere keep the run's hardware."""
    try:
        return Hardware.from_record(read_json(folder.run_file)["created_by"]["hardware"])
    except (FileNotFoundError, KeyError, TypeError):
        return detect()


def finalize(plan: RunPlan, folder: RunFolder, budget_mode: str) -> None:
    """Derive, grade and summarise a run whose requests are all on disk; mark it complete."""
    records = read_records(folder.requests_file)
    segments = folder.segments()
    label = run_hardware(folder).describe().split(";")[0]
    engine_version = next((s["engine_version"] for s in reversed(segments) if s.get("engine_version")), None)
    forced = None
    if plan.force_answer_tokens:
        forced = {r["request_id"]: r for r in read_records(folder.path / budget_forcing.FORCED_FILE)}
    rows = _rows(plan, records, label, engine_version, forced)
    rows["latency_source"] = "measured"
    every_problem, scope = latency_scope(plan, folder)
    if not every_problem:
        predicted = predicted_rows(plan, folder, rows)
        if predicted.empty:
            scope = f"{len(plan.latency_subset)} problems measured; no step model for this acceptance, none predicted"
        rows = pd.concat([rows, predicted], ignore_index=True)
    keys = ["study", "run_name", "model", "method", "acceptance", "tensor_parallel_size", "system_only", "weights",
            "hardware", "budget_tokens"]
    summary = summarise(rows, keys)
    if forced is not None:  # accuracy under forcing beside the cut's, and what forcing cost
        summary = summary.merge(budget_forcing.summary_columns(rows, keys), on=keys, how="left")
        summary["budget_rule"] = "force"
    counters: dict[str, float] = defaultdict(float)
    for segment in segments:
        for name, value in segment.get("counters", {}).items():
            counters[name] += value
    # A session interrupted mid-measurement leaves finished requests whose engine counters were
    # never read (older kits did not even record such a session): pooled counters would then
    # under-count, e.g. a run with drafts would report none. Older segments count what they ran.
    counted = sum(s.get("requests_counted", s.get("requests_run") or 0) for s in segments)
    for name, value in {**speculation_stats(counters), **engine_timings(counters)}.items():
        summary[name] = value if counted >= len(records) else math.nan
    summary["engine_counters_missing_reason"] = None if counted >= len(records) else (
        f"engine counters cover {counted} of {len(records)} requests: a session was interrupted before "
        "it read them")
    energy = [e for segment in segments for e in segment.get("energy", [])]
    reasons = {e.get("energy_missing_reason") for e in energy if e.get("energy_j") is None}
    summary["energy_missing_reason"] = "; ".join(sorted(r for r in reasons if r)) or None
    # The measured requests all ran at the largest budget (one-pass), so compare there: how much
    # longer the kit saw each request than the engine did (HTTP, streaming, client parsing).
    at_max = summary["budget_tokens"] == max(plan.budgets)
    summary["harness_overhead_pct"] = float("nan")
    if budget_mode == "one-pass":
        summary.loc[at_max, "harness_overhead_pct"] = (
            summary.loc[at_max, "mean_e2e_latency_s"] / summary.loc[at_max, "engine_mean_e2e_latency_s"] - 1.0
        ) * 100.0
    summary["budget_mode"] = budget_mode
    summary["latency_scope"] = scope
    measured_share = rows.groupby("budget_tokens")["latency_source"].apply(lambda s: (s == "measured").mean())
    summary["measured_fraction"] = summary["budget_tokens"].map(measured_share)
    summary["engine_version"] = engine_version
    summary["engine_startup_s"] = next((s["engine_startup_s"] for s in reversed(segments)
                                        if s.get("engine_startup_s")), None)
    if plan.system_only:
        summary[["accuracy_strict", "accuracy_lenient"]] = float("nan")
    atomic_write_text(folder.results_file, rows.to_csv(index=False))
    if not plan.batched:  # a batched pass's chunks interleave many requests: no step costs there
        atomic_write_text(folder.steps_file,
                          step_table(plan, records, read_records(folder.probe_file)).to_csv(index=False))
    atomic_write_text(folder.summary_file, summary.to_csv(index=False))
    # Every file that feeds a number, checksummed: a later edit is found on read (store.RunFolder.mismatches).
    folder.set_status("complete", budget_mode=budget_mode, done=len(records), sha256=checksums(folder.path))


def batched_run(plan: RunPlan) -> RunFolder | None:
    """The complete batched accuracy pass of this plan's model, problems and sampling, if any."""
    for run_file in sorted(plan.folder().path.parent.glob(f"{plan.model.key}-{BATCHED_METHOD}-*/run.json")):
        folder = RunFolder(run_file.parent)
        identity = read_json(run_file).get("identity", {})
        if folder.is_complete() and identity.get("problem_fingerprint") == plan.problems.fingerprint and \
                identity.get("samples_per_problem") == plan.samples_per_problem and \
                identity.get("sampling") == plan.sampling.identity() and \
                max(identity.get("budgets", [0])) >= max(plan.budgets):
            return folder
    return None


def latency_scope(plan: RunPlan, folder: RunFolder) -> tuple[bool, str]:
    """Whether a subset plan must measure every problem, and why (or why not)."""
    if not plan.latency_subset:
        return True, "every problem measured"
    status = folder.status()
    if status.get("latency_scope", "").startswith("every problem"):
        return True, status["latency_scope"]
    batched = batched_run(plan)
    if batched is None:
        return True, "every problem measured: no complete batched pass of this model to predict from"
    check = batched.status().get("batch_check", {})
    if not check.get("consistent"):
        return True, "every problem measured: the batched pass's tokens differ from batch-1 tokens"
    return False, f"{len(plan.latency_subset)} problems measured, the others predicted"


def prediction_check(plan: RunPlan, folder: RunFolder) -> dict:
    """Step-cost model fitted on half of the measured subset, checked on the other half, per budget."""

    records = read_records(folder.requests_file)
    steps = step_table(plan, records, read_records(folder.probe_file))
    latencies = pd.DataFrame([{"run_name": plan.run_name, "request_id": r["request_id"], "budget_tokens": budget,
                               "e2e_latency_s": view_at_budget(r, budget).e2e_latency_s}
                              for r in records for budget in plan.budgets])
    table = validate(steps, latencies)
    worst = float(table["error"].loc[table["error"].abs().idxmax()]) if not table.empty else math.nan
    return {"tolerance": plan.prediction_tolerance, "worst_error": worst,
            "passed": bool(abs(worst) <= plan.prediction_tolerance),
            "per_budget": table[["budget_tokens", "requests", "error"]].to_dict("records") if not table.empty else []}
