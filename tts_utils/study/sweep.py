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
import math
import time
import traceback
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from tts_utils import provenance
from tts_utils.config import ConfigError, StudyConfig
from tts_utils.data import ProblemSet, load_problems
from tts_utils.engine import vllm_compat
from tts_utils.engine.energy import ENERGY_KEYS, EnergyMeter, used_gpu_indices
from tts_utils.engine.model_source import ModelSource, eagle3_head, load_model_config, load_tokenizer, resolve
from tts_utils.engine.runner import (
    RequestSpec,
    SamplingConfig,
    counter_delta,
    make_client,
    read_counters,
    run_requests,
    stream_one,
)
from tts_utils.engine.server import EngineConfig, EngineStartError, SpeculativeConfig, VLLMServer, check_memory
from tts_utils.grading import GradeItem, Grader
from tts_utils.hardware import detect
from tts_utils.models import ModelSpec, get_model
from tts_utils.paths import study_dir
from tts_utils.progress import progress
from tts_utils.store import (
    CorruptResultError,
    RunFolder,
    StudyLockedError,
    append_record,
    atomic_write_json,
    atomic_write_text,
    checksums,
    read_json,
    read_records,
    study_lock,
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
from tts_utils.study.preflight import check_inputs

NOTEBOOK_METHODS = {"01_greedy": "baseline", "02_tp": "baseline", "03_spec": "ngram-spec"}
# The batched accuracy pass (batch_concurrency > 0): all problems at once, batch-invariant kernels.
BATCHED_METHOD = "baseline-batched"
# Problems re-run at concurrency 1 in the batched pass's engine to check its tokens are batch-1 tokens.
BATCH_CHECK_PROBLEMS = 3
# System-only n-gram runs also time steps that find no draft. Random-weight greedy output loops (a
# draft at nearly every step); a presence penalty stops the repeats, so n-gram look-up finds nothing
# to match while decoding stays greedy, as in the paper (README: what a step costs, and why). These
# probe requests are kept apart (probe.jsonl). Runs probed before 2026-12 sampled at temperature 1.
PROBE_PRESENCE_PENALTY = 2.0
PROBE_REQUESTS = 2
PROBE_MAX_TOKENS = 1024
# Extra context beyond prompt + budget (the engine counts a few tokens more in some versions).
CONTEXT_MARGIN_TOKENS = 16
# Room for budget forcing's end-of-thinking marker and answer cue (under 20 tokens for every model).
FORCING_CUE_TOKENS = 32
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
    # Problem ids measured at concurrency 1 when latency is measured on a subset (latency_problems);
    # the others are predicted from the step-cost model unless the prediction check fails.
    latency_subset: tuple[str, ...] = ()
    prediction_tolerance: float = 0.15
    # budget_mode force: answer tokens after the forced end of thinking (budget_forcing.py); 0 is cut.
    force_answer_tokens: int = 0

    @property
    def batched(self) -> bool:
        """The batched accuracy pass (01_greedy with batch_concurrency > 0)."""
        return self.method == BATCHED_METHOD

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
        # Fields added later are left out at their defaults, which keeps older runs' names.
        if not engine["env"]:
            engine.pop("env")
        if not engine["cudagraph_mode"]:
            engine.pop("cudagraph_mode")
        if engine["speculative"] is not None and not engine["speculative"]["heterogeneous_vocab"]:
            engine["speculative"].pop("heterogeneous_vocab")
        if engine["speculative"] is not None and engine["speculative"]["draft_model_path"]:
            # A local drafter by its folder name (content-named when the kit built it), so that a
            # moved checkout or cache still resumes; hub ids stay whole.
            drafter = engine["speculative"]["draft_model_path"]
            engine["speculative"]["draft_model_path"] = Path(drafter).name if Path(drafter).is_dir() else drafter
        return {
            "model": self.model.key, "model_identity": self.source.identity, "method": self.method,
            "tensor_parallel_size": self.tensor_parallel_size, "engine": engine,
            "sampling": self.sampling.identity(), "budgets": list(self.budgets),
            "problem_source": self.problems.source, "problem_fingerprint": self.problems.fingerprint,
            "num_problems": len(self.problems.problems), "samples_per_problem": self.samples_per_problem,
            "concurrency": self.concurrency, "system_only": self.system_only,
            **({"acceptance": self.acceptance} if self.acceptance != "engine" else {}),
            **({"latency_problems": len(self.latency_subset)} if self.latency_subset else {}),
            # Only when forcing: cut runs keep the names they had before budget_mode existed.
            **({"budget_mode": "force", "force_answer_tokens": self.force_answer_tokens}
               if self.force_answer_tokens else {}),
        }

    @property
    def run_name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.model.key}-{self.method}-tp{self.tensor_parallel_size}-{digest}"

    def folder(self) -> RunFolder:
        return RunFolder(study_dir(self.study) / self.run_name)

    def probe_specs(self) -> list[RequestSpec]:
        """The no-draft probe: the first problems, greedy with ``PROBE_PRESENCE_PENALTY``."""
        # The first probe runs to the largest budget: 04 prices real traces with no-draft steps only
        # at contexts measured (modelled.py never extrapolates), so one request reaches them all.
        lengths = [max(self.budgets)] + [min(max(self.budgets), PROBE_MAX_TOKENS)] * (self.probe_requests - 1)
        return [RequestSpec(f"probe-{p.unique_id}#b{length}", p.unique_id, 0, self.model.prompt(p.problem), length)
                for p, length in zip(self.problems.problems[:self.probe_requests], lengths)]

    def request_specs(self, budget_mode: str, every_problem: bool = True) -> list[RequestSpec]:
        """One request per problem and sample at the largest budget (one-pass), or one per budget;
        only the latency subset's problems unless ``every_problem``."""
        lengths = [max(self.budgets)] if budget_mode == "one-pass" else sorted(set(self.budgets))
        specs = []
        for problem in self.problems.problems:
            if not every_problem and self.latency_subset and problem.unique_id not in self.latency_subset:
                continue
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
    if config.cudagraph_mode and detect().accelerator == "cpu":
        raise ConfigError(f"cudagraph_mode {config.cudagraph_mode} needs a GPU engine: the CPU engine captures "
                          "no CUDA graphs; leave cudagraph_mode empty here")
    problems = load_problems(config.dataset, config.num_problems, config.seed)
    subset = latency_subset(problems, config)
    spec_settings = (config.spec_tokens, config.spec_lookup_min, config.spec_lookup_max)
    sampling = SamplingConfig(config.temperature, config.top_p, config.seed, ignore_eos=config.system_only)
    plans = []
    for key in config.model_keys:
        model = get_model(key)
        speculative, acceptance, method = None, "engine", NOTEBOOK_METHODS[notebook]
        source = resolve(model, config.load_format, config.local_model_dirs)
        if notebook == "03_spec":
            rates, acceptance = acceptance_for(config, key)
            if rates is not None and detect().accelerator == "cpu":
                raise ConfigError("synthetic acceptance (spec_acceptance) needs a GPU engine: vLLM's CPU sampler "
                                  "does not support synthetic rejection sampling")
            speculative = SpeculativeConfig(*spec_settings, synthetic_acceptance_rates=rates,
                                            method=config.spec_method, draft_model_path=drafter_path(config, source))
            method = spec_method_label(config.spec_method, rates is not None)
        tokenizer = load_tokenizer(source)
        model_config = load_model_config(source)
        if speculative is not None and speculative.method == "draft_model":
            speculative = with_vocabulary_check(speculative, config, key, model_config)
        prompt_tokens = tuple(len(tokenizer(model.prompt(p.problem), add_special_tokens=False)["input_ids"])
                              for p in problems.problems)
        needed = max(prompt_tokens) + config.max_budget + CONTEXT_MARGIN_TOKENS
        if config.budget_mode == "force":  # the continuation: + marker and cue + answer tokens
            needed += FORCING_CUE_TOKENS + config.force_answer_tokens
        max_model_len = config.max_model_len or needed
        if max_model_len < needed:
            raise ConfigError(f"max_model_len {max_model_len} < longest prompt ({max(prompt_tokens)} tokens) "
                              f"+ largest budget ({config.max_budget}) for model {key}")
        if source.max_context is not None and max_model_len > source.max_context:
            raise ConfigError(f"prompt + largest budget need {max_model_len} tokens but {key} has a "
                              f"{source.max_context}-token context")
        if notebook == "01_greedy" and config.batch_concurrency:
            tp_sizes_here = [BATCHED_METHOD, *tp_sizes]
        else:
            tp_sizes_here = list(tp_sizes)
        for size in tp_sizes_here:
            batched = size == BATCHED_METHOD
            size = 1 if batched else size
            engine = EngineConfig(
                model_path=source.engine_path, served_name=key, tensor_parallel_size=size,
                dtype=config.dtype, max_model_len=max_model_len, speculative=speculative,
                load_format=config.load_format, seed=config.seed,
                trust_remote_code=config.trust_remote_code,
                gpu_memory_utilization=config.gpu_memory_utilization,
                cpu_kv_cache_gib=config.cpu_kv_cache_gib, extra_args=config.extra_engine_args,
                cudagraph_mode=config.cudagraph_mode,
                # vLLM's batch-invariant kernels are Triton (GPU); the CPU build crashes on its first
                # request with them, so there the live check alone decides.
                env=(("VLLM_BATCH_INVARIANT", "1"),) if batched and detect().accelerator == "gpu" else (),
            )
            try:
                check_memory(engine, model_config, model.params_billion)
            except EngineStartError as error:
                raise ConfigError(f"{key} at TP={size}: {error}") from None
            plans.append(RunPlan(
                config.study, model, source, BATCHED_METHOD if batched else method, engine, sampling,
                tuple(sorted(set(config.budgets))), problems, prompt_tokens, config.samples_per_problem,
                config.batch_concurrency if batched else config.concurrency, config.system_only,
                config.grade_timeout_s, config.startup_timeout_s, acceptance,
                () if batched else subset, config.prediction_tolerance,
                force_answer_tokens=config.force_answer_tokens if config.budget_mode == "force" else 0,
            ))
    return plans, skipped


