"""What a study will cost before it runs, and afterwards how close that was.

``estimate_study`` (00_setup) lists every run of 01-03 (the batched accuracy pass, each latency
configuration), the seconds each is expected to take, and places them on the machine's GPUs
(``placement: ray``: list scheduling, longest first, a TP-k run holding k GPUs) or one after
another: wall time, GPU-hours and the plan as a table. On a machine without GPUs, a profile of real
models is estimated for the reference node, 4x H200, and the estimate says so.
``write_estimate`` keeps it in the study folder and ``estimate_vs_actual`` (04_analysis) compares it
with the engine sessions the run folders record. ``estimate_plans`` prices planned runs (dry runs).

A run's seconds = engine start + requests x expected tokens x ms/token (concurrency 1), or for a
batched pass its tokens / batched throughput (never less than its longest request alone), plus
grading. Every constant below names its source; the batched throughputs are stated defaults.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tts_utils.cli import study_config, study_parser
from tts_utils.data import resolve_source
from tts_utils.paths import BUILTIN_PROBLEMS_FILE, study_dir
from tts_utils.study.plan import BATCHED_METHOD, spec_method_label

if TYPE_CHECKING:
    from tts_utils.config import StudyConfig
    from tts_utils.hardware import Hardware
    from tts_utils.study.plan import RunPlan

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
# an upper bound on time).
BATCHED_TOKENS_PER_S = {"1.5b": 10_089.0, "7b": 4_441.0, "14b": 2_351.0, "tiny": 1_000.0}
BATCHED_MEASURED = True  # printed with the estimate
# The batched pass's engine with batch-invariant kernels: start-up (mean of 167, 138, 180 s measured
# for 1.5B/7B/14B) and how much slower it decodes one request alone (the live batch-1 check):
# 2.7x (1.5B) to 3.5x (14B) measured, from the same runs.
BATCHED_ENGINE_START_S = 162.0
BATCH_INVARIANT_SLOWDOWN = 3.3
# Mean output tokens per request at a budget = mean of min(output length, budget) over real traces
# on MATH500 (../shared/data/traces, sampled at T=0.6): 1.5B from 100 traces (mean 2,760 tokens,
# 5% hit 16K), 7B from 20 traces (mean 4,785, 5% hit 16K). Greedy text repeats more than sampled
# text, so greedy runs may be longer; estimate_vs_actual shows by how much.
EXPECTED_OUTPUT_TOKENS = {
    "1.5b": {1024: 732, 2048: 1078, 4096: 1505, 8192: 2103, 16384: 2760},
    "7b": {1024: 994, 2048: 1825, 4096: 2658, 8192: 3304, 16384: 3965},
}
HIT_LARGEST_FRACTION = {"1.5b": 0.05, "7b": 0.05}  # share of traces at the table's largest budget
# No traces of these: 14B takes 7B's lengths; s1.1 models take their R1-Distill size's.
LENGTH_STAND_IN = {"14b": "7b", "s1.1-1.5b": "1.5b", "s1.1-7b": "7b", "s1.1-14b": "7b"}
# n-gram latency / greedy latency at real-trace acceptance, the worst budget of the step-cost model
# on the replayed traces (README, h200-realistic: 1.5B 1.30-1.47x, 7B 1.07x at 1K to 0.87x at 16K).
# 14B takes 7B's (its step without a draft costs less, 1.4x a plain step vs 1.9x: conservative).
# Other speculation methods: 1.0 (not measured).
NGRAM_LATENCY_FACTOR = {"1.5b": 1.47, "7b": 1.07, "14b": 1.07}
GRADE_S_PER_ITEM = 0.03  # math-verify + decode per output and budget, measured on 1.5B traces, 1 CPU core
ONE_PASS_CHECK_REQUESTS = 2  # session.verify_one_pass: re-runs at the smallest budget
BATCH_CHECK_REQUESTS = 3  # the batched pass re-runs this many problems at concurrency 1
PROBE_REQUESTS, PROBE_MAX_TOKENS = 2, 1024  # the n-gram run's no-draft probes (sweep.py)
# A speculative step without a draft / a plain step, H200 (reference_results/runs/h200-realistic).
NO_DRAFT_STEP_FACTOR = {"1.5b": 3.8, "7b": 1.9, "14b": 1.4}
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
    from tts_utils.hardware import detect

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
    size = model_key.removeprefix("s1.1-")
    return MS_PER_TOKEN.get((size, tensor_parallel_size), MS_PER_TOKEN.get((size, 1), 10.0))


def engine_start_s(tensor_parallel_size: int, accelerator: str = "gpu") -> float:
    if accelerator == "cpu":
        return CPU_ENGINE_START_S
    return ENGINE_START_S.get(tensor_parallel_size, max(ENGINE_START_S.values()))


def expected_tokens(model_key: str, budget: int, upper_bound: bool = False) -> float:
    """Mean output tokens of a request with this budget: the traces' table (interpolated; past its
    largest budget, the share that hit it keeps growing), or the budget itself when ``upper_bound``,
    for the tiny model and in system-only runs (random weights run to the budget)."""
    table = EXPECTED_OUTPUT_TOKENS.get(LENGTH_STAND_IN.get(model_key, model_key))
    if upper_bound or table is None:
        return float(budget)
    budgets, means = [0, *table], [0, *table.values()]
    if budget > budgets[-1]:
        share = HIT_LARGEST_FRACTION[LENGTH_STAND_IN.get(model_key, model_key)]
        return means[-1] + share * (budget - budgets[-1])
    return float(min(budget, np.interp(budget, budgets, means)))


def batched_tokens_per_s(model_key: str, tensor_parallel_size: int, concurrency: int) -> float:
    """Throughput at a concurrency: linear from the concurrency-1 rate up to the batched default."""
    size = "tiny" if model_key == "tiny" else model_key.removeprefix("s1.1-")
    single = 1000.0 / ms_per_token(model_key, tensor_parallel_size)
    saturated = BATCHED_TOKENS_PER_S.get(size, 2_500.0) * single / (1000.0 / ms_per_token(model_key, 1))
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


def _run(config: StudyConfig, node: Node, notebook: str, key: str, method: str, size: int, role: str,
         problems: int, concurrency: int, upper_bound: bool) -> EstimatedRun:
    budget = config.max_budget
    tokens = expected_tokens(key, budget, upper_bound)
    requests = problems * config.samples_per_problem
    factor = NGRAM_LATENCY_FACTOR.get(key.removeprefix("s1.1-"), 1.0) if method.startswith("ngram") else 1.0
    invariant = role == "accuracy" and node.accelerator == "gpu"
    start = BATCHED_ENGINE_START_S if invariant else engine_start_s(size, node.accelerator)

    def decode(count: int, at_concurrency: int) -> float:
        return decode_seconds(key, size, count, tokens, at_concurrency, budget) * factor

    extra_s = 0.0
    if role == "accuracy":
        extra_s = decode(BATCH_CHECK_REQUESTS, 1) * (BATCH_INVARIANT_SLOWDOWN if invariant else 1.0)
    elif len(config.budgets) > 1:
        smallest = min(config.budgets)
        extra_s = ONE_PASS_CHECK_REQUESTS * expected_tokens(key, smallest, upper_bound) * ms_per_token(key, size) / 1e3
    if method.startswith("ngram"):
        # The first probe runs to the largest budget (plan.RunPlan.probe_specs); no-draft steps cost more than plain ones.
        probe_tokens = budget + (PROBE_REQUESTS - 1) * min(budget, PROBE_MAX_TOKENS)
        extra_s += probe_tokens * ms_per_token(key, size) * NO_DRAFT_STEP_FACTOR.get(key.removeprefix("s1.1-"), 1.0) / 1e3
    graded = 0 if config.system_only else requests * len(config.budgets)
    engine_s = start + decode(requests, concurrency) + extra_s
    all_problems = problem_count(config)
    fallback_s = (start + decode(all_problems * config.samples_per_problem, concurrency) + extra_s
                  if role == "latency" and problems < all_problems else engine_s)
    return EstimatedRun(notebook, key, method, size, role, problems, requests, concurrency, round(tokens, 1),
                        round(engine_s, 1), round(graded * GRADE_S_PER_ITEM, 1), round(fallback_s, 1))


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
            runs.append(_run(config, node, "01_greedy", key, BATCHED_METHOD, 1, "accuracy", problems,
                             config.batch_concurrency, upper_bound))
        for size in [1, *(s for s in usable if s != 1)]:
            runs.append(_run(config, node, "01_greedy" if size == 1 else "02_tp", key, "baseline", size,
                             latency_role, latency_problems, config.concurrency, upper_bound))
        runs.append(_run(config, node, "03_spec", key, _method_label(config), 1, latency_role, latency_problems,
                         config.concurrency, upper_bound))
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


@dataclass
class StudyEstimate:
    """The whole study's expected cost on one node, and its plan."""

    study: str
    node: Node
    placement: str
    tokens: str  # expected (trace lengths) or upper bound (every request to the largest budget)
    runs: list[EstimatedRun]
    skipped: list[str]
    plan: pd.DataFrame  # one row per run in start order: minutes, GPUs, and all_problems_min = the
    # run if its subset's prediction misses (latency measured on all problems)
    wall_s: float  # of the chosen placement
    sequential_wall_s: float
    parallel_wall_s: float
    device_hours: float  # device-seconds the runs hold / 3600 (GPUs; the CPU engine counts 1)
    node_device_hours: float  # wall x the node's devices / 3600: what a rented node bills
    fallback_extra_s: float  # added to the sequential wall if every latency subset had to run on all problems

    def describe(self) -> str:
        """The lines 00_setup prints above the plan table."""
        lines = []
        if self.node.reference:
            lines.append("!" * 100 + f"\n!! NOT THIS MACHINE: estimated for the reference node, {self.node.label}"
                         "\n" + "!" * 100)
        unit = "GPU" if self.node.accelerator == "gpu" else "device"
        accuracy = [r for r in self.runs if r.role == "accuracy"]
        subset = [r for r in self.runs if r.role == "latency" and r.fallback_s > r.engine_s]
        lines += [
            f"{self.study}: {len(self.runs)} engine runs on {self.node.label}, placement {self.placement}; "
            f"tokens per request: {self.tokens}",
            f"wall time {self.wall_s / 3600:.2f} h (one after another {self.sequential_wall_s / 3600:.2f} h"
            + (f", side by side on {self.node.gpus} GPUs {self.parallel_wall_s / 3600:.2f} h" if unit == "GPU" else "")
            + f"); {self.device_hours:.2f} {unit}-hours held by runs, {self.node_device_hours:.2f} for the whole node",
        ]
        if accuracy:
            lines.append(f"accuracy: one batched pass per model at TP 1, concurrency {accuracy[0].concurrency}, "
                         f"{accuracy[0].problems} problems (batched throughput: "
                         f"{'measured' if BATCHED_MEASURED else 'STATED DEFAULT, NOT MEASURED'})")
        if subset:
            lines.append(f"latency: concurrency 1 on a subset of {subset[0].problems} problems per configuration, "
                         f"predicted for all; a miss beyond the tolerance re-measures on all problems "
                         f"(if every one missed: +{self.fallback_extra_s / 3600:.2f} h of runs)")
        if unit == "GPU" and "H200" not in self.node.label:
            lines.append("!! per-token times and engine starts are H200 measurements; this GPU will differ")
        lines += [f"skipped: {reason}" for reason in self.skipped]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"study": self.study, "node": asdict(self.node), "placement": self.placement, "tokens": self.tokens,
                "wall_s": self.wall_s, "sequential_wall_s": self.sequential_wall_s,
                "parallel_wall_s": self.parallel_wall_s, "device_hours": self.device_hours,
                "node_device_hours": self.node_device_hours, "fallback_extra_s": self.fallback_extra_s,
                "skipped": self.skipped, "batched_throughput_measured": BATCHED_MEASURED,
                "estimated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "runs": [{"key": run.key, **asdict(run)} for run in self.runs],
                "plan": self.plan.to_dict(orient="records")}


