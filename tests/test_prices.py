"""Prices are inputs: the list-price table, overrides, and bad values as one-line errors."""

from __future__ import annotations

import math

import pytest

from tts_utils.config import StudyConfig
from tts_utils.errors import ConfigError
from tts_utils.report.prices import (
    LIST_PRICES,
    device_name,
    list_price,
    resolve_price,
    usd_per_correct_answer,
    usd_per_million_tokens,
)


@pytest.mark.parametrize(
    ("hardware", "device"),
    [("2x NVIDIA H200 (driver 580.159.04)", "NVIDIA H200 (HGX, SXM)"),
     ("1x NVIDIA H100 80GB HBM3 (driver 550.54)", "NVIDIA H100 (HGX, SXM)"),
     ("8x NVIDIA A100-SXM4-80GB (driver 535.1)", "NVIDIA A100 80GB (HGX, SXM)"),
     ("4x NVIDIA L40S (driver 550.1)", "NVIDIA L40S"),
     ("CPU only: Intel Xeon, 2 usable cores, 8 GiB", "CPU only (one TP rank priced as a 2-vCPU instance)")],
)
def test_known_devices_find_their_list_price(hardware: str, device: str) -> None:
    assert list_price(hardware).device == device
    assert "list price" in resolve_price(hardware).source


@pytest.mark.parametrize("hardware", ["1x NVIDIA GH200 480GB (driver 1)", "1x NVIDIA H100 PCIe (driver 1)",
                                      "2x NVIDIA A100-SXM4-40GB (driver 1)", "1x NVIDIA GeForce RTX 4090 (driver 1)"])
def test_an_unknown_gpu_without_a_price_is_a_one_line_error_naming_it(hardware: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_price(hardware)
    message = str(error.value)
    assert device_name(hardware) in message and "set gpu_hour_usd" in message and "\n" not in message
    assert resolve_price(hardware, 2.5).usd_per_hour == 2.5


def test_an_explicit_price_overrides_the_table() -> None:
    price = resolve_price("1x NVIDIA H200 (driver 1)", 1.25)
    assert price.usd_per_hour == 1.25 and price.source == "gpu_hour_usd parameter"
    assert "not a measurement" in price.describe()


@pytest.mark.parametrize("value", [-1.0, math.inf, math.nan])
def test_a_negative_or_non_finite_price_is_a_one_line_error(value: float) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_price("1x NVIDIA H200 (driver 1)", value)
    assert "gpu_hour_usd must be >= 0" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="gpu_hour_usd must be >= 0"):
        StudyConfig.create(gpu_hour_usd=value)


def test_the_parameter_defaults_to_the_table_and_takes_integers() -> None:
    assert StudyConfig().gpu_hour_usd == 0.0 and StudyConfig.create(gpu_hour_usd=3).gpu_hour_usd == 3.0


def test_every_list_price_has_a_date_and_a_source() -> None:
    for row in LIST_PRICES:
        assert row.usd_per_hour > 0 and len(row.listed) == 7 and "http" in row.source


def test_dollar_arithmetic() -> None:
    # 3.6 $/h is 0.001 $/s.
    assert usd_per_million_tokens(0.002, 3.6) == pytest.approx(2.0)
    assert usd_per_correct_answer(10.0, 0.5, 3.6) == pytest.approx(0.02)
    assert math.isnan(usd_per_correct_answer(10.0, 0.0, 3.6)) and math.isnan(usd_per_correct_answer(10.0, math.nan, 3.6))
