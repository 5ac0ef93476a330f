"""What one run of a study costs, before it runs: the measured constants (ms per token, engine
start, batched throughput, expected output lengths, speculation factors, each naming its source),
the runs a study makes (``study_runs``) and their placement on a node's GPUs (``place``). Used by
estimate.py (00_setup, dry runs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tts_utils.data import resolve_source
from tts_utils.hardware import detect
from tts_utils.models import size_key
from tts_utils.paths import BUILTIN_PROBLEMS_FILE
from tts_utils.study.plan import (
    BATCH_CHECK_PROBLEMS,
    BATCHED_METHOD,
    ONE_PASS_CHECK_PROBLEMS,
    PROBE_MAX_TOKENS,
    PROBE_REQUESTS,
    spec_method_label,
)

if TYPE_CHECKING:
    from tts_utils.config import StudyConfig
    from tts_utils.hardware import Hardware

# ms per output token at concurrency 1: the kit's mean e2e latency / tokens (TTFT included), H200,
# bf16, vLLM 0.26.0. TP 1: reference_results/runs/h200-realistic (greedy, 1K/2K); TP 2/4:
# reference_results/runs/h200-system (1K..16K for 1.5B, 1K..4K for 7B/14B).
MS_PER_TOKEN = {
    ("1.5b", 1): 2.42, ("1.5b", 2): 2.62, ("1.5b", 4): 2.00,
    ("7b", 1): 4.78, ("7b", 2): 3.22, ("7b", 4): 2.54,
    ("14b", 1): 8.90, ("14b", 2): 5.59, ("14b", 4): 4.24,
}
TINY_CPU_MS_PER_TOKEN = 5.0  # the tiny model on 2 CPU cores (tests' runs)
# Engine start in seconds by TP size: mean engine_startup_s of the 18 reference runs above (TP 1:
# 109, max 135; TP 2: 136, max 144; TP 4: 109, max 125). The vLLM CPU build: about 60.
ENGINE_START_S = {1: 109.0, 2: 136.0, 4: 109.0}
CPU_ENGINE_START_S = 60.0
# Batched decode throughput, output tokens/s of one engine at TP 1 with VLLM_BATCH_INVARIANT=1 on
# one H200: measured 2026-11-29 at concurrency 64, 64 MATH500 prompts x 1,024 tokens, random
# weights (reference_results/runs/h200-grid). Used for any concurrency >= 64 (256 should be faster:
# an upper bound on time). The batch-invariance round on an H100 (2026-12-06, 1.5B, 64 prompts x
# 512 tokens, reference_results/step_costs/h100/batch_invariance) agrees: 11,136 tokens/s at vLLM's
# default settings, which were the fastest that passed the token check (plain kernels: 22,660).
BATCHED_TOKENS_PER_S = {"1.5b": 10_089.0, "7b": 4_441.0, "14b": 2_351.0, "tiny": 1_000.0}
# The batched pass's engine with batch-invariant kernels: start-up (mean of 167, 138, 180 s measured
# for 1.5B/7B/14B) and how much slower it decodes one request alone (the live batch-1 check) than
# plain kernels: 1.5B 3.0x (6.78 vs 2.25 ms per token, the H100 round above; 2.7x on the H200),
# 14B 3.5x (H200 grid); models without a measurement take 3.3.
BATCHED_ENGINE_START_S = 162.0
BATCH_INVARIANT_SLOWDOWN = {"1.5b": 3.0, "14b": 3.5}
BATCH_INVARIANT_SLOWDOWN_DEFAULT = 3.3
# Mean output tokens per request at a budget = mean of min(output length, budget) over real traces
# on MATH500 (../shared/data/traces, sampled at T=0.6): 1.5B from 100 traces (mean 2,760 tokens,
# 5% hit 16K), 7B from 20 traces (mean 4,785, 5% hit 16K). Greedy text repeats more than sampled
# text, so greedy runs may be longer; estimate_vs_actual shows by how much.
EXPECTED_OUTPUT_TOKENS = {
    "1.5b": {1024: 732, 2048: 1078, 4096: 1505, 8192: 2103, 16384: 2760},
    "7b": {1024: 994, 2048: 1825, 4096: 2658, 8192: 3304, 16384: 3965},
}
HIT_LARGEST_FRACTION = {"1.5b": 0.05, "7b": 0.05}  # share of traces at the table's largest budget
# No traces of these: 14B takes 7B's lengths (s1.1 models take their R1-Distill size's: length_stand_in).
LENGTH_STAND_IN = {"14b": "7b"}
# n-gram latency / greedy latency at real-trace acceptance, the worst budget of the step-cost model
# on the replayed traces (README, h200-realistic: 1.5B 1.30-1.47x, 7B 1.07x at 1K to 0.87x at 16K).
# 14B takes 7B's (its step without a draft costs less, 1.4x a plain step vs 1.9x: conservative).
# Other speculation methods: 1.0 (not measured).
NGRAM_LATENCY_FACTOR = {"1.5b": 1.47, "7b": 1.07, "14b": 1.07}
GRADE_S_PER_ITEM = 0.03  # math-verify + decode per output and budget, measured on 1.5B traces, 1 CPU core
# A speculative step without a draft / a plain step, both greedy with the probe's presence penalty,
# H100, vLLM 0.26.0 (reference_results/step_costs/h100, issue 22): 1.5B 4.0-4.4x, 7B 1.5x, 14B 1.2x.
# The H200's temperature-1 probes had priced them at 3.8x, 1.9x and 1.4x.
NO_DRAFT_STEP_FACTOR = {"1.5b": 4.2, "7b": 1.5, "14b": 1.2}
MATH500_PROBLEMS = 500
REFERENCE_GPUS = 4
NOTEBOOK_ORDER = ("01_greedy", "02_tp", "03_spec")
GOAL_RATIO = 0.2  # actual within 20% of the estimate
ESTIMATE_JSON, ESTIMATE_CSV = "estimate.json", "estimate.csv"


@dataclass(frozen=True)
class Node:
    """The machine an estimate is for."""

    label: str
    gpus: int  # devices runs are placed on; 1 for the CPU engine
    accelerator: str  # gpu or cpu
    reference: bool  # True: not this machine but the reference node
    max_tp: int = 0  # largest TP size it hosts; 0 = gpus (the CPU engine: usable cores)


REFERENCE_NODE = Node(f"{REFERENCE_GPUS}x NVIDIA H200 (reference node)", REFERENCE_GPUS, "gpu", True)


def node_for(config: StudyConfig, hardware: Hardware | None = None, reference: bool = False) -> Node:
    """This machine, or the reference node when asked or when real models meet a machine without GPUs."""

    hardware = hardware or detect()
    real_models = any(key != "tiny" for key in config.model_keys)
    if reference or (real_models and hardware.accelerator == "cpu"):
        return REFERENCE_NODE
    if hardware.accelerator == "cpu":
        return Node(hardware.describe(), 1, "cpu", False, hardware.cpu_cores)
    return Node(hardware.describe(), hardware.gpu_count, "gpu", False)


def ms_per_token(model_key: str, tensor_parallel_size: int) -> float:
    """Decode ms per token at concurrency 1 (s1.1 keys share their size's shape)."""
    if model_key == "tiny":
        return TINY_CPU_MS_PER_TOKEN
    size = size_key(model_key)
    return MS_PER_TOKEN.get((size, tensor_parallel_size), MS_PER_TOKEN.get((size, 1), 10.0))


def engine_start_s(tensor_parallel_size: int, accelerator: str = "gpu") -> float:
    if accelerator == "cpu":
        return CPU_ENGINE_START_S
    return ENGINE_START_S.get(tensor_parallel_size, max(ENGINE_START_S.values()))


def length_stand_in(model_key: str) -> str:
    """The model whose traces' output lengths ``model_key`` takes: its size's (``LENGTH_STAND_IN``)."""
    size = size_key(model_key)
    return LENGTH_STAND_IN.get(size, size)


def ngram_latency_factor(model_key: str, method: str) -> float:
    """n-gram latency / greedy latency for the model's size (``NGRAM_LATENCY_FACTOR``); 1.0 for
    any other method."""
    return NGRAM_LATENCY_FACTOR.get(size_key(model_key), 1.0) if method.startswith("ngram") else 1.0


def expected_tokens(model_key: str, budget: int, upper_bound: bool = False) -> float:
    """Mean output tokens of a request with this budget: the traces' table (interpolated; past its
    largest budget, the share that hit it keeps growing), or the budget itself when ``upper_bound``,
    for the tiny model and in system-only runs (random weights run to the budget)."""
    table = EXPECTED_OUTPUT_TOKENS.get(length_stand_in(model_key))
    if upper_bound or table is None:
        return float(budget)
    budgets, means = [0, *table], [0, *table.values()]
    if budget > budgets[-1]:
        share = HIT_LARGEST_FRACTION[length_stand_in(model_key)]
        return means[-1] + share * (budget - budgets[-1])
    return float(min(budget, np.interp(budget, budgets, means)))


def batched_tokens_per_s(model_key: str, tensor_parallel_size: int, concurrency: int) -> float:
    """Throughput at a concurrency: linear from the concurrency-1 rate up to the batched default."""
    single = 1000.0 / ms_per_token(model_key, tensor_parallel_size)
    saturated = BATCHED_TOKENS_PER_S.get(size_key(model_key), 2_500.0) * single / (1000.0 / ms_per_token(model_key, 1))
    return min(concurrency * single, saturated)


def decode_seconds(model_key: str, tensor_parallel_size: int, requests: int, tokens_per_request: float,
                   concurrency: int, longest_tokens: int) -> float:
    """Seconds to decode ``requests`` requests: one after another at concurrency 1; batched,
    total tokens / throughput but never less than the longest request alone."""
    single_s = tokens_per_request * ms_per_token(model_key, tensor_parallel_size) / 1000.0
    if concurrency <= 1:
        return requests * single_s
    throughput = batched_tokens_per_s(model_key, tensor_parallel_size, concurrency)
    tail_s = longest_tokens * ms_per_token(model_key, tensor_parallel_size) / 1000.0
    return max(requests * tokens_per_request / throughput, tail_s)


@dataclass(frozen=True)
class EstimatedRun:
    """One engine run of the study and what it is expected to cost."""

    notebook: str
    model: str
    method: str
    tensor_parallel_size: int
    role: str  # accuracy, latency or accuracy+latency (the full grid)
    problems: int  # problems this run sends
    requests: int
    concurrency: int
    tokens_per_request: float
    engine_s: float  # engine start + every request it sends (what segments.jsonl records as wall_s)
    grading_s: float
    fallback_s: float  # a latency subset whose prediction misses: the run on all problems instead

    @property
    def seconds(self) -> float:
        return self.engine_s + self.grading_s

    @property
    def key(self) -> str:
        """Matches a run folder's ``run_key``: model/method/tpN/accuracy or latency."""
        return run_key(asdict(self))


def problem_count(config: StudyConfig) -> int:
    """Problems the study draws, without loading the dataset (hub: MATH500's 500)."""
    source = resolve_source(config.dataset)
    if source == "builtin":
        available = sum(1 for line in BUILTIN_PROBLEMS_FILE.read_text().splitlines() if line.strip())
    elif source.endswith(".jsonl") and Path(source).expanduser().is_file():
        available = sum(1 for line in Path(source).expanduser().read_text().splitlines() if line.strip())
    else:
        available = MATH500_PROBLEMS
    return min(config.num_problems, available) if config.num_problems else available


def _run(config: StudyConfig, node: Node, *, notebook: str, model_key: str, method: str, tensor_parallel_size: int,
         role: str, problems: int, concurrency: int, upper_bound: bool) -> EstimatedRun:
    """One engine run of ``study_runs`` and what it costs on ``node``."""
    budget = config.max_budget
    tokens = expected_tokens(model_key, budget, upper_bound)
    requests = problems * config.samples_per_problem
    factor = ngram_latency_factor(model_key, method)
    invariant = role == "accuracy" and node.accelerator == "gpu"
    start = BATCHED_ENGINE_START_S if invariant else engine_start_s(tensor_parallel_size, node.accelerator)
    step_ms = ms_per_token(model_key, tensor_parallel_size)

    def decode(count: int, at_concurrency: int) -> float:
        return decode_seconds(model_key, tensor_parallel_size, count, tokens, at_concurrency, budget) * factor

    extra_s = 0.0
    if role == "accuracy":
        slowdown = BATCH_INVARIANT_SLOWDOWN.get(size_key(model_key), BATCH_INVARIANT_SLOWDOWN_DEFAULT)
        extra_s = decode(BATCH_CHECK_PROBLEMS, 1) * (slowdown if invariant else 1.0)
    elif len(config.budgets) > 1:
        smallest = min(config.budgets)
        extra_s = ONE_PASS_CHECK_PROBLEMS * expected_tokens(model_key, smallest, upper_bound) * step_ms / 1e3
    if method.startswith("ngram"):
        # The first probe runs to the largest budget (plan.RunPlan.probe_specs); no-draft steps cost more than plain ones.
        probe_tokens = budget + (PROBE_REQUESTS - 1) * min(budget, PROBE_MAX_TOKENS)
        extra_s += probe_tokens * step_ms * NO_DRAFT_STEP_FACTOR.get(size_key(model_key), 1.0) / 1e3
    graded = 0 if config.system_only else requests * len(config.budgets)
    engine_s = start + decode(requests, concurrency) + extra_s
    all_problems = problem_count(config)
    fallback_s = (start + decode(all_problems * config.samples_per_problem, concurrency) + extra_s
                  if role == "latency" and problems < all_problems else engine_s)
    return EstimatedRun(notebook, model_key, method, tensor_parallel_size, role, problems, requests, concurrency,
                        round(tokens, 1), round(engine_s, 1), round(graded * GRADE_S_PER_ITEM, 1), round(fallback_s, 1))


def study_runs(config: StudyConfig, node: Node, upper_bound: bool = False) -> tuple[list[EstimatedRun], list[str]]:
    """Every engine run of 01-03 for this config on this node, and the TP sizes skipped (with why)."""
    problems = problem_count(config)
    latency_problems = min(config.latency_problems, problems) if config.latency_problems else problems
    upper_bound = upper_bound or config.system_only
    sizes = sorted(set(config.tp_sizes))
    usable = [size for size in sizes if size <= (node.max_tp or node.gpus)]
    skipped = [f"TP={size} needs {size} devices; {node.label} has {node.max_tp or node.gpus}"
               for size in sizes if size not in usable]
    runs = []
    latency_role = "latency" if config.batch_concurrency else "accuracy+latency"
    for key in config.model_keys:
        if config.batch_concurrency:
            runs.append(_run(config, node, notebook="01_greedy", model_key=key, method=BATCHED_METHOD,
                             tensor_parallel_size=1, role="accuracy", problems=problems,
                             concurrency=config.batch_concurrency, upper_bound=upper_bound))
        for size in [1, *(s for s in usable if s != 1)]:
            runs.append(_run(config, node, notebook="01_greedy" if size == 1 else "02_tp", model_key=key,
                             method="baseline", tensor_parallel_size=size, role=latency_role,
                             problems=latency_problems, concurrency=config.concurrency, upper_bound=upper_bound))
        runs.append(_run(config, node, notebook="03_spec", model_key=key, method=_method_label(config),
                         tensor_parallel_size=1, role=latency_role, problems=latency_problems,
                         concurrency=config.concurrency, upper_bound=upper_bound))
    return runs, skipped


def _method_label(config: StudyConfig) -> str:
    return spec_method_label(config.spec_method, config.spec_acceptance != "engine")


def _list_schedule(runs: list[EstimatedRun], gpus: int, start_s: float) -> list[dict]:
    """Each run in turn on the aligned block of k GPUs that is free first (pairs for TP 2, all
    four for TP 4), starting when all k are free and, for a latency run, when its model's batched
    pass has ended (the subset's prediction needs that pass's tokens; results.latency_scope)."""
    free_at, placed, passes_end = [start_s] * gpus, [], {}
    for run in sorted(runs, key=lambda r: r.role != "accuracy"):  # stable: passes first, order kept
        width = min(run.tensor_parallel_size, gpus)
        ready = passes_end.get(run.model, start_s) if run.role == "latency" else start_s
        blocks = [list(range(first, first + width)) for first in range(0, gpus - width + 1, width)]
        block = min(blocks, key=lambda b: (max(ready, *(free_at[g] for g in b)), b[0]))
        start = max(ready, *(free_at[g] for g in block))
        if run.role == "accuracy":
            passes_end[run.model] = start + run.seconds
        for gpu in block:
            free_at[gpu] = start + run.seconds
        placed.append({"run": run, "gpus": block, "start_s": start, "end_s": start + run.seconds})
    return placed


def place(runs: list[EstimatedRun], gpus: int) -> list[dict]:
    """Runs side by side on ``gpus`` GPUs (``placement: ray``), one notebook after another (the
    chain runs them in order). Within a notebook, list scheduling longest run first, or widest
    first (TP 4 runs, then pairs, then single GPUs), whichever ends sooner; a model's latency runs
    wait for its batched pass. The plan's start order is the order to submit the runs in."""
    placed: list[dict] = []
    for notebook in NOTEBOOK_ORDER:
        start = max((p["end_s"] for p in placed), default=0.0)
        group = [r for r in runs if r.notebook == notebook]
        orders = (sorted(group, key=lambda r: (-r.seconds, -r.tensor_parallel_size)),
                  sorted(group, key=lambda r: (-r.tensor_parallel_size, -r.seconds)))
        schedules = [_list_schedule(order, gpus, start) for order in orders]
        placed += min(schedules, key=lambda s: max((p["end_s"] for p in s), default=start))
    return placed


def run_key(identity: dict) -> str:
    """The estimate's key of a run folder, from its ``run.json`` identity: the batched accuracy
    pass (method ``baseline-batched``, or any run at concurrency > 1) or a latency run (which also
    grades accuracy when there is no batched pass)."""
    batched = identity["method"] == BATCHED_METHOD or identity.get("concurrency", 1) > 1
    role = "accuracy" if batched else "latency"
    return f"{identity['model']}/{identity['method']}/tp{identity['tensor_parallel_size']}/{role}"
