"""Start and stop a vLLM OpenAI-compatible server for one configuration.

``VLLMServer`` is a context manager: it starts the server (``python -m
vllm.entrypoints.openai.api_server``, which works for both the GPU ``vllm`` package and the CPU
build) without a shell, in its own process group, bound to 127.0.0.1 on a free port with a
per-launch API key; waits for ``/health``; fails fast with the cause and the log tail if the
process dies; and kills the whole group on exit, error or interrupt. Used by sweep.py (01-03).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from tts_utils.errors import EngineStartError
from tts_utils.hardware import detect

PORT_RETRIES = 2
# A user's own compilation flags (extra_engine_args) replace the CPU engine's --enforce-eager.
COMPILE_FLAGS = ("--enforce-eager", "--compilation-config", "-cc", "-O")


@dataclass(frozen=True)
class SpeculativeConfig:
    """Speculative decoding; n-gram (prompt lookup) with the paper's settings by default.

    ``synthetic_acceptance_rates`` (per draft position, unconditional, non-increasing) switch the
    engine to vLLM's synthetic rejection sampling: drafts are accepted at those rates whatever
    the weights, so random-weight runs time speculation at a chosen, realistic acceptance.
    """

    num_speculative_tokens: int = 5
    prompt_lookup_min: int = 1
    prompt_lookup_max: int = 4
    synthetic_acceptance_rates: tuple[float, ...] | None = None
    method: str = "ngram"  # or draft_model, eagle3 (drafter in draft_model_path), suffix
    draft_model_path: str | None = None
    heterogeneous_vocab: bool = False  # draft_model whose vocabulary size differs from the target's

    def to_engine_json(self) -> str:
        fields: dict = {"method": self.method, "num_speculative_tokens": self.num_speculative_tokens}
        if self.method == "ngram":
            fields.update(prompt_lookup_min=self.prompt_lookup_min, prompt_lookup_max=self.prompt_lookup_max)
        if self.draft_model_path is not None:
            fields["model"] = self.draft_model_path
        if self.heterogeneous_vocab:
            fields["use_heterogeneous_vocab"] = True
        if self.synthetic_acceptance_rates is not None:
            fields.update(rejection_sample_method="synthetic",
                          synthetic_acceptance_rates=list(self.synthetic_acceptance_rates))
        return json.dumps(fields)


@dataclass(frozen=True)
class EngineConfig:
    """Everything that changes how the engine serves, hence part of every run's identity."""

    model_path: str
    served_name: str
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    max_model_len: int = 4096
    speculative: SpeculativeConfig | None = None
    load_format: str = "auto"
    seed: int = 0
    trust_remote_code: bool = False
    gpu_memory_utilization: float = 0.9
    cpu_kv_cache_gib: int = 2  # CPU engine; 0 sizes the KV cache by gpu_memory_utilization of RAM
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    # vLLM's CUDA-graph mode ("" = the engine's default). FULL also captures the one-token step a
    # speculative engine takes when n-gram finds no draft (README: what a step costs, and why).
    cudagraph_mode: str = ""
    # Engine environment the kit sets itself: VLLM_BATCH_INVARIANT for the batched accuracy pass,
    # VLLM_SERVER_DEV_MODE for the break-even sweep's /collective_rpc (see worker_ext.py).
    env: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def command(self, port: int, api_key: str) -> list[str]:
        """The argv that starts the server (no shell ever sees it)."""
        argv = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_path, "--served-model-name", self.served_name,
            # One argument with "=": a key starting with "-" (token_urlsafe draws from A-Za-z0-9-_)
            # would otherwise be read as an option, and the engine refuses to start.
            "--host", "127.0.0.1", "--port", str(port), f"--api-key={api_key}",
            "--tensor-parallel-size", str(self.tensor_parallel_size), "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len), "--seed", str(self.seed),
            "--load-format", self.load_format,
            # Prefix-cache hits would count cached prompts as speed; the study measures cold prompts.
            "--no-enable-prefix-caching",
        ]
        if detect().accelerator == "gpu" or self.cpu_kv_cache_gib == 0:
            argv += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.tensor_parallel_size > 1:
            # vLLM's default on one node, made explicit: inside a Ray worker (placement: ray) it
            # could otherwise pick Ray's executor and ask the cluster for GPUs a second time.
            argv += ["--distributed-executor-backend", "mp"]
        if self.speculative is not None:
            argv += ["--speculative-config", self.speculative.to_engine_json()]
        if self.cudagraph_mode:
            argv += ["--compilation-config", json.dumps({"cudagraph_mode": self.cudagraph_mode})]
        if self.trust_remote_code:
            argv.append("--trust-remote-code")
        if detect().accelerator == "cpu" and not any(arg.startswith(COMPILE_FLAGS) for arg in self.extra_args):
            # The CPU engine's numbers are plumbing: torch.compile's warm-up (3-4 s a start) buys nothing.
            argv.append("--enforce-eager")
        return argv + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        """Environment for the server: CPU-engine memory and thread binding, quiet usage stats."""
        env = dict(os.environ)
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        env.update(dict(self.env))
        if detect().accelerator == "cpu":
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.cpu_kv_cache_gib))
            # The CPU build (0.32) cannot load its own AOT-compiled model ("'function' object has no
            # attribute 'finalize_loading'") and compiles again at every start: without AOT the
            # ordinary compile cache serves it (tiny model: warm-up 7.1 s -> 3.8 s, start 31 -> 28 s).
            env.setdefault("VLLM_USE_AOT_COMPILE", "0")
            given = env.get("VLLM_CPU_OMP_THREADS_BIND", "")
            if given not in ("", "auto", "nobind") and len(given.split("|")) != self.tensor_parallel_size:
                del env["VLLM_CPU_OMP_THREADS_BIND"]  # one core group per TP rank: a binding for another TP size
            if self.tensor_parallel_size > 1:
                env.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_thread_binding(self.tensor_parallel_size))
            elif "VLLM_ENABLE_V1_MULTIPROCESSING" not in env:
                env.update(single_process_model(env.get("VLLM_CPU_OMP_THREADS_BIND", "auto")))
        return env


