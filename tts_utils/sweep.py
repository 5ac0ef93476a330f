"""Plan and run the sweeps of 01_greedy, 02_tp and 03_spec; resume instead of starting over.

``plan_runs`` turns a ``StudyConfig`` into one ``RunPlan`` per (model, method, TP size), checking
everything that can be checked before an engine starts (models, data, TP sizes, prompt + largest
budget within the context). ``run_sweep`` executes the plans under the study lock: a complete run
is skipped, a partial one runs only its missing requests, a failed one leaves ``failure.json`` and
the sweep goes on; at the end, failures raise ``SweepError`` naming them.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from tts_utils import provenance
from tts_utils.budgets import record_for_budget, view_at_budget
from tts_utils.config import ConfigError, StudyConfig
from tts_utils.data import ProblemSet, load_problems
from tts_utils.energy import ENERGY_KEYS, EnergyMeter, used_gpu_indices
from tts_utils.engine import EngineConfig, EngineStartError, SpeculativeConfig, VLLMServer, check_memory
from tts_utils.grading import GradeItem, Grader
from tts_utils.hardware import detect
from tts_utils.metrics import (
    cost_per_token,
    engine_timings,
    speculation_stats,
    summarise,
    time_per_output_token,
)
from tts_utils.model_source import ModelSource, load_model_config, load_tokenizer, resolve
from tts_utils.models import ModelSpec, get_model
from tts_utils.paths import study_dir
from tts_utils.progress import progress
from tts_utils.runner import (
    RequestSpec,
    SamplingConfig,
    counter_delta,
    make_client,
    read_counters,
    run_requests,
    stream_one,
)
from tts_utils.store import (
    RunFolder,
    append_record,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    read_records,
    study_lock,
)

NOTEBOOK_METHODS = {"01_greedy": "baseline", "02_tp": "baseline", "03_spec": "ngram-spec"}
# System-only n-gram runs also time steps that find no draft: sampling at temperature 1 on random
# weights leaves n-gram look-up nothing to match. These probe requests are kept apart (probe.jsonl).
PROBE_REQUESTS = 2
PROBE_MAX_TOKENS = 1024
# Extra context beyond prompt + budget (the engine counts a few tokens more in some versions).
CONTEXT_MARGIN_TOKENS = 16
WARMUP_TOKENS = 16


class SweepError(RuntimeError):
    """One or more runs of a sweep failed; finished runs are kept."""


@dataclass(frozen=True)
class RunPlan:
    """One engine configuration over one problem set, at every budget."""

    study: str
    model: ModelSpec
    source: ModelSource
    method: str
    engine: EngineConfig
    sampling: SamplingConfig
    budgets: tuple[int, ...]
    problems: ProblemSet
    prompt_tokens: tuple[int, ...]
    samples_per_problem: int
    concurrency: int
    system_only: bool
    grade_timeout_s: float
    startup_timeout_s: int
    acceptance: str = "engine"

    @property
    def probe_requests(self) -> int:
        """No-draft probe requests: system-only n-gram runs only."""
        return PROBE_REQUESTS if self.system_only and self.engine.speculative is not None else 0

    @property
    def tensor_parallel_size(self) -> int:
        return self.engine.tensor_parallel_size

    def identity(self) -> dict:
        """Everything that makes two runs comparable; its hash names the run folder."""
        engine = asdict(self.engine)
        engine.pop("model_path")
        engine.pop("served_name")
        return {
            "model": self.model.key, "model_identity": self.source.identity, "method": self.method,
            "tensor_parallel_size": self.tensor_parallel_size, "engine": engine,
            "sampling": asdict(self.sampling), "budgets": list(self.budgets),
            "problem_source": self.problems.source, "problem_fingerprint": self.problems.fingerprint,
            "num_problems": len(self.problems.problems), "samples_per_problem": self.samples_per_problem,
            "concurrency": self.concurrency, "system_only": self.system_only,
            **({"acceptance": self.acceptance} if self.acceptance != "engine" else {}),
        }

    @property
    def run_name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.model.key}-{self.method}-tp{self.tensor_parallel_size}-{digest}"

    def folder(self) -> RunFolder:
        return RunFolder(study_dir(self.study) / self.run_name)

    def probe_specs(self) -> list[RequestSpec]:
        """The no-draft probe: the first problems at temperature 1 (seeded), see ``PROBE_REQUESTS``."""
        length = min(max(self.budgets), PROBE_MAX_TOKENS)
        return [RequestSpec(f"probe-{p.unique_id}#b{length}", p.unique_id, 0, self.model.prompt(p.problem), length)
                for p in self.problems.problems[:self.probe_requests]]

    def request_specs(self, budget_mode: str) -> list[RequestSpec]:
        """One request per problem and sample at the largest budget (one-pass), or one per budget."""
        lengths = [max(self.budgets)] if budget_mode == "one-pass" else sorted(set(self.budgets))
        specs = []
        for problem in self.problems.problems:
            for sample in range(self.samples_per_problem):
                for max_tokens in lengths:
                    specs.append(RequestSpec(f"{problem.unique_id}#s{sample}#b{max_tokens}",
                                             problem.unique_id, sample, self.model.prompt(problem.problem),
                                             max_tokens))
        return specs


def plan_runs(config: StudyConfig, notebook: str) -> tuple[list[RunPlan], list[str]]:
    """The runs a notebook will make, and the reasons for anything skipped. Raises ConfigError."""
    if notebook not in NOTEBOOK_METHODS:
        raise ConfigError(f"unknown sweep notebook {notebook!r}; expected one of {', '.join(NOTEBOOK_METHODS)}")
    tp_sizes, skipped = config.usable_tp_sizes() if notebook == "02_tp" else ([1], [])
    problems = load_problems(config.dataset, config.num_problems, config.seed)
    spec_settings = (config.spec_tokens, config.spec_lookup_min, config.spec_lookup_max)
    sampling = SamplingConfig(config.temperature, config.top_p, config.seed, ignore_eos=config.system_only)
    plans = []
    for key in config.model_keys:
        model = get_model(key)
        speculative, acceptance, method = None, "engine", NOTEBOOK_METHODS[notebook]
        if notebook == "03_spec":
            rates, acceptance = acceptance_for(config, key)
            if rates is not None and detect().accelerator == "cpu":
                raise ConfigError("synthetic acceptance (spec_acceptance) needs a GPU engine: vLLM's CPU sampler "
                                  "does not support synthetic rejection sampling")
            speculative = SpeculativeConfig(*spec_settings, synthetic_acceptance_rates=rates,
                                            method=config.spec_method, draft_model_path=drafter_path(config))
            method = spec_method_label(config.spec_method, rates is not None)
        source = resolve(model, config.load_format)
        tokenizer = load_tokenizer(source)
        model_config = load_model_config(source)
        prompt_tokens = tuple(len(tokenizer(model.prompt(p.problem), add_special_tokens=False)["input_ids"])
                              for p in problems.problems)
        needed = max(prompt_tokens) + config.max_budget + CONTEXT_MARGIN_TOKENS
        max_model_len = config.max_model_len or needed
        if max_model_len < needed:
            raise ConfigError(f"max_model_len {max_model_len} < longest prompt ({max(prompt_tokens)} tokens) "
                              f"+ largest budget ({config.max_budget}) for model {key}")
        if source.max_context is not None and max_model_len > source.max_context:
            raise ConfigError(f"prompt + largest budget need {max_model_len} tokens but {key} has a "
                              f"{source.max_context}-token context")
        for size in tp_sizes:
            engine = EngineConfig(
                model_path=source.engine_path, served_name=key, tensor_parallel_size=size,
                dtype=config.dtype, max_model_len=max_model_len, speculative=speculative,
                load_format="auto" if model.hf_id is None else config.load_format, seed=config.seed,
                trust_remote_code=config.trust_remote_code,
                gpu_memory_utilization=config.gpu_memory_utilization,
                cpu_kv_cache_gib=config.cpu_kv_cache_gib, extra_args=config.extra_engine_args,
            )
            try:
                check_memory(engine, model_config, model.params_billion)
            except EngineStartError as error:
                raise ConfigError(f"{key} at TP={size}: {error}") from None
            plans.append(RunPlan(
                config.study, model, source, method, engine, sampling,
                tuple(sorted(set(config.budgets))), problems, prompt_tokens, config.samples_per_problem,
                config.concurrency, config.system_only, config.grade_timeout_s,
                config.startup_timeout_s, acceptance,
            ))
    return plans, skipped


def spec_method_label(spec_method: str, synthetic: bool) -> str:
    """The ``method`` of a 03_spec run: ``ngram-spec``, ``draft-model-spec``, ... (+ ``-synthetic``)."""
    return f"{spec_method.replace('_', '-')}-spec" + ("-synthetic" if synthetic else "")


def drafter_path(config: StudyConfig) -> str | None:
    """What the engine loads as drafter (``spec_method`` draft_model or eagle3), checked before launch.

    draft_model: the registry key resolved like a target (random weights in system-only mode);
    eagle3: the head's hub id or folder (a local folder with config.json in system-only mode);
    suffix: needs the arctic-inference package. n-gram needs nothing.
    """
    if config.spec_method == "draft_model":
        return resolve(get_model(config.draft_model), config.load_format).engine_path
    if config.spec_method == "eagle3":
        folder = Path(config.draft_model).expanduser()
        if config.system_only and not (folder / "config.json").exists():
            raise ConfigError("system-only EAGLE-3 needs draft_model to be a local folder holding the head's "
                              f"config.json (random weights are filled in); got {config.draft_model!r}")
        return str(folder.resolve()) if folder.exists() else config.draft_model
    if config.spec_method == "suffix":
        import importlib.util

        if importlib.util.find_spec("arctic_inference") is None:
            raise ConfigError("spec_method suffix needs the arctic-inference package (vLLM's suffix decoding); "
                              "it is not installed in this Python")
    return None


def acceptance_for(config: StudyConfig, model_key: str) -> tuple[tuple[float, ...] | None, str]:
    """Synthetic acceptance rates for a model's n-gram run, and where they came from.

    ``engine``: none (the engine's own verification). ``replay``: the per-position acceptance of
    this model's trace sets at the largest trace budget, replayed by 03_spec before its runs.
    Otherwise the rates given in ``spec_acceptance``.
    """
    if config.spec_acceptance == "engine":
        return None, "engine"
    if config.spec_acceptance == "replay":
        from tts_utils.replay import replayed_rates

        rates, source = replayed_rates(config.study, model_key, config.spec_tokens, config.spec_lookup_min,
                                       config.spec_lookup_max)
        return rates, f"synthetic: replay of {source}"
    rates, label = config.given_acceptance_rates()
    return rates, f"synthetic: {label}"


def _warm_up(client, server: VLLMServer, plan: RunPlan) -> None:
    """One short request before measuring, kept out of the results."""
    first = plan.problems.problems[0]
    stream_one(client, server.base_url, plan.model.key,
               RequestSpec("warmup", first.unique_id, 0, plan.model.prompt(first.problem), WARMUP_TOKENS),
               plan.sampling)


def verify_one_pass(client, server: VLLMServer, plan: RunPlan, records: list[dict], problems: int = 2) -> dict:
    """Re-run a few problems at the smallest budget and compare with the long run's prefix."""
    budget = min(plan.budgets)
    long_runs = {r["problem_id"]: r for r in records if r["sample_index"] == 0}
    mismatches, checked = [], []
    for problem in plan.problems.problems[:problems]:
        long_run = long_runs.get(problem.unique_id)
        if long_run is None:
            continue
        short = stream_one(client, server.base_url, plan.model.key,
                           RequestSpec(f"check-{problem.unique_id}", problem.unique_id, 0,
                                       plan.model.prompt(problem.problem), budget), plan.sampling)
        checked.append(problem.unique_id)
        if short.token_ids != long_run["token_ids"][:budget]:
            mismatches.append(problem.unique_id)
    return {"budget_tokens": budget, "checked": checked, "mismatches": mismatches,
            "consistent": not mismatches}


def _measure(client, server: VLLMServer, plan: RunPlan, target: Path, specs: list[RequestSpec],
             sampling: SamplingConfig | None = None) -> dict:
    """Run requests, appending each finished record to ``target``; returns the /metrics counter
    deltas and the GPU energy of the run (per request too, at concurrency 1)."""
    per_request = plan.concurrency == 1

    def keep(record, meter: EnergyMeter) -> None:
        entry = record.to_dict()
        entry["energy_j"] = meter.mark() if per_request else None
        append_record(target, entry)

    before = read_counters(client, server.base_url)
    with EnergyMeter(used_gpu_indices(plan.tensor_parallel_size) if detect().accelerator == "gpu" else ()) as meter:
        with progress(len(specs), plan.run_name) as advance:
            run_requests(client, server.base_url, plan.model.key, specs, sampling or plan.sampling,
                         plan.concurrency, on_record=lambda record: keep(record, meter), progress=advance)
    counters = counter_delta(before, read_counters(client, server.base_url))
    return {**counters, **meter.reading.to_counters()}


def _engine_session(plan: RunPlan, folder: RunFolder, budget_mode: str | None) -> str:
    """Start an engine, run what is missing (and the one-pass check), record the session."""
    records = read_records(folder.requests_file, repair=True)
    done = {r["request_id"] for r in records}
    missing = [s for s in plan.request_specs(budget_mode or "one-pass") if s.request_id not in done]
    needs_check = budget_mode is None and len(plan.budgets) > 1
    needs_probe = len(read_records(folder.probe_file)) < plan.probe_requests
    if not missing and not needs_check and not needs_probe:
        return budget_mode or "one-pass"
    folder.set_status("running", budget_mode=budget_mode, done=len(done))
    session = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "provenance": provenance.collect()}
    server = VLLMServer(plan.engine, folder.engine_log, startup_timeout_s=plan.startup_timeout_s)
    # The client is entered first so that it closes last: on an interrupt the engine stops first,
    # which ends any stream in flight, instead of the client waiting on that stream.
    with make_client(server.headers) as client, server:
        session["engine_startup_s"] = server.startup_s
        session["engine_version"] = client.get(f"{server.base_url}/version").json().get("version")
        _warm_up(client, server, plan)
        deltas = [_measure(client, server, plan, folder.requests_file, missing)] if missing else []
        if needs_check:
            check = verify_one_pass(client, server, plan, read_records(folder.requests_file))
            budget_mode = "one-pass" if check["consistent"] else "separate"
            folder.set_status("running", budget_mode=budget_mode, one_pass_check=check)
            if budget_mode == "separate":
                print(f"!! {plan.run_name}: runs at max_tokens={check['budget_tokens']} differ from the long "
                      f"run's prefix ({len(check['mismatches'])} of {len(check['checked'])} checked); "
                      "falling back to a separate run per budget for this configuration.")
                done = {r["request_id"] for r in read_records(folder.requests_file)}
                extra = [s for s in plan.request_specs("separate") if s.request_id not in done]
                deltas.append(_measure(client, server, plan, folder.requests_file, extra))
        probed = {r["request_id"] for r in read_records(folder.probe_file)}
        probes = [s for s in plan.probe_specs() if s.request_id not in probed]
        if probes:
            session["probe"] = _measure(client, server, plan, folder.probe_file, probes,
                                        replace(plan.sampling, temperature=1.0, top_p=1.0))
        session["requests_run"] = len(missing)
        session["energy"] = [{k: d.get(k) for k in ENERGY_KEYS} for d in deltas]
        session["counters"] = {k: sum(d.get(k, 0.0) for d in deltas) for d in deltas for k in d
                               if k.startswith("vllm:")}
    append_record(folder.segments_file, session)
    return budget_mode or "one-pass"


