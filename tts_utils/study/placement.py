"""Run a sweep's engine runs side by side on disjoint GPUs, placed by Ray (``placement: ray``).

``run_placed`` makes each ``RunPlan`` a Ray task that asks for ``num_gpus = TP size`` and calls
``run_one(plan)`` (``sweep.execute``); Ray alone decides where it runs: TP 1 runs one per GPU, TP 2
on pairs, TP 4 on four, across nodes when given a cluster. Without ``ray_address`` the kit starts a
local cluster and stops it at the end; on a CPU-only machine that cluster declares logical GPUs
(one per usable core) and each task's CPU engine is pinned to its own cores. A worker that dies is
retried (``MAX_RETRIES``) and the retry resumes from the run folder; a run that raises is recorded
by ``on_failure`` and the others go on; Ctrl-C cancels every task and keeps what is on disk.
Each attempt is logged in the run folder's ``placement.jsonl`` (node, GPUs, worker pid).
Used by ``sweep.run_sweep`` (notebooks 01-03, ``python -m tts_utils sweep``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tts_utils.errors import ConfigError
from tts_utils.hardware import detect
from tts_utils.paths import PACKAGE_DIR, REPO_ROOT, cache_dir, outputs_dir
from tts_utils.store import append_record, read_records

if TYPE_CHECKING:
    from tts_utils.study.plan import RunPlan

MAX_RETRIES = 2  # retries after a worker or node dies (not after an exception)
CANCEL_GRACE_S = 20.0  # after Ctrl-C, time for tasks to stop their engines before they are killed
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # plans and outcome rows are small; results live on disk
# Ray gives a local raylet a fixed 30 s to register (ray/_private/node.py); on a loaded 2-core
# machine it can miss that, so the kit starts the local cluster again, after stopping what was left.
LOCAL_START_ATTEMPTS = 3
# The raylet also stops itself when its agents take more than 30 s to write their ports (a loaded
# 2-core machine, seen in the suite: "Timed out waiting for file .../metrics_agent_port").
AGENT_WAIT_MS = 120_000
RAY_START_TIMEOUT = "timed out during startup"
ATTEMPTS_FILE = "placement.jsonl"
# What the workers need of the driver's environment (a remote node has none of it).
PASSED_PREFIXES = ("TTS_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "VLLM_", "TOKENIZERS_")
PASSED_NAMES = ("PYTHONPATH", "CUDA_DEVICE_ORDER", "DO_NOT_TRACK", "OMP_NUM_THREADS")
PATH_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE")
FAILED = "failed (see failure.json)"

OnFailure = Callable[[Any, BaseException], None]


def run_placed(
    plans: list[RunPlan],
    run_one: Callable[[RunPlan], str],
    *,
    ray_address: str = "",
    logical_gpus: int | None = None,
    on_failure: OnFailure | None = None,
    on_outcome: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run every plan as a Ray task on ``tensor_parallel_size`` GPUs; one outcome row per plan.

    Args:
        plans: the runs; each must fit one node (checked before anything starts, else ConfigError).
        run_one: runs one plan to completion, resuming from disk (``sweep.execute``).
        ray_address: a Ray cluster to use (``ray://host:10001`` or ``host:6379``); "" starts a local
            one. With a cluster, the outputs and cache dirs (``TTS_OUTPUTS_DIR``, ``TTS_CACHE_DIR``)
            and the model files must be on a filesystem every node sees at the same path.
        logical_gpus: GPUs the local cluster declares on a CPU-only machine (default: one per usable
            core); ignored where Ray finds GPUs, and with ``ray_address``.
        on_failure: ``(plan, error)`` for a run that raised or whose worker died ``MAX_RETRIES + 1``
            times (``sweep._record_failure``); also for the runs cancelled by Ctrl-C.
        on_outcome: called with each row as its run ends (rows arrive in the order runs end).

    Returns rows in plan order: ``run_name``, ``outcome``, ``seconds`` (last attempt), ``attempts``,
    ``node``, ``gpu_ids``, ``cpu_binding``, ``started_at``/``finished_at`` (epoch s), ``error``.
    """
    import ray

    if not plans:
        return []
    with cluster(ray_address, logical_gpus):  # within a sweep's own cluster: joins it, stops nothing
        gpus_per_node = _gpus_per_node()
        _check_fits(plans, gpus_per_node)
        if ray_address:
            _check_shared_outputs(gpus_per_node)
        sweep_id = uuid.uuid4().hex[:12]
        env = worker_environment()
        task = ray.remote(max_retries=MAX_RETRIES, max_calls=1, num_cpus=0, runtime_env={"env_vars": env})(_attempt)
        refs = {task.options(num_gpus=plan.tensor_parallel_size, name=plan.run_name).remote(
                    plan, run_one, on_failure, sweep_id, max(gpus_per_node.values()), env.get("OMP_NUM_THREADS")):
                index for index, plan in enumerate(plans)}
        rows: dict[int, dict] = {}
        pending = list(refs)
        submitted = time.monotonic()
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    plan = plans[refs[ref]]
                    row = _collect(ref, plan, on_failure, time.monotonic() - submitted)
                    row["attempts"] = max(1, _attempts(plan, sweep_id))
                    rows[refs[ref]] = row
                    if on_outcome is not None:
                        on_outcome(row)
        except KeyboardInterrupt as interrupt:
            _cancel(pending)
            for ref in pending:
                if on_failure is not None and _attempts(plans[refs[ref]], sweep_id):  # started, now incomplete
                    on_failure(plans[refs[ref]], interrupt)
            raise
        return [rows[index] for index in range(len(plans))]