def single_process_model(binding: str) -> dict[str, str]:
    """Environment that runs a TP-1 CPU engine's model in the EngineCore process, bound as vLLM binds its worker.

    vLLM's CPU platform otherwise spawns one more process for the model, which imports vLLM again
    (start 47-53 -> 34-38 s on a loaded 2-core machine) and leaves EngineCore spinning on the
    worker's replies (two busy cores per generating engine instead of one). vLLM sizes and binds
    OpenMP only in the processes it spawns, so the kit does it here as vLLM does for its worker:
    one thread per core of ``binding`` (VLLM_CPU_OMP_THREADS_BIND), or under ``auto`` per usable
    core but one, which vLLM also leaves to the serving side. Left at two unbound threads on 2 cores,
    a generating engine beside another made each request 10-30x slower.
    """
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if binding == "nobind":
        return env
    cores = sorted(os.sched_getaffinity(0))
    if binding not in ("", "auto"):
        try:
            cores = parse_core_list(binding)
        except ValueError:
            raise EngineStartError(f"VLLM_CPU_OMP_THREADS_BIND={binding!r} is not a list of cores such as 0-3 "
                                   f"or 0,2 (or auto, or nobind)") from None
    elif len(cores) > 1:
        cores = cores[:-1]
    listed = ",".join(map(str, cores))
    return {**env, "OMP_NUM_THREADS": str(len(cores)), "OMP_PLACES": f"{{{listed}}}", "OMP_PROC_BIND": "true"}


def parse_core_list(text: str) -> list[int]:
    """Core ids of a list such as ``5,2-4`` (VLLM_CPU_OMP_THREADS_BIND's format for one rank)."""
    cores: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        cores += range(int(low), int(high or low) + 1)
    return cores


def check_memory(config: EngineConfig, model_config: dict, params_billion: float) -> None:
    """Refuse, before launch, a configuration whose weights plus one full-length sequence's KV cache
    cannot fit the memory the engine may use (GPU memory x utilization per rank, or the CPU KV space)."""
    hardware = detect()
    bytes_per_value = 4 if config.dtype == "float32" else 2
    head_dim = model_config.get("head_dim") or model_config["hidden_size"] // model_config["num_attention_heads"]
    kv_heads = model_config.get("num_key_value_heads", model_config["num_attention_heads"])
    kv_per_token = 2 * model_config["num_hidden_layers"] * kv_heads * head_dim * bytes_per_value
    kv_needed = kv_per_token * config.max_model_len / config.tensor_parallel_size
    weights = params_billion * 1e9 * bytes_per_value / config.tensor_parallel_size
    if hardware.accelerator == "gpu":
        budget = min(g.memory_gib for g in hardware.gpus) * 2**30 * config.gpu_memory_utilization
        where = f"{config.gpu_memory_utilization:g} of {min(g.memory_gib for g in hardware.gpus):.0f} GiB per GPU"
        needed = weights + kv_needed
    elif config.cpu_kv_cache_gib == 0:
        budget = hardware.memory_gib * 2**30 * config.gpu_memory_utilization
        where = f"{config.gpu_memory_utilization:g} of {hardware.memory_gib:.0f} GiB RAM"
        needed = weights + kv_needed
    else:
        budget = config.cpu_kv_cache_gib * 2**30
        where = f"a {config.cpu_kv_cache_gib} GiB CPU KV cache"
        needed = kv_needed
    if needed > budget:
        raise EngineStartError(
            f"not enough memory: {needed / 2**30:.2f} GiB needed (weights and the KV cache of one "
            f"{config.max_model_len}-token sequence) but {where} gives {budget / 2**30:.2f} GiB"
        )


