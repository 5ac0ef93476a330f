"""What machine this is: GPUs (through NVML), CPU model and cores, interconnect topology.

Used by 00_setup (inventory), config validation (how many devices TP may use), the engine launcher
(CPU or GPU flags) and provenance (every result file records the hardware).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class GPU:
    """One visible NVIDIA GPU."""

    index: int
    name: str
    memory_gib: float


@dataclass(frozen=True)
class Hardware:
    """The inventory recorded with every run."""

    cpu_model: str
    cpu_cores: int
    memory_gib: float
    gpus: tuple[GPU, ...] = field(default_factory=tuple)
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    topology: str | None = None

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def accelerator(self) -> str:
        """``"gpu"`` when an NVIDIA GPU is visible, else ``"cpu"``."""
        return "gpu" if self.gpus else "cpu"

    @property
    def max_tensor_parallel(self) -> int:
        """Largest TP size this machine can host: GPUs, or usable CPU cores on the CPU engine."""
        return self.gpu_count if self.gpus else self.cpu_cores

    def describe(self) -> str:
        """One line for reports."""
        if self.gpus:
            names = ", ".join(sorted({g.name for g in self.gpus}))
            return f"{self.gpu_count}x {names} (driver {self.driver_version}); CPU {self.cpu_model}"
        return f"CPU only: {self.cpu_model}, {self.cpu_cores} usable cores, {self.memory_gib:.0f} GiB"

    def to_dict(self) -> dict:
        record = asdict(self)
        record["gpu_count"] = self.gpu_count
        record["accelerator"] = self.accelerator
        return record

    @classmethod
    def from_record(cls, record: dict) -> Hardware:
        """The inverse of ``to_dict`` (a run's provenance). Raises KeyError or TypeError on a partial record."""
        return cls(record["cpu_model"], record["cpu_cores"], record["memory_gib"],
                   tuple(GPU(**gpu) for gpu in record.get("gpus", [])),
                   record.get("driver_version"), record.get("cuda_driver_version"), record.get("topology"))

    def timing_class(self) -> str:
        """What two machines must share for one run's timings to be pooled: the GPU models and
        their number, or (CPU only) the CPU model and usable cores. Drivers may differ."""
        if self.gpus:
            return f"{self.gpu_count}x {', '.join(sorted({g.name for g in self.gpus}))}"
        return f"CPU only: {self.cpu_model}, {self.cpu_cores} usable cores"


def device_name(hardware: str) -> str:
    """The device part of a hardware label: ``2x NVIDIA H200 (driver 580.1)`` -> ``NVIDIA H200``
    (prices.py prices it; study/tp_import.py refuses step costs of another device)."""
    if hardware.startswith("CPU only"):
        return "CPU only"
    name = re.sub(r"^\d+x\s+", "", hardware.split(";")[0].strip())
    return re.sub(r"\s*\(driver [^)]*\)$", "", name)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0.0


def _nvml_inventory() -> tuple[tuple[GPU, ...], str | None, str | None]:
    try:
        import pynvml
    except ImportError:
        return (), None, None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no GPU: NVML raises its own error classes
        return (), None, None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30
            gpus.append(GPU(index, name if isinstance(name, str) else name.decode(), round(memory, 1)))
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        return tuple(gpus), str(driver), f"{cuda // 1000}.{cuda % 1000 // 10}"
    finally:
        pynvml.nvmlShutdown()


def _visible(gpus: tuple[GPU, ...]) -> tuple[GPU, ...]:
    """Respect CUDA_VISIBLE_DEVICES the way the engine will."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus
    wanted = [item.strip() for item in visible.split(",") if item.strip()]
    return tuple(g for g in gpus if str(g.index) in wanted)


def _topology() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        return subprocess.run(
            ["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None


@lru_cache(maxsize=1)
def detect() -> Hardware:
    """Inventory of this machine (cached for the process)."""
    gpus, driver, cuda = _nvml_inventory()
    gpus = _visible(gpus)
    return Hardware(
        cpu_model=_cpu_model(),
        cpu_cores=len(os.sched_getaffinity(0)),
        memory_gib=round(_memory_gib(), 1),
        gpus=gpus,
        driver_version=driver,
        cuda_driver_version=cuda,
        topology=_topology() if len(gpus) > 1 else None,
    )