def estimate_study(config: StudyConfig, hardware: Hardware | None = None, reference: bool = False,
                   upper_bound: bool = False) -> StudyEstimate:
    """The study's runs, their expected seconds, and where they go on this machine (or the
    reference node: when ``reference``, or real models on a machine without GPUs)."""
    node = node_for(config, hardware, reference)
    runs, skipped = study_runs(config, node, upper_bound)
    placed = place(runs, node.gpus)
    sequential = sum(r.seconds for r in runs)
    parallel = max((p["end_s"] for p in placed), default=0.0)
    placement = config.placement if node.accelerator == "gpu" else "sequential"
    if placement != "ray":
        clock, placed = 0.0, []
        for notebook in NOTEBOOK_ORDER:
            for run in (r for r in runs if r.notebook == notebook):
                size = min(run.tensor_parallel_size, node.gpus)
                placed.append({"run": run, "gpus": list(range(size)), "start_s": clock, "end_s": clock + run.seconds})
                clock += run.seconds
    wall = parallel if placement == "ray" else sequential
    plan = pd.DataFrame([{
        "notebook": p["run"].notebook, "run": p["run"].key, "problems": p["run"].problems,
        "concurrency": p["run"].concurrency, "tokens_per_request": p["run"].tokens_per_request,
        "engine_min": round(p["run"].engine_s / 60, 1), "grading_min": round(p["run"].grading_s / 60, 1),
        "all_problems_min": round(p["run"].fallback_s / 60, 1), "gpus": ",".join(map(str, p["gpus"])),
        "start_min": round(p["start_s"] / 60, 1), "end_min": round(p["end_s"] / 60, 1),
    } for p in placed]).sort_values(["start_min", "gpus"], ignore_index=True) if placed else pd.DataFrame()
    return StudyEstimate(
        study=config.study, node=node, placement=placement,
        tokens=_tokens_source(config, upper_bound), runs=runs, skipped=skipped, plan=plan, wall_s=wall,
        sequential_wall_s=sequential, parallel_wall_s=parallel,
        device_hours=sum(r.seconds * min(r.tensor_parallel_size, node.gpus) for r in runs) / 3600.0,
        node_device_hours=wall * node.gpus / 3600.0,
        fallback_extra_s=sum(r.fallback_s - r.engine_s for r in runs),
    )