def latency_subset(problems: ProblemSet, config: StudyConfig) -> tuple[str, ...]:
    """The seeded subset of problems whose latency is measured (latency_problems > 0), in dataset
    order; empty when every problem is measured."""
    import random

    ids = [p.unique_id for p in problems.problems]
    if not config.latency_problems or config.latency_problems >= len(ids):
        return ()
    chosen = set(random.Random(config.seed).sample(ids, config.latency_problems))
    return tuple(i for i in ids if i in chosen)


def spec_method_label(spec_method: str, synthetic: bool) -> str:
    """The ``method`` of a 03_spec run: ``ngram-spec``, ``draft-model-spec``, ... (+ ``-synthetic``)."""
    return f"{spec_method.replace('_', '-')}-spec" + ("-synthetic" if synthetic else "")


def drafter_path(config: StudyConfig, target: ModelSource) -> str | None:
    """What the engine loads as drafter (``spec_method`` draft_model or eagle3), checked before launch.

    draft_model: the registry key resolved like a target (random weights in system-only mode);
    eagle3: the head's hub id or folder; in system-only mode a local folder with config.json, or
    empty for a random head shaped like ``target`` (model_source.eagle3_head);
    suffix: needs the arctic-inference package. n-gram needs nothing.
    """
    if config.spec_method == "draft_model":
        return resolve(get_model(config.draft_model), config.load_format, config.local_model_dirs).engine_path
    if config.spec_method == "eagle3":
        if not config.draft_model:
            return str(eagle3_head(target))
        folder = Path(config.draft_model).expanduser()
        if config.system_only and not (folder / "config.json").exists():
            raise ConfigError("system-only EAGLE-3 needs draft_model to be a local folder holding the head's "
                              f"config.json, or empty for a head shaped like the target; got {config.draft_model!r}")
        return str(folder.resolve()) if folder.exists() else config.draft_model
    if config.spec_method == "suffix":
        import importlib.util

        if importlib.util.find_spec("arctic_inference") is None:
            raise ConfigError("spec_method suffix needs the arctic-inference package (vLLM's suffix decoding); "
                              "it is not installed in this Python")
    return None


