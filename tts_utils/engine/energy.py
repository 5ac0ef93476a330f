"""GPU energy around a measured run, from NVML's cumulative energy counters.

``EnergyMeter`` reads ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver
loaded) of the GPUs a run uses before and after it; the difference is the energy of the run on
those GPUs, idle moments between requests included. Where no counter exists (the CPU engine,
GPUs without the counter, no NVML) the reading is missing with the reason, never zero.
Used by sweep.py (01-03); the per-token figures are derived in metrics.py.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

ENERGY_KEYS = ("energy_j", "energy_seconds", "energy_gpus", "energy_missing_reason")


@dataclass(frozen=True)
class EnergyReading:
    """Energy of one measured span, or why there is none."""

    energy_j: float | None
    seconds: float
    gpus: tuple[int, ...]
    missing_reason: str | None = None

    def to_counters(self) -> dict:
        return {"energy_j": self.energy_j, "energy_seconds": self.seconds, "energy_gpus": list(self.gpus),
                "energy_missing_reason": self.missing_reason}


def used_gpu_indices(tensor_parallel_size: int) -> tuple[int, ...]:
    """NVML indices of the GPUs an engine of this TP size uses: the first visible ones."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    indices = [int(i) for i in visible.split(",") if i.strip().isdigit()] if visible else None
    if indices is None:
        return tuple(range(tensor_parallel_size))
    return tuple(indices[:tensor_parallel_size])


class EnergyMeter:
    """``with EnergyMeter(gpus) as meter: ...`` then ``meter.reading``; ``meter.mark()`` inside
    gives the joules since the previous mark (per request at concurrency 1)."""

    def __init__(self, gpus: tuple[int, ...]) -> None:
        self.gpus = gpus
        self.reading: EnergyReading | None = None
        self._start: dict[int, int] | None = None
        self._last: dict[int, int] | None = None
        self._started = 0.0
        self._why: str | None = None
        self._nvml = None

    def _read(self) -> dict[int, int] | None:
        if self._nvml is None:
            return None
        try:
            return {i: self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._nvml.nvmlDeviceGetHandleByIndex(i))
                    for i in self.gpus}
        except Exception as error:  # NVML raises its own classes (NotSupported, ...)
            self._why = f"NVML energy counter unavailable: {type(error).__name__}"
            return None

    def __enter__(self) -> EnergyMeter:
        if not self.gpus:
            self._why = "no GPU: the CPU engine has no energy counter"
        else:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception as error:  # no driver or no library
                self._why = f"NVML not available: {type(error).__name__}"
        self._start = self._read()
        self._last = self._start
        self._started = time.monotonic()
        return self

    def mark(self) -> float | None:
        """Joules used on the meter's GPUs since the previous mark (or the start); None if unknown."""
        now = self._read()
        if now is None or self._last is None:
            return None
        joules = sum(now[i] - self._last[i] for i in self.gpus) / 1000.0
        self._last = now
        return joules

    def __exit__(self, *exc) -> None:
        end = self._read()
        seconds = time.monotonic() - self._started
        energy = None
        if self._start is not None and end is not None:
            energy = sum(end[i] - self._start[i] for i in self.gpus) / 1000.0
        self.reading = EnergyReading(energy, seconds, self.gpus, None if energy is not None else self._why)
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # shutting down a broken NVML must not hide the run's own error
                pass
