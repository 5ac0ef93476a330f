"""Parameter and profile validation: every mistake is a one-line ConfigError before anything starts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tts_utils.config import ConfigError, StudyConfig, read_profile
from tts_utils.hardware import GPU, Hardware
from tts_utils.paths import PARAMS_DIR, REPO_ROOT
from tts_utils.sweep import plan_runs

CPU_2 = Hardware("test cpu", 2, 24.0)
GPU_2 = Hardware("test cpu", 16, 128.0, gpus=(GPU(0, "H200", 139.0), GPU(1, "H200", 139.0)))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"budgts": [1024]}, "unknown parameter 'budgts' in parameters (did you mean 'budgets'?)"),
        ({"model": "13b"}, "unknown model '13b'"),
        ({"model": "1.5b,s1-7b"}, "unknown model 's1-7b' (did you mean 's1.1-7b'?)"),
        ({"budgets": [1024, 0]}, "budgets must be positive integers, got 0"),
        ({"budgets": [1024, -5]}, "budgets must be positive integers, got -5"),
        ({"budgets": [1024, 2.5]}, "budgets must hold integers, got 2.5"),
        ({"budgets": "1k"}, "budgets must hold integers, got '1k'"),
        ({"tp_sizes": [1, 3]}, "tp_sizes must be powers of two, got 3"),
        ({"concurrency": 0}, "concurrency must be a positive integer, got 0"),
        ({"concurrency": "4"}, "concurrency must be an integer, got '4'"),
        ({"temperature": 5.0}, "temperature must be in [0, 2]"),
        ({"load_format": "dumy"}, "load_format must be auto, dummy, safetensors or pt"),
        ({"study": "../elsewhere"}, "study must be a plain folder name"),
        ({"dry_run": "yes"}, "dry_run must be true or false"),
    ],
)
def test_bad_parameters_are_one_line_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        StudyConfig.create(**values)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_defaults_are_valid_and_lists_become_tuples() -> None:
    config = StudyConfig.create(budgets=[256, 64], tp_sizes="1,2")
    assert config.budgets == (256, 64) and config.max_budget == 256 and config.tp_sizes == (1, 2)


def test_tp_above_the_machine_is_skipped_with_a_reason_or_an_error() -> None:
    config = StudyConfig.create(tp_sizes=[1, 2, 4])
    assert config.usable_tp_sizes(GPU_2) == ([1, 2], ["TP=4 needs 4 devices; this machine has 2 GPUs"])
    assert config.usable_tp_sizes(CPU_2)[0] == [1, 2]
    strict = StudyConfig.create(tp_sizes=[1, 4], skip_unavailable_tp=False)
    with pytest.raises(ConfigError, match="TP=4 needs 4 devices; this machine has 2 GPUs"):
        strict.usable_tp_sizes(GPU_2)
    with pytest.raises(ConfigError, match="no requested TP size fits"):
        StudyConfig.create(tp_sizes=[8]).usable_tp_sizes(GPU_2)


def test_unknown_sweep_notebook_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown sweep notebook '03_specc'"):
        plan_runs(StudyConfig(), "03_specc")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nbudgets: [1024, 2048\nmodel: 7b\n")
    with pytest.raises(ConfigError, match=r"malformed YAML in .*bad.yaml line \d"):
        read_profile(bad)


def test_profile_keys_and_values_are_checked(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("study: x\nconcurrrency: 4\n")
    with pytest.raises(ConfigError, match="unknown parameter 'concurrrency'"):
        read_profile(typo)
    negative = tmp_path / "neg.yaml"
    negative.write_text("budgets: [1024, -1]\n")
    with pytest.raises(ConfigError, match="budgets must be positive"):
        read_profile(negative)


@pytest.mark.parametrize("profile", sorted(PARAMS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_profiles_are_valid(profile: Path) -> None:
    assert read_profile(profile)


def test_cli_reports_a_bad_profile_in_one_line_fast(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: 7b\ntp_sizes: [3]\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tts_utils.pipeline", "reproduce", "--profile", str(bad)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: tp_sizes must be powers of two, got 3"
    assert time.monotonic() - started < 60