def with_vocabulary_check(speculative: SpeculativeConfig, config: StudyConfig, target_key: str,
                          target_config: dict) -> SpeculativeConfig:
    """vLLM's draft_model needs equal vocabulary sizes, or ``use_heterogeneous_vocab`` (drafts are
    limited to the tokens both tokenizers share, drafted greedily). R1-Distill-Qwen-1.5B pads its
    embedding to 151,936 rows and 7B/14B to 152,064 over the same tokenizer, so that pair needs it."""
    draft_vocab = load_model_config(resolve(get_model(config.draft_model), config.load_format, config.local_model_dirs)).get("vocab_size")
    target_vocab = target_config.get("vocab_size")
    if draft_vocab == target_vocab:
        return speculative
    print(f"-- draft {config.draft_model} has {draft_vocab} vocabulary rows, target {target_key} {target_vocab}: "
          "vLLM drafts over the tokens both tokenizers share (use_heterogeneous_vocab).")
    return replace(speculative, heterogeneous_vocab=True)


def acceptance_for(config: StudyConfig, model_key: str) -> tuple[tuple[float, ...] | None, str]:
    """Synthetic acceptance rates for a model's n-gram run, and where they came from.

    ``engine``: none (the engine's own verification). ``replay``: the per-position acceptance of
    this model's trace sets at the largest trace budget, replayed by 03_spec before its runs.
    Otherwise the rates given in ``spec_acceptance``.
    """
    if config.spec_acceptance == "engine":
        return None, "engine"
    if config.spec_acceptance == "replay":
        from tts_utils.speculation.replay import replayed_rates

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