def _tokens_source(config: StudyConfig, upper_bound: bool) -> str:
    if upper_bound or config.system_only:
        return "upper bound, every request runs to the largest budget"
    sources = []
    for key in config.model_keys:
        table = LENGTH_STAND_IN.get(key, key)
        sources.append(f"{key}: the largest budget" if table not in EXPECTED_OUTPUT_TOKENS
                       else f"{key}: {table} traces' mean" + ("" if table == key else " (stand-in)"))
    return "; ".join(sources)


def write_estimate(estimate: StudyEstimate) -> list[Path]:
    """``estimate.json`` (totals and plan, read by ``estimate_vs_actual``) and ``estimate.csv``
    (the plan table) in the study folder."""
    from tts_utils.store import atomic_write_json, atomic_write_text

    folder = study_dir(estimate.study)
    atomic_write_json(folder / ESTIMATE_JSON, estimate.to_dict())
    atomic_write_text(folder / ESTIMATE_CSV, estimate.plan.to_csv(index=False))
    return [folder / ESTIMATE_JSON, folder / ESTIMATE_CSV]


def run_key(identity: dict) -> str:
    """The estimate's key of a run folder, from its ``run.json`` identity: the batched accuracy
    pass (method ``baseline-batched``, or any run at concurrency > 1) or a latency run (which also
    grades accuracy when there is no batched pass)."""
    batched = identity["method"] == BATCHED_METHOD or identity.get("concurrency", 1) > 1
    role = "accuracy" if batched else "latency"
    return f"{identity['model']}/{identity['method']}/tp{identity['tensor_parallel_size']}/{role}"