def cpu_thread_binding(tensor_parallel_size: int) -> str:
    """Split the usable cores into one group per TP rank ("0|1" on two cores)."""
    cores = sorted(os.sched_getaffinity(0))
    per_rank = max(1, len(cores) // tensor_parallel_size)
    groups = []
    for rank in range(tensor_parallel_size):
        chunk = cores[rank * per_rank:(rank + 1) * per_rank] or [cores[-1]]
        groups.append(f"{chunk[0]}-{chunk[-1]}" if len(chunk) > 1 else str(chunk[0]))
    return "|".join(groups)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# First matching pattern in the log names the cause of a failed start.
_CAUSES: tuple[tuple[str, str], ...] = (
    (r"Address already in use|\[Errno 98\]", "port already in use"),
    (r"unrecognized arguments|invalid choice|error: argument|expected one argument", "bad engine flag"),
    (r"KV cache is needed|larger than the available KV cache|Insufficient memory|out of memory|"
     r"OutOfMemory|No available memory for the cache blocks|not enough memory|KV cache space",
     "not enough memory for the model and its KV cache"),
    (r"does not appear to have a file named|is not a local folder|Repo id must|No such file or directory|"
     r"Can't load the configuration|not a valid model identifier|HFValidationError|LocalEntryNotFound|"
     r"Invalid repository ID or local directory",
     "model not found (path missing or hub unreachable)"),
    (r"ModuleNotFoundError: No module named 'vllm'", "vllm is not installed in this Python"),
    (r"Synthetic acceptance not supported", "synthetic acceptance is not supported by this engine build"),
)


def diagnose(log_text: str) -> str:
    """Name the cause of a failed start from the engine log."""
    for pattern, cause in _CAUSES:
        if re.search(pattern, log_text):
            return cause
    return "engine exited during start-up"


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the kit's process dies, so no engine outlives it (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class VLLMServer:
    """A running engine for one ``EngineConfig``; use as ``with VLLMServer(cfg, log) as server:``."""

    def __init__(
        self,
        config: EngineConfig,
        log_path: Path,
        port: int | None = None,
        startup_timeout_s: float = 900.0,
    ) -> None:
        self.config = config
        self.log_path = Path(log_path)
        self.requested_port = port
        self.startup_timeout_s = startup_timeout_s
        self.api_key = secrets.token_urlsafe(24)
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no engine log)"

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Launch and wait until ``/health`` answers; raise ``EngineStartError`` otherwise.

        The kit picks a free port, but vLLM binds it only after its imports (10-30 s later): on a
        busy machine another process can take it first. Then, unless the caller fixed the port,
        the engine is launched again on a new one (``PORT_RETRIES`` times).
        """
        if self.requested_port is not None and port_in_use(self.requested_port):
            raise EngineStartError(f"port already in use: 127.0.0.1:{self.requested_port}")
        for attempt in range(PORT_RETRIES + 1):
            try:
                self._launch()
                return
            except EngineStartError as error:
                if self.requested_port is not None or attempt == PORT_RETRIES or \
                        not str(error).startswith("port already in use"):
                    raise

    def _launch(self) -> None:
        self.port = self.requested_port or free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== engine start {time.strftime('%Y-%m-%dT%H:%M:%S')} port {self.port} ===\n".encode())
            env = self.config.environment()
            if "OMP_PLACES" in env:  # vLLM logs its binding only for the processes it spawns
                log.write(f"kit: the model runs in EngineCore's process, its OpenMP threads on cores {env['OMP_PLACES']} "
                          f"(VLLM_CPU_OMP_THREADS_BIND={env.get('VLLM_CPU_OMP_THREADS_BIND', 'auto')!r})\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.config.command(self.port, self.api_key),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True, preexec_fn=_die_with_parent,
            )
        try:
            self._wait_healthy(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def _wait_healthy(self, started: float) -> None:
        assert self.process is not None
        with httpx.Client(timeout=5.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    time.sleep(0.2)  # let the last log lines land
                    tail = self.log_tail()
                    raise EngineStartError(
                        f"{diagnose(tail)} (engine exit code {code}, log {self.log_path})\n{tail}"
                    )
                try:
                    if client.get(f"{self.base_url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() - started > self.startup_timeout_s:
                    raise EngineStartError(
                        f"engine not healthy after {self.startup_timeout_s:.0f} s (log {self.log_path})\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(0.5)

    def stop(self, grace_s: float = 3.0) -> None:
        """Terminate the whole process group: SIGTERM, then SIGKILL after ``grace_s``."""
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the child's pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(pgid, signal.SIGKILL)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.process = None


def process_group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process of a process group, an engine's, exists."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