def _rerun_alone(client, server: VLLMServer, plan: RunPlan, records: list[dict], problems: int, label: str,
                 max_tokens: int | None) -> tuple[list[str], list[tuple[str, int]]]:
    """Re-run the first problems one at a time, at ``max_tokens`` (None: each record's own), and
    compare their tokens with the recorded run's first tokens. Returns the problems checked and,
    for each mismatch, the problem and the first token that differs."""
    recorded = {r["problem_id"]: r for r in records if r["sample_index"] == 0}
    checked, mismatches = [], []
    for problem in plan.problems.problems[:problems]:
        record = recorded.get(problem.unique_id)
        if record is None:
            continue
        length = max_tokens or record["max_tokens"]
        again = stream_one(client, server.base_url, plan.model.key,
                           RequestSpec(f"{label}-{problem.unique_id}", problem.unique_id, 0,
                                       plan.model.prompt(problem.problem), length), plan.sampling).token_ids
        expected = record["token_ids"][:length]
        checked.append(problem.unique_id)
        if again != expected:
            differs = next((i for i, (a, b) in enumerate(zip(again, expected)) if a != b), min(len(again), len(expected)))
            mismatches.append((problem.unique_id, differs))
    return checked, mismatches


def verify_one_pass(client, server: VLLMServer, plan: RunPlan, records: list[dict], problems: int = 2) -> dict:
    """Re-run a few problems at the smallest budget and compare with the long run's prefix."""
    budget = min(plan.budgets)
    checked, mismatches = _rerun_alone(client, server, plan, records, problems, "check", budget)
    return {"budget_tokens": budget, "checked": checked, "mismatches": [m[0] for m in mismatches],
            "consistent": not mismatches}


def verify_batch_invariance(client, server: VLLMServer, plan: RunPlan, records: list[dict],
                            problems: int = BATCH_CHECK_PROBLEMS) -> dict:
    """Re-run a few problems of the batched pass alone (concurrency 1, same engine) and compare
    every token: batch-invariant kernels make them equal; where they are not, the batched tokens
    do not stand for batch-1 runs."""
    checked, mismatches = _rerun_alone(client, server, plan, records, problems, "batch-check", None)
    return {"checked": checked, "consistent": bool(checked) and not mismatches,
            "mismatches": [{"problem_id": p, "first_difference_at_token": at} for p, at in mismatches],
            "batch_invariant_env": dict(plan.engine.env).get("VLLM_BATCH_INVARIANT") == "1"}


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
    from tts_utils.speculation.stepcost import validate

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


