"""What a study will run: ``plan_runs`` turns a ``StudyConfig`` into one ``RunPlan`` per (model,
method, TP size), checking everything that can be checked before an engine starts (models, data, TP
sizes, drafters, prompt + largest budget within the context). The counts the sweep's checks and
probes use live here, so that estimate.py prices what the sweep does. Used by sweep.py, session.py,
results.py, estimate.py, placement.py, acceptance_sweep.py and 00_setup (notebook.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tts_utils.banners import RANDOM_WEIGHTS, REAL_WEIGHTS
from tts_utils.config import StudyConfig
from tts_utils.data import ProblemSet, load_problems
from tts_utils.engine.model_source import (
    ModelSource,
    eagle3_head,
    load_model_config,
    load_tokenizer,
    resolve,
    shape_config,
)
from tts_utils.engine.runner import (
    RequestSpec,
    SamplingConfig,
)
from tts_utils.engine.server import EngineConfig, SpeculativeConfig, check_memory
from tts_utils.errors import ConfigError, EngineStartError
from tts_utils.hardware import detect
from tts_utils.models import RANDOM_WEIGHTS_MARKER, ModelSpec, get_model
from tts_utils.paths import study_dir
from tts_utils.speculation.replay_sets import replayed_rates
from tts_utils.store import (
    RunFolder,
)

NOTEBOOK_METHODS = {"01_greedy": "baseline", "02_tp": "baseline", "03_spec": "ngram-spec"}
# The batched accuracy pass (batch_concurrency > 0): all problems at once, batch-invariant kernels.
BATCHED_METHOD = "baseline-batched"
# Problems re-run at concurrency 1 in the batched pass's engine to check its tokens are batch-1 tokens.
BATCH_CHECK_PROBLEMS = 3
# Problems re-run at the smallest budget to check one pass at the largest derives the others.
ONE_PASS_CHECK_PROBLEMS = 2
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

@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """One engine configuration over one problem set, at every budget. Built with keywords."""

    study: str
    model: ModelSpec
    source: ModelSource
    method: str
    engine: EngineConfig
    sampling: SamplingConfig
    budgets: tuple[int, ...]
    problems: ProblemSet
    # Each problem's prompt as token ids, in ``problems`` order: tokenised once, here.
    prompt_ids: tuple[tuple[int, ...], ...]
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
    def prompt_tokens(self) -> tuple[int, ...]:
        """Prompt lengths in tokens, in ``problems`` order."""
        return tuple(len(ids) for ids in self.prompt_ids)

    def prompts_by_problem(self) -> dict[str, list[int]]:
        """Each problem's prompt token ids, by problem id."""
        return {p.unique_id: list(ids) for p, ids in zip(self.problems.problems, self.prompt_ids)}

    @property
    def batched(self) -> bool:
        """The batched accuracy pass (01_greedy with batch_concurrency > 0)."""
        return self.method == BATCHED_METHOD

    @property
    def weights(self) -> str:
        """``real`` for a checkpoint; ``random`` for the tiny model, system-only mode or a folder with
        the random_weights marker (results.csv's ``weights``)."""
        random = self.system_only or self.source.random_weights or self.model.hf_id is None
        return RANDOM_WEIGHTS if random else REAL_WEIGHTS

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
            # Only for a random-weights folder: runs of real checkpoints keep their names.
            **({"random_weights": True} if self.source.random_weights else {}),
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
    if config.cudagraph_mode and cpu_engine(config):
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
            if config.spec_acceptance != "engine" and cpu_engine(config):
                raise ConfigError(f"synthetic acceptance (spec_acceptance: {config.spec_acceptance}) needs a GPU "
                                  "engine: vLLM's CPU sampler does not support synthetic rejection sampling")
            rates, acceptance = acceptance_for(config, key)
            speculative = SpeculativeConfig(*spec_settings, synthetic_acceptance_rates=rates,
                                            method=config.spec_method, draft_model_path=drafter_path(config, source))
            method = spec_method_label(config.spec_method, rates is not None)
        tokenizer = load_tokenizer(source)
        model_config = load_model_config(source)
        if key in config.local_model_dirs and config.load_format != "dummy":
            check_local_shape(key, model, model_config, config.local_model_dirs[key])
        check_embedding_rows(key, len(tokenizer), model_config, source.engine_path)
        if speculative is not None and speculative.method == "draft_model":
            speculative = with_vocabulary_check(speculative, config, key, model_config)
        prompt_ids = tuple(tuple(tokenizer(model.prompt(p.problem), add_special_tokens=False)["input_ids"])
                           for p in problems.problems)
        longest_prompt = max(len(ids) for ids in prompt_ids)
        needed = longest_prompt + config.max_budget + CONTEXT_MARGIN_TOKENS
        if config.budget_mode == "force":  # the continuation: + marker and cue + answer tokens
            needed += FORCING_CUE_TOKENS + config.force_answer_tokens
        max_model_len = config.max_model_len or needed
        if max_model_len < needed:
            forcing = (f" + forcing cue and answer ({FORCING_CUE_TOKENS + config.force_answer_tokens})"
                       if config.budget_mode == "force" else "")
            raise ConfigError(f"max_model_len {max_model_len} < longest prompt ({longest_prompt} tokens) "
                              f"+ largest budget ({config.max_budget}){forcing} + margin ({CONTEXT_MARGIN_TOKENS}) "
                              f"= {needed} for model {key}")
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
            heads = model_config.get("num_attention_heads")
            if heads and heads % size:
                raise ConfigError(f"{key} has {heads} attention head(s), which TP={size} cannot split evenly; "
                                  "leave that size out of tp_sizes")
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
                study=config.study, model=model, source=source, method=BATCHED_METHOD if batched else method,
                engine=engine, sampling=sampling, budgets=tuple(sorted(set(config.budgets))), problems=problems,
                prompt_ids=prompt_ids, samples_per_problem=config.samples_per_problem,
                concurrency=config.batch_concurrency if batched else config.concurrency,
                system_only=config.system_only, grade_timeout_s=config.grade_timeout_s,
                startup_timeout_s=config.startup_timeout_s, acceptance=acceptance,
                latency_subset=() if batched else subset, prediction_tolerance=config.prediction_tolerance,
                force_answer_tokens=config.force_answer_tokens if config.budget_mode == "force" else 0,
            ))
    return plans, skipped