def _rows(plan: RunPlan, records: list[dict], hardware_label: str, engine_version: str | None) -> pd.DataFrame:
    """Per request x budget rows: timings at that budget, the text cut there, its grades."""
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
                rows.append(row)
    return pd.DataFrame(rows)


def step_table(plan: RunPlan, records: list[dict], probes: list[dict]) -> pd.DataFrame:
    """One row per engine step of every request (measured and probe): context length, draft
    length, tokens and seconds; the input of the step-cost model (stepcost.py)."""
    from tts_utils.stepcost import classify_chunks

    tokenizer = load_tokenizer(plan.source)
    prompts = {p.unique_id: tokenizer(plan.model.prompt(p.problem), add_special_tokens=False)["input_ids"]
               for p in plan.problems.problems}
    speculative = plan.engine.speculative
    greedy = plan.sampling.temperature == 0
    frames = [classify_chunks(record, prompts[record["problem_id"]], speculative, kind, greedy and kind == "measured")
              for kind, group in (("measured", records), ("probe", probes)) for record in group]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    frame.insert(0, "run_name", plan.run_name)
    return frame


def finalize(plan: RunPlan, folder: RunFolder, budget_mode: str) -> None:
    """Derive, grade and summarise a run whose requests are all on disk; mark it complete."""
    records = read_records(folder.requests_file)
    segments = folder.segments()
    hardware = detect()
    label = hardware.describe().split(";")[0]
    engine_version = segments[-1].get("engine_version") if segments else None
    rows = _rows(plan, records, label, engine_version)
    summary = summarise(rows, ["study", "run_name", "model", "method", "acceptance", "tensor_parallel_size",
                               "system_only", "hardware", "budget_tokens"])
    counters: dict[str, float] = defaultdict(float)
    for segment in segments:
        for name, value in segment.get("counters", {}).items():
            counters[name] += value
    for name, value in {**speculation_stats(counters), **engine_timings(counters)}.items():
        summary[name] = value
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
    summary["engine_version"] = engine_version
    summary["engine_startup_s"] = segments[-1].get("engine_startup_s") if segments else None
    if plan.system_only:
        summary[["accuracy_strict", "accuracy_lenient"]] = float("nan")
    atomic_write_text(folder.results_file, rows.to_csv(index=False))
    atomic_write_text(folder.steps_file, step_table(plan, records, read_records(folder.probe_file)).to_csv(index=False))
    atomic_write_text(folder.summary_file, summary.to_csv(index=False))
    folder.set_status("complete", budget_mode=budget_mode, done=len(records),
                      sha256={"results.csv": file_sha256(folder.results_file),
                              "summary.csv": file_sha256(folder.summary_file)})