def _engine_session(plan: RunPlan, folder: RunFolder, budget_mode: str | None) -> str:
    """Start an engine, run what is missing (and the one-pass, batch and prediction checks),
    record the session."""
    records = read_records(folder.requests_file, repair=True)
    done = {r["request_id"] for r in records}
    every_problem, scope = latency_scope(plan, folder)
    missing = [s for s in plan.request_specs(budget_mode or "one-pass", every_problem) if s.request_id not in done]
    needs_check = budget_mode is None and len(plan.budgets) > 1 and not plan.batched
    needs_batch_check = plan.batched and "batch_check" not in folder.status()
    needs_gate = not every_problem and "prediction_check" not in folder.status()
    needs_probe = len(read_records(folder.probe_file)) < plan.probe_requests
    needs_force = bool(plan.force_answer_tokens) and (bool(missing) or _forcing_pending(plan, folder, records))
    if not (missing or needs_check or needs_batch_check or needs_gate or needs_probe or needs_force):
        return budget_mode or "one-pass"
    folder.set_status("running", budget_mode=budget_mode, done=len(done), latency_scope=scope)
    session = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "provenance": provenance.collect()}
    started = time.monotonic()
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
                extra = [s for s in plan.request_specs("separate", every_problem) if s.request_id not in done]
                deltas.append(_measure(client, server, plan, folder.requests_file, extra))
        if needs_batch_check:
            check = verify_batch_invariance(client, server, plan, read_records(folder.requests_file))
            folder.set_status("running", batch_check=check)
            if not check["consistent"]:
                print(f"!! {plan.run_name}: the batched pass's greedy tokens differ from batch-1 tokens on "
                      f"{len(check['mismatches'])} of {len(check['checked'])} problems checked; latency runs of "
                      f"{plan.model.key} fall back to measuring every problem at concurrency 1.")
        probed = {r["request_id"] for r in read_records(folder.probe_file)}
        probes = [s for s in plan.probe_specs() if s.request_id not in probed]
        if probes:
            probe_sampling = replace(plan.sampling, temperature=0.0, presence_penalty=PROBE_PRESENCE_PENALTY)
            session["probe_sampling"] = probe_sampling.identity()
            session["probe"] = _measure(client, server, plan, folder.probe_file, probes, probe_sampling)
        if needs_gate:
            gate = prediction_check(plan, folder)
            folder.set_status("running", prediction_check=gate)
            if not gate["passed"]:
                scope = (f"every problem measured: the step-cost prediction missed by {gate['worst_error']:+.1%} "
                         f"(tolerance {plan.prediction_tolerance:.0%})")
                print(f"!! {plan.run_name}: {scope}; measuring the other problems now.")
                folder.set_status("running", latency_scope=scope)
                done = {r["request_id"] for r in read_records(folder.requests_file)}
                extra = [s for s in plan.request_specs(budget_mode or "one-pass") if s.request_id not in done]
                deltas.append(_measure(client, server, plan, folder.requests_file, extra))
        if plan.force_answer_tokens:  # after every budget's tokens are final (one-pass or separate)
            forced_file = folder.path / budget_forcing.FORCED_FILE
            session["forced_requests_run"] = budget_forcing.run_forcing(
                client, server.base_url, plan, read_records(folder.requests_file), forced_file,
                {r["request_id"] for r in read_records(forced_file)})
        session["requests_run"] = len(missing)
        session["energy"] = [{k: d.get(k) for k in ENERGY_KEYS} for d in deltas]
        session["counters"] = {k: sum(d.get(k, 0.0) for d in deltas) for d in deltas for k in d
                               if k.startswith("vllm:")}
    session["wall_s"] = time.monotonic() - started
    append_record(folder.segments_file, session)
    return budget_mode or "one-pass"


def _forcing_pending(plan: RunPlan, folder: RunFolder, records: list[dict]) -> bool:
    """Whether some budget-forcing continuation of the requests on disk is not on disk yet."""
    tokenizer = load_tokenizer(plan.source)
    prompts = {p.unique_id: tokenizer(plan.model.prompt(p.problem), add_special_tokens=False)["input_ids"]
               for p in plan.problems.problems}
    done = {r["request_id"] for r in read_records(folder.path / budget_forcing.FORCED_FILE)}
    return bool(budget_forcing.forced_specs(records, plan.budgets, prompts, plan.model, tokenizer,
                                            plan.force_answer_tokens, done))


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
    from tts_utils.speculation.stepcost import classify_chunks

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


