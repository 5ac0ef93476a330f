"""Study parameters: one validated dataclass shared by the notebooks, the profiles and the CLI.

Each parameter's default, help text and notebooks live once, on its ``StudyConfig`` field
(``param``); the notebooks' ``parameters`` cells are written from them (parameters_cell.py) as typed
literals with the cheap defaults. ``params/*.yaml`` profiles override them (papermill ``-f``, or
``python -m tts_utils.pipeline --profile``). Every check here fails with a one-line ``ConfigError`` before any engine starts. Used by every notebook.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from tts_utils.errors import ConfigError
from tts_utils.hardware import Hardware, detect
from tts_utils.models import MODELS, has_random_weights

SPEC_METHODS = ("ngram", "draft_model", "eagle3", "suffix")
# vLLM's CUDAGraphMode names; "" keeps the engine's default (FULL_AND_PIECEWISE in vLLM 0.26).
CUDAGRAPH_MODES = ("", "NONE", "PIECEWISE", "FULL", "FULL_DECODE_ONLY", "FULL_AND_PIECEWISE")
MAX_SPEC_TOKENS = 16
FLOAT_LISTS = {"acceptance_lengths"}
# cut: grade the output as the budget cut it; force: end the thinking there and let the model answer.
BUDGET_MODES = ("cut", "force")
PATH_LISTS = {"trace_sets"}
# The notebooks of the chain (pipeline.CHAIN), named here because each parameter says which declare it.
SETUP, GREEDY, TP, SPEC, ANALYSIS = "00_setup", "01_greedy", "02_tp", "03_spec", "04_analysis"
NOTEBOOKS = (SETUP, GREEDY, TP, SPEC, ANALYSIS)
# What the sweeps read (plan_runs, the engine, run_sweep's placement). 00_setup declares all of it too:
# it checks and estimates the whole study and records its parameters (inventory.json).
RUNS = (SETUP, GREEDY, TP, SPEC)


def param(default: Any, help: str, notebooks: tuple[str, ...]) -> Any:
    """A StudyConfig field with its help text and the notebooks whose ``parameters`` cell declares it.

    This is the one place a parameter is described: ``parameters_cell.py`` writes the notebooks'
    cells from it (a test checks they match). A notebook gets only the profile keys its cell
    declares (pipeline.run_notebook), so list every notebook whose code path reads the field, and
    the fields its checks need alongside (latency_problems needs batch_concurrency).
    """
    return field(default=default, metadata={"help": help, "notebooks": notebooks})


@dataclass(frozen=True)
class StudyConfig:
    """What a study runs. Field names are the notebooks' parameter names; the fields' order is the
    order of the notebooks' parameters cells."""

    study: str = param("smoke", "results folder outputs/runs/<study>; 04_analysis reads one study", NOTEBOOKS)
    model: str = param("tiny", "model registry key(s), comma-separated: " + ", ".join(MODELS), RUNS)
    budgets: tuple[int, ...] = param(
        (64, 128, 256), "output-token budgets; one pass at the largest derives the others", RUNS)
    dataset: str = param("auto", "hub or math500 (HuggingFaceH4/MATH-500), gsm8k, aime2024, aime2025, NAME:PATH, "
                                 "a MATH500 .jsonl/.parquet path, builtin, or auto", RUNS)
    num_problems: int = param(8, "problems drawn from the dataset; 0 means all 500", RUNS)
    seed: int = param(0, "seed of the problem subset, the engine and sampling", RUNS)
    samples_per_problem: int = param(1, "requests per problem (repetitions give the spread of timings)", RUNS)
    temperature: float = param(0.0, "0 means greedy decoding, as in the paper", RUNS)
    top_p: float = param(1.0, "nucleus sampling, used when temperature > 0", RUNS)
    concurrency: int = param(1, "requests in flight; 1 is latency mode, as in the paper", RUNS)
    tp_sizes: tuple[int, ...] = param((1, 2, 4), "tensor-parallel sizes (powers of two) that 02_tp runs", (SETUP, TP))
    skip_unavailable_tp: bool = param(
        True, "skip, with a reason, TP sizes above this machine's devices (False: error)", (SETUP, TP))
    spec_tokens: int = param(5, "speculation: tokens the drafter proposes per step", (SETUP, SPEC))
    spec_lookup_min: int = param(1, "n-gram speculation: shortest n-gram looked up in the prompt", (SETUP, SPEC))
    spec_lookup_max: int = param(4, "n-gram speculation: longest n-gram looked up in the prompt", (SETUP, SPEC))
    spec_method: str = param("ngram", " or ".join((", ".join(SPEC_METHODS[:-1]), SPEC_METHODS[-1])), (SETUP, SPEC))
    draft_model: str = param(
        "", "drafter: a registry key for draft_model, the head's hub id or folder for eagle3", (SETUP, SPEC))
    spec_acceptance: str = param(
        "engine",
        "engine (its own verification), replay (synthetic rates from replayed traces), or rates \"r1,r2,r3,r4,r5 @ label\"",
        (SETUP, SPEC))
    trace_sets: tuple[str, ...] = param(
        (),
        "real outputs to replay: PATH, MODEL:PATH, MODEL:public:NAME, MODEL:proxy:OTHER (written with an equals sign) or own: this study's greedy TP1 runs (what empty replays)",
        (SETUP, SPEC))
    trace_tokenizer: str = param(
        "", "local tokenizer folder for real traces; empty: $TTS_TRACE_TOKENIZER, the hub cache, else the hub", (SETUP, SPEC))
    trace_budgets: tuple[int, ...] = param(
        (1024, 2048, 4096, 8192, 16384), "budgets at which replayed traces are cut and graded", (SETUP, SPEC))
    trace_limit: int = param(0, "traces replayed per real trace set (the first ones); 0 replays all", (SETUP, SPEC))
    acceptance_lengths: tuple[float, ...] = param(
        (), "mean acceptance lengths for the break-even sweep (GPU, system-only), e.g. [1.5, 2, 3, 6]", (SETUP, SPEC))
    acceptance_requests: int = param(
        3, "requests per acceptance length in that sweep (first problems of the study)", (SETUP, SPEC))
    dtype: str = param("auto", "engine dtype; auto takes the checkpoint's", RUNS)
    load_format: str = param(
        "auto", "auto loads real weights; dummy is system-only mode: random weights, no accuracy", RUNS)
    model_paths: tuple[str, ...] = param(
        (), "local weight folders per model, MODEL:DIR written with an equals sign; empty loads the hub id", RUNS)
    budget_mode: str = param(
        "cut",
        "cut grades the output as the budget cut it; force ends the thinking there and lets the model answer",
        RUNS)
    force_answer_tokens: int = param(
        32, "budget_mode force: most answer tokens written after the forced end of thinking", RUNS)
    max_model_len: int = param(0, "engine context length; 0 fits the longest prompt plus the largest budget", RUNS)
    gpu_memory_utilization: float = param(0.9, "share of GPU memory for weights and KV cache (GPU engine)", RUNS)
    cpu_kv_cache_gib: int = param(
        2, "KV cache size in GiB on the CPU engine; 0 sizes it by gpu_memory_utilization", RUNS)
    extra_engine_args: tuple[str, ...] = param((), "further vLLM flags, e.g. [\"--enforce-eager\"]", RUNS)
    cudagraph_mode: str = param(
        "",
        "vLLM CUDA-graph mode on a GPU engine; empty keeps its default, FULL also captures steps without a draft",
        RUNS)
    trust_remote_code: bool = param(False, "let the engine run code shipped with a model", RUNS)
    startup_timeout_s: int = param(900, "give up on an engine not healthy by then", RUNS)
    grade_timeout_s: float = param(10.0, "per-output grading limit; slower outputs count as ungradable", RUNS)
    batch_concurrency: int = param(
        0, "above 0, 01_greedy first runs one batched accuracy pass per model at this concurrency (TP 1)", RUNS)
    latency_problems: int = param(
        0,
        "above 0, latency is measured on this many seeded problems and predicted for the rest (needs batch_concurrency)",
        RUNS)
    prediction_tolerance: float = param(
        0.15, "a latency run whose step-cost prediction misses by more measures every problem", RUNS)
    placement: str = param("sequential", "sequential, or ray: independent runs side by side on disjoint GPUs", RUNS)
    ray_address: str = param("", "a Ray cluster for placement ray; empty starts a local one", RUNS)
    dry_run: bool = param(False, "plan and estimate only; start no engine (so a GPU study plans and renders its finished runs on any machine)", RUNS)
    gpu_hour_usd: float = param(
        0.0,
        "dollars per GPU-hour; 0 takes the list price of the study's GPU (tts_utils/report/prices.py)",
        (SETUP, ANALYSIS))
    tp_import: tuple[str, ...] = param(
        (),
        "studies (or folders of runs) whose greedy runs at several TP sizes price the traces; provenance kept",
        (ANALYSIS,))
    tp_import_any_hardware: bool = param(
        False, "import step costs measured on another GPU model too (refused by default)", (ANALYSIS,))
    appendices: bool = param(
        True, "run the appendices after the paper's argument (real traces, step costs, break-even, fast grid, pick); "
              "False skips them", (ANALYSIS,))

    @property
    def model_keys(self) -> list[str]:
        return [key.strip() for key in self.model.split(",") if key.strip()]

    @property
    def system_only(self) -> bool:
        """Random weights (``load_format: dummy``): latency and cost only, accuracy meaningless."""
        return self.load_format == "dummy"

    @property
    def local_model_dirs(self) -> dict[str, str]:
        """``model_paths`` as {registry key: local weights folder}."""
        return {key.strip(): str(Path(folder.strip()).expanduser().resolve())
                for key, _, folder in (entry.partition("=") for entry in self.model_paths)}

    @property
    def random_weight_models(self) -> list[str]:
        """Models whose ``model_paths`` folder holds random weights written by the kit (its marker):
        they load and run as real checkpoints, but their text is noise, and every label says so."""
        if self.system_only:
            return []
        return [key for key, folder in self.local_model_dirs.items() if has_random_weights(folder)]

    @property
    def max_budget(self) -> int:
        return max(self.budgets)

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> StudyConfig:
        """Build from a notebook's variables (its parameters cell), reading known names only."""
        known = {f.name for f in fields(cls)}
        return cls.create(**{name: value for name, value in namespace.items() if name in known})

    @classmethod
    def create(cls, **values: Any) -> StudyConfig:
        """Coerce and check types and ranges (not the hardware: see ``check_hardware``)."""
        check_known_keys(values, source="parameters")
        defaults = cls()
        coerced = {name: _coerce(name, value, getattr(defaults, name)) for name, value in values.items()}
        config = replace(defaults, **coerced)
        config.check_values()
        return config

    def check_values(self) -> None:
        if not self.study or any(c in self.study for c in "/\\ ") or self.study.startswith("."):
            raise ConfigError(f"study must be a plain folder name, got {self.study!r}")
        if not self.model_keys:
            raise ConfigError("model is empty; give one or more registry keys, e.g. '1.5b,7b'")
        for key in self.model_keys:
            if key not in MODELS:
                hint = difflib.get_close_matches(key, MODELS, n=1)
                raise ConfigError(
                    f"unknown model {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; known: {', '.join(MODELS)}"
                )
        if not self.budgets:
            raise ConfigError("budgets is empty; give output-token budgets such as [1024, 4096]")
        for name in ("num_problems", "samples_per_problem", "concurrency", "spec_tokens",
                     "spec_lookup_min", "spec_lookup_max", "startup_timeout_s", "acceptance_requests"):
            value = getattr(self, name)
            if value <= 0 and not (name == "num_problems" and value == 0):
                raise ConfigError(f"{name} must be a positive integer, got {value}")
        if self.spec_lookup_min > self.spec_lookup_max:
            raise ConfigError("spec_lookup_min must not exceed spec_lookup_max")
        self.check_speculation()
        if self.spec_acceptance not in {"engine", "replay"}:
            self.given_acceptance_rates()
        if not self.trace_budgets or min(self.trace_budgets) <= 0:
            raise ConfigError("trace_budgets must be positive integers")
        if self.trace_limit < 0:
            raise ConfigError(f"trace_limit must be >= 0 (0 replays every trace of a set), got {self.trace_limit}")
        for size in self.tp_sizes:
            if size <= 0 or size & (size - 1):
                raise ConfigError(f"tp_sizes must be powers of two, got {size}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.load_format not in {"auto", "dummy", "safetensors", "pt"}:
            raise ConfigError(f"load_format must be auto, dummy, safetensors or pt, got {self.load_format!r}")
        if self.max_model_len < 0 or self.grade_timeout_s <= 0:
            raise ConfigError("max_model_len must be >= 0 (0 = fit prompt + largest budget), grade_timeout_s > 0")
        if self.cudagraph_mode not in CUDAGRAPH_MODES:
            raise ConfigError(f"cudagraph_mode must be one of {', '.join(m for m in CUDAGRAPH_MODES if m)} "
                              f"or empty (the engine's default), got {self.cudagraph_mode!r}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0 or self.cpu_kv_cache_gib < 0:
            raise ConfigError("gpu_memory_utilization must be in (0, 1] and cpu_kv_cache_gib >= 0")
        self.check_grid()
        self.check_local_models()
        if self.budget_mode not in BUDGET_MODES:
            raise ConfigError(f"budget_mode must be cut or force, got {self.budget_mode!r}")
        if not 1 <= self.force_answer_tokens <= 4096:
            raise ConfigError(f"force_answer_tokens must be 1..4096 (answer tokens after a forced end of thinking), "
                              f"got {self.force_answer_tokens}")
        if not math.isfinite(self.gpu_hour_usd) or self.gpu_hour_usd < 0:
            raise ConfigError(f"gpu_hour_usd must be >= 0 dollars per GPU-hour (0 = list price of the GPU), "
                              f"got {self.gpu_hour_usd}")

    def check_grid(self) -> None:
        """The cheaper grid (batched accuracy pass, latency on a subset, placement) and the
        break-even sweep of 03_spec."""
        if self.batch_concurrency < 0 or self.latency_problems < 0:
            raise ConfigError("batch_concurrency and latency_problems must be >= 0 (0 = off)")
        if self.latency_problems and not self.batch_concurrency:
            raise ConfigError("latency_problems needs batch_concurrency > 0: the batched pass gives the tokens "
                              "of every problem that latency is predicted for")
        if self.latency_problems and self.num_problems and self.latency_problems >= self.num_problems:
            raise ConfigError(f"latency_problems ({self.latency_problems}) must be smaller than num_problems "
                              f"({self.num_problems}); 0 measures latency on every problem")
        if not 0.0 < self.prediction_tolerance < 1.0:
            raise ConfigError(f"prediction_tolerance must be in (0, 1), got {self.prediction_tolerance}")
        if self.placement not in {"sequential", "ray"}:
            raise ConfigError(f"placement must be sequential or ray, got {self.placement!r}")
        if self.ray_address and self.placement != "ray":
            raise ConfigError("ray_address is only used with placement: ray")
        for length in self.acceptance_lengths:
            if not 1.0 <= length <= self.spec_tokens + 1:
                raise ConfigError(f"acceptance_lengths must lie in [1, spec_tokens + 1 = {self.spec_tokens + 1}] "
                                  f"(mean tokens per verification step), got {length}")

    def check_local_models(self) -> None:
        """``model_paths``: KEY=DIR entries, each a registry key and a folder with config.json."""
        for entry in self.model_paths:
            key, sep, folder = entry.partition("=")
            if not sep or not folder.strip():
                raise ConfigError(f"model_paths entries are KEY=DIR (e.g. 1.5b=/models/r1-1.5b), got {entry!r}")
            if key.strip() not in MODELS:
                raise ConfigError(f"model_paths: unknown model {key.strip()!r}; known: {', '.join(MODELS)}")
            if not (Path(folder.strip()).expanduser() / "config.json").is_file():
                raise ConfigError(f"model_paths: {folder.strip()} has no config.json (a local weights folder: "
                                  f"config, tokenizer and safetensors)")

    def check_speculation(self) -> None:
        """03_spec's method and drafter (what can be checked without the engine)."""
        if self.spec_method not in SPEC_METHODS:
            raise ConfigError(f"spec_method must be one of {', '.join(SPEC_METHODS)}, got {self.spec_method!r}")
        if not 1 <= self.spec_tokens <= MAX_SPEC_TOKENS:
            raise ConfigError(f"spec_tokens must be 1..{MAX_SPEC_TOKENS}, got {self.spec_tokens}")
        if self.spec_method == "eagle3" and not self.draft_model and not self.system_only:
            raise ConfigError("spec_method eagle3 needs draft_model: the EAGLE-3 head's hub id or local folder "
                              "(left empty in system-only mode, the kit shapes a random head like each target)")
        if self.spec_method != "draft_model":
            return
        if self.draft_model not in MODELS:
            hint = difflib.get_close_matches(self.draft_model, MODELS, n=1)
            raise ConfigError(f"draft_model must be a model registry key for spec_method draft_model, got "
                              f"{self.draft_model!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        draft = MODELS[self.draft_model]
        for key in self.model_keys:
            target = MODELS.get(key)
            if target is None:
                continue
            if draft.params_billion > target.params_billion:
                raise ConfigError(f"draft model {draft.key} ({draft.params_billion}B) is larger than target {key} "
                                  f"({target.params_billion}B)")
            if draft.tokenizer_family != target.tokenizer_family:
                raise ConfigError(f"draft model {draft.key} uses another tokenizer ({draft.tokenizer_family}) than "
                                  f"{key} ({target.tokenizer_family}); vLLM needs one vocabulary")

    def given_acceptance_rates(self) -> tuple[tuple[float, ...], str]:
        """``spec_acceptance`` as explicit rates: "0.36,0.2,0.13,0.09,0.07 @ label" (label optional)."""
        text, _, label = self.spec_acceptance.partition("@")
        try:
            rates = tuple(float(part) for part in text.replace(",", " ").split())
        except ValueError:
            rates = ()
        if len(rates) != self.spec_tokens or any(not 0.0 <= r <= 1.0 for r in rates) or \
                any(b > a for a, b in zip(rates, rates[1:])):
            raise ConfigError(f"spec_acceptance must be engine, replay, or {self.spec_tokens} non-increasing "
                              f"rates in [0, 1] (one per draft position), got {self.spec_acceptance!r}")
        return rates, label.strip() or "given rates"

    def usable_tp_sizes(self, hardware: Hardware | None = None) -> tuple[list[int], list[str]]:
        """TP sizes this machine can host, and a reason for each one skipped.

        A size above the machine's devices is skipped with a reason when ``skip_unavailable_tp``
        is on (the paper profile lists 1, 2, 4 for any machine), otherwise it is an error.
        """
        hardware = hardware or detect()
        usable, skipped = [], []
        for size in sorted(set(self.tp_sizes)):
            if size <= hardware.max_tensor_parallel:
                usable.append(size)
                continue
            unit = "GPUs" if hardware.gpu_count else "usable CPU cores (no GPU)"
            reason = f"TP={size} needs {size} devices; this machine has {hardware.max_tensor_parallel} {unit}"
            if not self.skip_unavailable_tp:
                raise ConfigError(reason)
            skipped.append(reason)
        if not usable:
            raise ConfigError(f"no requested TP size fits this machine: {'; '.join(skipped)}")
        return usable, skipped


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Check one value against its default's type; lists become tuples."""
    if isinstance(default, tuple):
        if isinstance(value, str):
            # Paths may hold spaces: trace sets are split at commas and line breaks only.
            text = value.replace(",", "\n")
            parts = text.split("\n") if name in PATH_LISTS else text.split()
            value = [part.strip() for part in parts if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        inner = int if name in {"budgets", "tp_sizes", "trace_budgets"} else str
        if isinstance(default, tuple) and name in FLOAT_LISTS:
            inner = float
        items = []
        for item in value:
            if inner is float:
                try:
                    number = float(item)
                except (TypeError, ValueError):
                    number = math.nan
                if isinstance(item, bool) or not math.isfinite(number):
                    raise ConfigError(f"{name} must hold finite numbers, got {item!r}")
                item = number
            if inner is int:
                if isinstance(item, bool) or not isinstance(item, (int, str)) or not str(item).lstrip("-").isdigit():
                    raise ConfigError(f"{name} must hold integers, got {item!r}")
                item = int(item)
                if name in {"budgets", "trace_budgets"} and item <= 0:
                    raise ConfigError(f"{name} must be positive integers, got {item}")
            items.append(inner(item))
        return tuple(items)
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{name} must be {_TYPE_NAMES[expected]}, got {value!r}")
    return value


def check_known_keys(values: Mapping[str, Any], source: str) -> None:
    """An unknown or misspelled key is an error, with the closest known name."""
    known = [f.name for f in fields(StudyConfig)]
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(
                f"unknown parameter {key!r} in {source}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file's contents, or a one-line ConfigError naming ``what`` it is and why not."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{what} {path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{what} {path}: cannot read it ({error.strerror or error})") from None


def read_profile(path: Path) -> dict[str, Any]:
    """Read and check one YAML profile: a mapping of parameter names to values."""
    if not path.exists():
        raise ConfigError(f"profile not found: {path}")
    text = read_text(path, "profile")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {path}{where}: {getattr(error, 'problem', error)}") from None
    if data is None:
        # An empty profile would silently mean every default (study smoke): almost never meant.
        raise ConfigError(f"profile {path} is empty; give parameters (e.g. 'study: NAME'), or use --profile smoke")
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path} must be a mapping of parameter names to values")
    check_known_keys(data, source=str(path))
    StudyConfig.create(**data)  # values checked now, not when a notebook reaches them
    return data
