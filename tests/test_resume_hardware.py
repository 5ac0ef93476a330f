"""A partial run resumes only on the kind of machine that measured its first requests
(sweep.check_resumable): an H100 run continued on this CPU machine would pool two machines'
latencies without a word. Refused before any engine starts; a run that measured nothing starts over."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tts_utils import provenance
from tts_utils.config import StudyConfig
from tts_utils.errors import ConfigError
from tts_utils.hardware import GPU, Hardware, detect
from tts_utils.store import atomic_write_json
from tts_utils.study.plan import plan_runs
from tts_utils.study.sweep import run_sweep

H100 = Hardware("Intel(R) Xeon(R) Processor", 16, 125.8, (GPU(0, "NVIDIA H100 80GB HBM3", 79.6),), "580.159.04", "13.0")


def _started_elsewhere(math500_path: Path, measured: bool):
    config = StudyConfig.create(study="moved", dataset=str(math500_path), num_problems=2, budgets=[16, 32])
    plan = plan_runs(config, "01_greedy")[0][0]
    folder = plan.folder()
    folder.path.mkdir(parents=True)
    atomic_write_json(folder.run_file, {"identity": plan.identity(), "run_name": plan.run_name,
                                        "created_by": {**provenance.collect(), "hardware": H100.to_dict()}})
    if measured:
        folder.requests_file.write_text(json.dumps({"request_id": "x", "problem_id": "p", "sample_index": 0}) + "\n")
    return config, folder


def test_a_run_measured_on_another_gpu_is_not_resumed_here(math500_path: Path) -> None:
    config, folder = _started_elsewhere(math500_path, measured=True)
    here = detect().timing_class()
    with pytest.raises(ConfigError, match=r"measured its first requests on 1x NVIDIA H100 80GB HBM3, and this "
                                          rf"machine has {re.escape(here)}: resume it there"):
        run_sweep(config, "01_greedy")
    assert not folder.engine_log.exists() and not folder.segments_file.exists()  # nothing started


def test_timing_class_ignores_the_driver_but_not_the_gpu() -> None:
    newer_driver = Hardware(H100.cpu_model, 8, 64.0, H100.gpus, "590.1", "13.1")
    h200 = Hardware(H100.cpu_model, 16, 125.8, (GPU(0, "NVIDIA H200", 139.8),), "580.159.04", "13.0")
    assert newer_driver.timing_class() == H100.timing_class() != h200.timing_class()
    assert Hardware.from_record(H100.to_dict()) == H100


@pytest.mark.engine
def test_a_run_that_measured_nothing_starts_over_here_and_says_so(math500_path: Path) -> None:
    config, folder = _started_elsewhere(math500_path, measured=False)
    run_sweep(config, "01_greedy", only=folder.path.name)
    recorded = json.loads(folder.run_file.read_text())["created_by"]["hardware"]
    assert Hardware.from_record(recorded).timing_class() == detect().timing_class()
    assert folder.is_complete()