# What a predicted row takes from the batched pass: the tokens' facts and their grades.
TOKEN_COLUMNS = ("prompt_tokens", "output_tokens", "hit_budget", "finish_reason", "strict_correct",
                 "lenient_correct", "reasoning_finished", "strict_answer", "grade_status",
                 *(c for c in budget_forcing.FORCED_COLUMNS if c != "forced_latency_s"))


def predicted_rows(plan: RunPlan, folder: RunFolder, measured: pd.DataFrame) -> pd.DataFrame:
    """Rows for the problems outside the latency subset: tokens and grades from the batched pass,
    latency from this run's step-cost model (fitted on all its measured requests) applied to the
    batched tokens' steps (one token a step, or n-gram steps by replay). Empty when this run's
    acceptance is sampled or synthetic, where tokens do not determine the steps."""
    from tts_utils.speculation.stepcost import fit_step_costs, known_steps, predict_request

    batched = batched_run(plan)
    if batched is None:
        return pd.DataFrame()
    tokenizer = load_tokenizer(plan.source)
    costs = fit_step_costs(step_table(plan, read_records(folder.requests_file), read_records(folder.probe_file)))
    ttft = float(measured["ttft_s"].mean())
    grades = pd.read_csv(batched.results_file).set_index(["problem_id", "sample_index", "budget_tokens"])
    problems = {p.unique_id: p for p in plan.problems.problems}
    greedy = plan.sampling.temperature == 0
    rows = []
    for record in read_records(batched.requests_file):
        if record["problem_id"] in plan.latency_subset or record["problem_id"] not in problems:
            continue
        prompt_ids = tokenizer(plan.model.prompt(problems[record["problem_id"]].problem),
                               add_special_tokens=False)["input_ids"]
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


def finalize(plan: RunPlan, folder: RunFolder, budget_mode: str) -> None:
    """Derive, grade and summarise a run whose requests are all on disk; mark it complete."""
    records = read_records(folder.requests_file)
    segments = folder.segments()
    hardware = detect()
    label = hardware.describe().split(";")[0]
    engine_version = segments[-1].get("engine_version") if segments else None
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
    keys = ["study", "run_name", "model", "method", "acceptance", "tensor_parallel_size", "system_only", "hardware",
            "budget_tokens"]
    summary = summarise(rows, keys)
    if forced is not None:  # accuracy under forcing beside the cut's, and what forcing cost
        summary = summary.merge(budget_forcing.summary_columns(rows, keys), on=keys, how="left")
        summary["budget_rule"] = "force"
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
    summary["latency_scope"] = scope
    measured_share = rows.groupby("budget_tokens")["latency_source"].apply(lambda s: (s == "measured").mean())
    summary["measured_fraction"] = summary["budget_tokens"].map(measured_share)
    summary["engine_version"] = engine_version
    summary["engine_startup_s"] = segments[-1].get("engine_startup_s") if segments else None
    if plan.system_only:
        summary[["accuracy_strict", "accuracy_lenient"]] = float("nan")
    atomic_write_text(folder.results_file, rows.to_csv(index=False))
    if not plan.batched:  # a batched pass's chunks interleave many requests: no step costs there
        atomic_write_text(folder.steps_file,
                          step_table(plan, records, read_records(folder.probe_file)).to_csv(index=False))
    atomic_write_text(folder.summary_file, summary.to_csv(index=False))
    # Every file that feeds a number, checksummed: a later edit is found on read (store.RunFolder.mismatches).
    folder.set_status("complete", budget_mode=budget_mode, done=len(records), sha256=checksums(folder.path))


