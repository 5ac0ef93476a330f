"""The CPU engine's environment (engine/server.py), without starting one: thread binding per TP rank."""

from __future__ import annotations

import os

import pytest

from tts_utils.engine.server import EngineConfig, cpu_thread_binding
from tts_utils.hardware import detect

pytestmark = pytest.mark.skipif(detect().accelerator != "cpu" or len(os.sched_getaffinity(0)) < 2,
                                reason="the CPU engine's binding, on two or more cores")


@pytest.mark.parametrize("given, tp, expected", [
    ("1", 1, "1"),                         # a TP-1 engine pinned to one core keeps it (the tests' workers)
    ("1", 2, None),                        # one group for two ranks: the kit's own binding instead
    ("0|1", 1, "auto"),                    # two groups for one rank: vLLM's automatic binding
    ("0|1", 2, "0|1"),
    ("auto", 2, "auto"),
    (None, 1, "auto"),
    (None, 2, None),
])
def test_a_binding_for_another_tp_size_is_replaced(given, tp, expected, monkeypatch) -> None:
    if given is None:
        monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    else:
        monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", given)
    env = EngineConfig(model_path="m", served_name="m", tensor_parallel_size=tp).environment()
    want = cpu_thread_binding(tp) if expected is None else expected
    assert env.get("VLLM_CPU_OMP_THREADS_BIND", "auto") == want
    assert env["VLLM_USE_AOT_COMPILE"] == "0"