@contextmanager
def cluster(ray_address: str = "", logical_gpus: int | None = None) -> Iterator[None]:
    """One cluster for several ``run_placed`` calls (01's batched wave, then its latency wave): joined
    or started once, stopped (a local one) at the end, instead of once per call."""
    import ray

    started_here = _connect(ray_address, logical_gpus)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()  # stops a local cluster; only disconnects from a remote one


def worker_environment() -> dict[str, str]:
    """The driver's variables a worker needs (kit dirs, hub and engine settings), paths absolute."""
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_PREFIXES) or k in PASSED_NAMES}
    env.pop("VLLM_CPU_OMP_THREADS_BIND", None)  # set per task, from the cores it got
    env["TTS_OUTPUTS_DIR"] = str(outputs_dir())
    env["TTS_CACHE_DIR"] = str(cache_dir())
    for name in PATH_VARIABLES:
        if env.get(name):
            env[name] = os.path.abspath(os.path.expanduser(env[name]))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _connect(ray_address: str, logical_gpus: int | None) -> bool:
    """Join the given cluster or start a local one; False if this process already had one."""
    import ray

    if ray.is_initialized():
        return False
    # Ray's own logs stay in its session folder; task errors still reach the caller as exceptions.
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if ray_address:  # the kit's code travels with the job: every node runs the driver's version
        ray.init(address=ray_address, runtime_env={"py_modules": [str(PACKAGE_DIR)]}, **quiet)
        return True
    num_gpus = (logical_gpus or len(os.sched_getaffinity(0))) if detect().accelerator == "cpu" else None
    _start_local(dict(address="local", num_gpus=num_gpus, include_dashboard=False,
                      object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet))
    return True


def _start_local(init_args: dict[str, Any]) -> None:
    """``ray.init`` of a local cluster, started again (up to ``LOCAL_START_ATTEMPTS``) when Ray's
    fixed wait for its raylet runs out; the processes a failed attempt left are stopped first."""
    import psutil
    import ray

    os.environ.setdefault("RAY_agent_register_timeout_ms", str(AGENT_WAIT_MS))  # read by the raylet it starts
    me = psutil.Process()
    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        before = {child.pid for child in me.children(recursive=True)}
        try:
            ray.init(**init_args)
            return
        except Exception as error:
            if RAY_START_TIMEOUT not in str(error) or attempt == LOCAL_START_ATTEMPTS:
                raise
            ray.shutdown()
            left = [child for child in me.children(recursive=True) if child.pid not in before]
            for child in left:
                child.kill()
            psutil.wait_procs(left, timeout=10)
            print(f"!! placement: the local Ray cluster did not register within Ray's 30 s (attempt {attempt} "
                  f"of {LOCAL_START_ATTEMPTS}, a loaded machine?); stopped its {len(left)} process(es), "
                  "starting it again", file=sys.stderr)


def _gpus_per_node() -> dict[str, float]:
    import ray

    return {node["NodeID"]: node["Resources"].get("GPU", 0.0) for node in ray.nodes() if node["Alive"]}


def _check_fits(plans: list[RunPlan], gpus_per_node: dict[str, float]) -> None:
    """Ray would wait forever for a task no node can hold: refuse it before anything starts."""
    largest = max(gpus_per_node.values(), default=0.0)
    for plan in plans:
        if plan.tensor_parallel_size > largest:
            raise ConfigError(f"{plan.run_name} needs {plan.tensor_parallel_size} GPUs on one node (TP "
                              f"{plan.tensor_parallel_size}) but the largest node of the Ray cluster has "
                              f"{largest:g}; nothing was started")


def _sees(path: str) -> bool:
    return os.path.exists(path)