def execute(plan: RunPlan) -> str:
    """Run one plan to completion, resuming what is on disk. Returns what happened."""
    folder = plan.folder()
    if folder.is_complete():
        return "skipped (complete)"
    changed = folder.mismatches() if folder.status().get("state") == "complete" else []
    if changed:
        print(f"!! {plan.run_name}: {'; '.join(changed)}; deriving its results again")
    folder.path.mkdir(parents=True, exist_ok=True)
    if not folder.run_file.exists():
        atomic_write_json(folder.run_file, {"identity": plan.identity(), "run_name": plan.run_name,
                                            "created_by": provenance.collect()})
    status = folder.status()
    try:
        budget_mode = _engine_session(plan, folder, status.get("budget_mode"))
    except CorruptResultError as error:
        raise CorruptResultError(f"{error}; finished requests cannot be trusted past it: move the run folder "
                                 f"{folder.path} away to measure the run again") from None
    finalize(plan, folder, budget_mode)
    folder.failure_file.unlink(missing_ok=True)
    if changed:
        return "re-derived (files did not match their checksums)"
    return "resumed and completed" if status.get("state") in {"running", "incomplete"} else "completed"


def _record_failure(plan: RunPlan, error: BaseException) -> None:
    folder = plan.folder()
    folder.path.mkdir(parents=True, exist_ok=True)
    try:
        done = len(read_records(folder.requests_file)) if folder.requests_file.exists() else 0
    except CorruptResultError:  # the failure may be this very file: record it, do not fail again
        done = None
    folder.set_status("incomplete", done=done, error=f"{type(error).__name__}: {error}".splitlines()[0])
    tail = folder.engine_log.read_text(errors="replace").splitlines()[-60:] if folder.engine_log.exists() else []
    atomic_write_json(folder.failure_file, {"error": str(error), "type": type(error).__name__,
                                            "traceback": traceback.format_exc(), "engine_log_tail": tail,
                                            "requests_on_disk": done})


def run_sweep(config: StudyConfig, notebook: str, only: str = "") -> pd.DataFrame:
    """Plan and run a notebook's sweep; returns one row per run (name, outcome, seconds).
    ``only``: run just the plans whose run name contains it (the CLI's ``--only``)."""
    if not config.dry_run:
        vllm_compat.require(config)  # a vLLM without what this study uses stops here, not an hour in
    check_inputs(config, deep=False)  # trace sets and dataset: the chain's later steps fail now, not there
    plans, skipped = plan_runs(config, notebook)
    if only:
        plans = [plan for plan in plans if only in plan.run_name]
        if not plans:
            raise ConfigError(f"--only {only!r} matches none of this sweep's runs")
    for reason in skipped:
        print(f"-- skipped: {reason}")
    if config.dry_run:
        from tts_utils.study.estimate import estimate_plans

        print("dry run: nothing is started.")
        return estimate_plans(plans, detect().accelerator)
    outcomes, failures = [], []
    if config.placement == "ray":  # side by side on disjoint GPUs (placement.py); same files, same lock
        from tts_utils.study.placement import run_placed

        def report(row: dict) -> None:
            where = f" [{row['node']} GPU {row['gpu_ids']}, attempt {row['attempts']}]" if row["node"] else ""
            print(f"{row['run_name']}: {row['outcome']}{where}")

        # A latency run predicts from its model's batched pass, so the batched passes go first.
        waves = [wave for wave in ([p for p in plans if p.batched], [p for p in plans if not p.batched]) if wave]
        with study_lock(config.study):
            outcomes = [row for wave in waves for row in
                        run_placed(wave, execute, ray_address=config.ray_address, on_failure=_record_failure,
                                   on_outcome=report)]
        failures = [f"{row['run_name']}: {row['error']}" for row in outcomes if row["error"] is not None]
        if failures:
            raise SweepError(f"{len(failures)} of {len(plans)} runs failed: " + "; ".join(failures))
        return pd.DataFrame(outcomes)
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
    """``python -m tts_utils.study.sweep 01_greedy [--profile P] [--set k=v]``: a sweep without Jupyter."""
    import sys

    from tts_utils.cli import fail
    from tts_utils.pipeline import study_config, study_parser

    parser = study_parser("python -m tts_utils.study.sweep", main.__doc__)
    parser.add_argument("notebook", choices=sorted(NOTEBOOK_METHODS))
    parser.add_argument("--only", default="", metavar="TEXT", help="run only the runs whose name contains TEXT")
    args = parser.parse_args(argv)
    try:
        print(run_sweep(study_config(args), args.notebook, args.only).to_string(index=False))
    except (ConfigError, StudyLockedError, CorruptResultError) as error:
        return fail(error)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
