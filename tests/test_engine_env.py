"""The CPU engine's environment (engine/server.py), without starting one: thread binding per TP rank."""

from __future__ import annotations

import os

import pytest

from tts_utils.engine.server import EngineConfig, cpu_thread_binding, parse_core_list, single_process_model
from tts_utils.errors import EngineStartError
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


@pytest.mark.parametrize("tp, extra, eager, one_process", [
    (1, (), True, True),                                            # the model in EngineCore's process, no compile
    (2, (), True, False),                                           # one process per TP rank
    (1, ("--compilation-config", '{"mode": 3}'), False, True),       # the user's own compilation flags stay theirs
    (1, ("-O3",), False, True),
])
def test_the_cpu_engine_starts_eager_and_in_as_few_processes_as_its_tp(tp, extra, eager, one_process,
                                                                       monkeypatch) -> None:
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    config = EngineConfig(model_path="m", served_name="m", tensor_parallel_size=tp, extra_args=extra)
    argv = config.command(8000, "key")
    assert ("--enforce-eager" in argv) == eager and argv[len(argv) - len(extra):] == list(extra)
    assert (config.environment().get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0") == one_process


@pytest.mark.parametrize("binding, threads", [
    ("1", "1"), ("0-1", "2"), ("auto", str(len(os.sched_getaffinity(0)) - 1)), ("nobind", None),
])
def test_a_one_process_engine_gets_one_openmp_thread_per_bound_core(binding, threads) -> None:
    env = single_process_model(binding)
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and env.get("OMP_NUM_THREADS") == threads
    if threads is not None:  # bound to those cores, as vLLM binds the worker process it would spawn
        assert env["OMP_PROC_BIND"] == "true" and env["OMP_PLACES"].count(",") == int(threads) - 1


def test_core_lists_read_as_vllm_writes_them() -> None:
    assert parse_core_list("5,2-4") == [5, 2, 3, 4] and parse_core_list("0") == [0]
    with pytest.raises(EngineStartError, match="not a list of cores"):
        single_process_model("a-b")