def _check_shared_outputs(gpus_per_node: dict[str, float]) -> None:
    """Every GPU node must see the outputs dir: results, resume and the study lock live there."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = outputs_dir() / f".placement-check-{uuid.uuid4().hex[:8]}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    try:
        probe = ray.remote(num_cpus=0)(_sees)
        nodes = [node for node, gpus in gpus_per_node.items() if gpus > 0]
        seen = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                        .remote(str(marker)) for node in nodes])
    finally:
        marker.unlink(missing_ok=True)
    blind = [node[:8] for node, ok in zip(nodes, seen) if not ok]
    if blind:
        raise ConfigError(f"Ray node(s) {', '.join(blind)} do not see {outputs_dir()}: with ray_address, "
                          "TTS_OUTPUTS_DIR, TTS_CACHE_DIR and the models must be on a filesystem shared by "
                          "every node at the same path")


def cpu_binding(ids: list[str], logical_gpus: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for a CPU engine given logical GPUs ``ids`` on a node that
    declares ``logical_gpus``: each logical GPU owns its share of the usable cores, one TP rank each."""
    cores = sorted(os.sched_getaffinity(0))
    per_gpu = max(1, len(cores) // max(1, logical_gpus))
    groups = []
    for gpu in ids:
        chunk = cores[int(gpu) * per_gpu:(int(gpu) + 1) * per_gpu] or [cores[int(gpu) % len(cores)]]
        groups.append(f"{chunk[0]}-{chunk[-1]}" if len(chunk) > 1 else str(chunk[0]))
    return "|".join(groups)


def _attempt(plan: RunPlan, run_one: Callable[[RunPlan], str], on_failure: OnFailure | None, sweep_id: str,
             logical_gpus: int, omp_num_threads: str | None) -> dict:
    """In the worker: one attempt at one plan on the GPUs Ray gave it."""
    import ray

    context = ray.get_runtime_context()
    ids = [str(i) for i in context.get_accelerator_ids().get("GPU", [])]
    if omp_num_threads is None:  # Ray sets OMP_NUM_THREADS=1 in workers; the sequential path does not
        os.environ.pop("OMP_NUM_THREADS", None)
    binding = None
    if detect().accelerator == "cpu":
        # Logical GPUs: the engine gets its own cores instead of a GPU (engine.py keeps this value).
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        binding = os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_binding(ids, logical_gpus)
    else:
        # Ray sets CUDA_VISIBLE_DEVICES to the GPUs it gave; NVML (energy) numbers GPUs by PCI bus.
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    row = {"run_name": plan.run_name, "outcome": None, "seconds": None, "attempts": 1,
           "node": ray.util.get_node_ip_address(), "gpu_ids": ",".join(ids), "cpu_binding": binding,
           "started_at": time.time(), "finished_at": None, "error": None}
    folder = plan.folder()
    if not folder.is_complete():
        folder.path.mkdir(parents=True, exist_ok=True)
        append_record(folder.path / ATTEMPTS_FILE, {"sweep_id": sweep_id, "pid": os.getpid(),
                                                    "node_id": context.get_node_id(), **row})
    try:
        row["outcome"] = run_one(plan)
    except Exception as error:
        if on_failure is not None:
            on_failure(plan, error)
        row["outcome"], row["error"] = FAILED, (str(error).splitlines() or [type(error).__name__])[0]
    row["finished_at"] = time.time()
    row["seconds"] = round(row["finished_at"] - row["started_at"], 1)
    return row


def _collect(ref: Any, plan: RunPlan, on_failure: OnFailure | None, seconds: float) -> dict:
    """The row a finished task returned, or a failure row if its worker died for the last time."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        cause = getattr(error, "cause", None)  # RayTaskError: what the task itself raised
        cause = cause if isinstance(cause, Exception) else error
        if on_failure is not None:
            on_failure(plan, cause)
        return {"run_name": plan.run_name, "outcome": FAILED, "seconds": round(seconds, 1), "attempts": None,
                "node": None, "gpu_ids": None, "cpu_binding": None, "started_at": None, "finished_at": None,
                "error": (str(cause).splitlines() or [type(cause).__name__])[0]}


def _attempts(plan: RunPlan, sweep_id: str) -> int:
    """Attempts this sweep made at a plan (0: never started, or already complete)."""
    path = plan.folder().path / ATTEMPTS_FILE
    records = read_records(path, repair=True) if path.exists() else []
    return sum(r.get("sweep_id") == sweep_id for r in records)


def _cancel(pending: list) -> None:
    """Ask running tasks to stop (their engines stop with them), then kill what is left."""
    import ray

    for ref in pending:
        ray.cancel(ref)
    if pending:
        _, left = ray.wait(pending, num_returns=len(pending), timeout=CANCEL_GRACE_S)
        for ref in left:
            ray.cancel(ref, force=True)