def execute(plan: RunPlan) -> str:
    """Run one plan to completion, resuming what is on disk. Returns what happened."""
    folder = plan.folder()
    if folder.is_complete():
        return "skipped (complete)"
    folder.path.mkdir(parents=True, exist_ok=True)
    if not folder.run_file.exists():
        atomic_write_json(folder.run_file, {"identity": plan.identity(), "run_name": plan.run_name,
                                            "created_by": provenance.collect()})
    status = folder.status()
    budget_mode = _engine_session(plan, folder, status.get("budget_mode"))
    finalize(plan, folder, budget_mode)
    folder.failure_file.unlink(missing_ok=True)
    return "resumed and completed" if status.get("state") in {"running", "incomplete"} else "completed"


def _record_failure(plan: RunPlan, error: BaseException) -> None:
    folder = plan.folder()
    folder.path.mkdir(parents=True, exist_ok=True)
    done = len(read_records(folder.requests_file)) if folder.requests_file.exists() else 0
    folder.set_status("incomplete", done=done, error=f"{type(error).__name__}: {error}".splitlines()[0])
    tail = folder.engine_log.read_text(errors="replace").splitlines()[-60:] if folder.engine_log.exists() else []
    atomic_write_json(folder.failure_file, {"error": str(error), "type": type(error).__name__,
                                            "traceback": traceback.format_exc(), "engine_log_tail": tail,
                                            "requests_on_disk": done})