def _parse_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp() if stamp else float("nan")


def estimate_vs_actual(study: str) -> pd.DataFrame:
    """Estimated vs actual seconds per run and for the whole study.

    Actual per run: the sum of ``wall_s`` (else ``engine_startup_s``, marked) of its engine sessions
    in ``segments.jsonl``; the study's: first session start to last session end. ``ratio`` =
    actual / estimate; ``within_goal``: within 20%. Rows for runs on one side only have NaN there;
    ``note`` says why (also when a latency subset fell back to measuring every problem).
    Raises FileNotFoundError without the study's estimate.json (written by 00_setup).
    """
    from tts_utils.store import RunFolder, read_json

    source = study_dir(study) / ESTIMATE_JSON
    if not source.exists():
        raise FileNotFoundError(f"{source}: no estimate of study {study!r}; 00_setup writes it (make setup-report)")
    estimate = read_json(source)
    expected: dict[str, float] = {}
    for run in estimate["runs"]:
        name = run_key(run)
        expected[name] = expected.get(name, 0.0) + run["engine_s"]
    actual: dict[str, float] = {}
    incomplete: dict[str, str] = {}
    spans = []
    for folder in sorted(p for p in study_dir(study).iterdir() if (p / "run.json").exists()):
        run = RunFolder(folder)
        name = run_key(read_json(run.run_file)["identity"])
        scope = run.status().get("latency_scope", "")
        if scope.startswith("every problem") and "latency_problems" in read_json(run.run_file)["identity"]:
            incomplete[name] = scope  # a subset run that measured everything: why it took longer
        for segment in run.segments():
            wall = segment.get("wall_s")
            if wall is None:
                wall = segment.get("engine_startup_s") or 0.0
                incomplete[name] = "wall_s not recorded: engine start only"
            actual[name] = actual.get(name, 0.0) + wall
            started = _parse_time(segment.get("started_at", ""))
            spans.append((started, started + wall))
    rows = [{"run": name, "estimated_s": expected.get(name, float("nan")), "actual_s": actual.get(name, float("nan")),
             "note": incomplete.get(name, "" if name in expected and name in actual
                                    else "not in the estimate" if name in actual else "no run folder")}
            for name in sorted(set(expected) | set(actual))]
    study_wall = (max(end for _, end in spans) - min(start for start, _ in spans)) if spans else float("nan")
    matched = [r for r in rows if not np.isnan(r["estimated_s"]) and not np.isnan(r["actual_s"])]
    rows.append({"run": "all runs (engine seconds, matched runs)", "estimated_s": sum(r["estimated_s"] for r in matched),
                 "actual_s": sum(r["actual_s"] for r in matched), "note": ""})
    rows.append({"run": f"study wall time ({estimate['placement']}; estimate includes grading)",
                 "estimated_s": estimate["wall_s"], "actual_s": study_wall,
                 "note": "first engine start to last engine stop (a resumed study includes its pauses)"})
    frame = pd.DataFrame(rows)
    frame["ratio"] = frame["actual_s"] / frame["estimated_s"]
    frame["within_goal"] = pd.Series([None if np.isnan(ratio) else bool(abs(ratio - 1.0) <= GOAL_RATIO)
                                      for ratio in frame["ratio"]], dtype=object)
    return frame