# What makes a local folder the architecture its registry key names (its shipped shape).
SHAPE_FIELDS = ("architectures", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "intermediate_size", "vocab_size")


def check_local_shape(key: str, model: ModelSpec, local: dict, folder: str) -> None:
    """A ``model_paths`` folder must hold the architecture its key names: a tiny or another model's
    folder given as ``1.5b`` would otherwise run, and be reported, as 1.5B. A ``random_weights``
    folder may have more embedding rows than the shape, where its marker says it gave its
    tokenizer's added tokens rows."""
    shipped = shape_config(model)
    if shipped is None:
        return
    raised = _raised_rows(folder)
    differ = [f"{name} {local.get(name)!r} (a {key} has {shipped[name]!r})" for name in SHAPE_FIELDS
              if name in shipped and local.get(name) != shipped[name]
              and not (name == "vocab_size" and raised == {"shape": shipped[name], "written": local.get(name)})]
    if differ:
        raise ConfigError(f"model_paths: {folder} is not a {key} checkpoint: {'; '.join(differ)}")


def _raised_rows(folder: str) -> dict | None:
    """``{"shape": rows, "written": rows}`` where ``random_weights`` sized a folder's embedding past
    its shape to cover the tokenizer's added tokens (its marker records it); else None."""
    marker = Path(folder).expanduser() / RANDOM_WEIGHTS_MARKER
    try:
        raised = json.loads(marker.read_text(encoding="utf-8")).get("vocab_size_raised")
    except (OSError, ValueError, AttributeError):
        return None
    return {"shape": raised.get("shape"), "written": raised.get("written")} if isinstance(raised, dict) else None


def check_embedding_rows(key: str, token_ids: int, model_config: dict, where: str) -> None:
    """Every id the tokenizer has (``len(tokenizer)``, added tokens included) needs an embedding row:
    a larger tokenizer passes every other check and crashes the engine at warm-up."""
    rows = model_config.get("vocab_size")
    if isinstance(rows, int) and token_ids > rows:
        raise ConfigError(f"{key} ({where}): its tokenizer has {token_ids} ids (added tokens included) but the model's "
                          f"embedding has {rows} rows (config.json vocab_size); give the model its own tokenizer, or "
                          "write the folder again with python -m tts_utils random_weights (it gives every id a row)")


def cpu_engine(config: StudyConfig) -> bool:
    """Whether the study's engines will start on a CPU. What only a GPU engine can do is refused there
    before anything starts; a dry run starts nothing, so it plans (and renders the finished runs of) a
    GPU study on any machine."""
    return detect().accelerator == "cpu" and not config.dry_run


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

        rates, source = replayed_rates(config.study, model_key, config.spec_tokens, config.spec_lookup_min,
                                       config.spec_lookup_max)
        return rates, f"synthetic: replay of {source}"
    rates, label = config.given_acceptance_rates()
    return rates, f"synthetic: {label}"
