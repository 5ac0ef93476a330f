"""Dollars from GPU-seconds: list prices per device-hour, and the two money metrics built on them.

Prices are inputs, not measurements. The table holds on-demand list prices per device-hour, each
with the date and the page it was read from; reserved, spot or owned hardware costs something else,
so set ``gpu_hour_usd`` (a parameter of 00_setup and 04_analysis, or a profile key) to your own rate
and the table is not consulted. A device is one GPU; on the CPU engine it is one TP rank.
Used by analysis.py (04_analysis: dollar columns of the table) and 00_setup (the estimate in dollars).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tts_utils.errors import ConfigError
from tts_utils.hardware import device_name

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class ListPrice:
    """One row of the price table: what a device-hour costs, when and where that was read."""

    device: str
    pattern: str  # regular expression matched against the GPU name NVML reports
    usd_per_hour: float
    listed: str  # when the price was read from its source (YYYY-MM)
    source: str


_COREWEAVE = "CoreWeave on-demand list price, https://www.coreweave.com/pricing"
# CoreWeave lists 8-GPU instances (GPU, CPU, memory and local disk together); per GPU = instance / 8.
LIST_PRICES: tuple[ListPrice, ...] = (
    ListPrice("NVIDIA H200 (HGX, SXM)", r"\bH200\b", 50.44 / 8, "2025-06", f"{_COREWEAVE} (8x HGX H200 at $50.44/h)"),
    ListPrice("NVIDIA H100 (HGX, SXM)", r"\bH100\b(?!.*\b(PCIe|NVL)\b)", 49.24 / 8, "2025-06",
              f"{_COREWEAVE} (8x HGX H100 at $49.24/h)"),
    ListPrice("NVIDIA A100 80GB (HGX, SXM)", r"\bA100-SXM\d?-80GB\b", 21.60 / 8, "2025-06",
              f"{_COREWEAVE} (8x HGX A100 80GB at $21.60/h)"),
    ListPrice("NVIDIA L40S", r"\bL40S\b", 18.00 / 8, "2025-06", f"{_COREWEAVE} (8x L40S at $18.00/h)"),
    ListPrice("CPU only (one TP rank priced as a 2-vCPU instance)", r"^CPU only", 0.08925, "2025-06",
              "AWS EC2 on-demand, c7i.large (2 vCPU, 4 GiB), us-east-1 Linux, https://aws.amazon.com/ec2/pricing/on-demand/"),
)


@dataclass(frozen=True)
class Price:
    """The price a report uses, and where it came from."""

    usd_per_hour: float
    source: str

    def describe(self) -> str:
        return f"${self.usd_per_hour:.4g} per device-hour ({self.source}); an input, not a measurement"


def list_price(hardware: str) -> ListPrice | None:
    """The table row for a hardware label (``Hardware.describe()`` or a results ``hardware`` column)."""
    name = device_name(hardware)
    return next((row for row in LIST_PRICES if re.search(row.pattern, name)), None)


def resolve_price(hardware: str, gpu_hour_usd: float = 0.0) -> Price:
    """The price per device-hour: ``gpu_hour_usd`` if set, else the list price of the device.

    Raises ConfigError (one line) for a negative price, or for a device the table lacks when no
    price was given.
    """
    if not math.isfinite(gpu_hour_usd) or gpu_hour_usd < 0:
        raise ConfigError(f"gpu_hour_usd must be >= 0 dollars per GPU-hour, got {gpu_hour_usd}")
    if gpu_hour_usd > 0:
        return Price(gpu_hour_usd, "gpu_hour_usd parameter")
    row = list_price(hardware)
    if row is None:
        known = ", ".join(r.device for r in LIST_PRICES)
        raise ConfigError(f"no list price for {device_name(hardware)!r} in tts_utils/report/prices.py (known: {known}); "
                          "set gpu_hour_usd to its dollars per GPU-hour")
    return Price(row.usd_per_hour, f"{row.device} list price, {row.listed}, {row.source}")


def price_table() -> list[dict]:
    """The list prices as rows, for a report."""
    return [{"device": r.device, "usd_per_device_hour": round(r.usd_per_hour, 4), "listed": r.listed,
             "source": r.source} for r in LIST_PRICES]


def usd_per_million_tokens(cost_gpu_s_per_token: float, usd_per_hour: float) -> float:
    """Dollars per million output tokens from GPU-seconds per token."""
    return cost_gpu_s_per_token * usd_per_hour / SECONDS_PER_HOUR * 1e6


def usd_per_correct_answer(gpu_s_per_request: float, accuracy_strict: float, usd_per_hour: float) -> float:
    """Dollars per strictly correct answer; NaN when nothing was answered correctly (or not graded)."""
    if not accuracy_strict or math.isnan(accuracy_strict):
        return math.nan
    return gpu_s_per_request / accuracy_strict * usd_per_hour / SECONDS_PER_HOUR