def estimate_plans(plans: list[RunPlan], accelerator: str = "gpu") -> pd.DataFrame:
    """One row per planned run (dry runs): requests, the token upper bound, and expected hours and
    device-hours at the expected output lengths (``EXPECTED_OUTPUT_TOKENS``)."""
    rows = []
    for plan in plans:
        requests = len(plan.request_specs("one-pass"))
        budget = max(plan.budgets)
        tokens = expected_tokens(plan.model.key, budget, upper_bound=plan.system_only)
        factor = NGRAM_LATENCY_FACTOR.get(plan.model.key.removeprefix("s1.1-"), 1.0) if "ngram" in plan.method else 1.0
        seconds = engine_start_s(plan.tensor_parallel_size, accelerator) + factor * decode_seconds(
            plan.model.key, plan.tensor_parallel_size, requests, tokens, plan.concurrency, budget)
        rows.append({
            "run_name": plan.run_name, "model": plan.model.key, "method": plan.method,
            "tensor_parallel_size": plan.tensor_parallel_size, "requests": requests,
            "max_output_tokens": requests * budget, "expected_output_tokens": round(requests * tokens),
            "expected_hours": seconds / 3600.0,
            "expected_device_hours": seconds * plan.tensor_parallel_size / 3600.0,
            "already_complete": plan.folder().is_complete(),
        })
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m tts_utils.study.estimate [--profile P] [--set k=v] [--reference] [--upper-bound] [--write]``:
    the study estimate and its plan, without Jupyter (written to the study folder with --write)."""
    import sys

    from tts_utils.config import ConfigError

    parser = study_parser("python -m tts_utils.study.estimate", main.__doc__)
    parser.add_argument("--reference", action="store_true", help="estimate for the reference node, 4x H200")
    parser.add_argument("--upper-bound", action="store_true", help="every request runs to the largest budget")
    parser.add_argument("--write", action="store_true",
                        help="also write estimate.json/.csv to the study folder, as 00_setup does")
    args = parser.parse_args(argv)
    try:
        config = study_config(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    estimate = estimate_study(config, reference=args.reference, upper_bound=args.upper_bound)
    print(estimate.describe())
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(estimate.plan.to_string(index=False))
    if args.write:
        for path in write_estimate(estimate):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