def run_sweep(config: StudyConfig, notebook: str) -> pd.DataFrame:
    """Plan and run a notebook's sweep; returns one row per run (name, outcome, seconds)."""
    plans, skipped = plan_runs(config, notebook)
    for reason in skipped:
        print(f"-- skipped: {reason}")
    if config.dry_run:
        from tts_utils.estimate import estimate_plans

        print("dry run: nothing is started.")
        return estimate_plans(plans, detect().accelerator)
    outcomes, failures = [], []
    with study_lock(config.study):
        for plan in plans:
            started = time.monotonic()
            try:
                outcome = execute(plan)
            except KeyboardInterrupt as interrupt:
                _record_failure(plan, interrupt)
                raise
            except Exception as error:
                _record_failure(plan, error)
                failures.append(f"{plan.run_name}: {str(error).splitlines()[0]}")
                outcome = "failed (see failure.json)"
            outcomes.append({"run_name": plan.run_name, "outcome": outcome,
                             "seconds": round(time.monotonic() - started, 1)})
            print(f"{plan.run_name}: {outcome}")
    if failures:
        raise SweepError(f"{len(failures)} of {len(plans)} runs failed: " + "; ".join(failures))
    return pd.DataFrame(outcomes)


def main(argv: list[str] | None = None) -> int:
    """``python -m tts_utils.sweep 01_greedy [--profile P] [--set k=v]``: a sweep without Jupyter."""
    import argparse
    import sys

    from tts_utils.pipeline import parse_overrides, resolve_parameters

    parser = argparse.ArgumentParser(prog="python -m tts_utils.sweep", description=main.__doc__)
    parser.add_argument("notebook", choices=sorted(NOTEBOOK_METHODS))
    parser.add_argument("--profile", default="auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        _, config = resolve_parameters(args.profile, parse_overrides(args.overrides))
        print(run_sweep(config, args.notebook).to_string(index=False))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
