"""The fault matrix, against the real vLLM CPU engine on the tiny model: nothing lost, nothing left running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tts_utils.config import StudyConfig
from tts_utils.engine.server import EngineConfig, VLLMServer, process_group_alive
from tts_utils.errors import ConfigError, EngineStartError, StudyLockedError, SweepError
from tts_utils.paths import REPO_ROOT
from tts_utils.store import read_records
from tts_utils.study.plan import plan_runs
from tts_utils.study.sweep import run_sweep

pytestmark = pytest.mark.engine


def _wait_for(condition, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def _engine_pid(log: Path) -> int | None:
    found = re.findall(r"APIServer pid=(\d+)", log.read_text(errors="replace")) if log.exists() else []
    return int(found[-1]) if found else None


def _config(math500_path: Path, study: str = "faults") -> StudyConfig:
    # 6 problems x 512 tokens: long enough (~10 s of decoding) to be interrupted mid-run.
    return StudyConfig.create(study=study, dataset=str(math500_path), num_problems=6, budgets=[64, 512],
                              cpu_kv_cache_gib=1)


def _start_failure(config: EngineConfig, tmp_path: Path) -> tuple[str, float, VLLMServer]:
    server = VLLMServer(config, tmp_path / "engine.log", startup_timeout_s=120)
    started = time.monotonic()
    with pytest.raises(EngineStartError) as error:
        server.start()
    return str(error.value), time.monotonic() - started, server


def test_missing_model_fails_fast_and_no_shell_sees_the_path(tmp_path) -> None:
    marker = tmp_path / "pwned"
    config = EngineConfig(f"/nonexistent/model; touch {marker}", "tiny")
    message, seconds, server = _start_failure(config, tmp_path)
    print(f"\nmissing model: error after {seconds:.1f} s: {message.splitlines()[0]}")
    assert message.startswith("model not found") and seconds < 60
    assert "engine log" not in message.splitlines()[0] and len(message.splitlines()) > 3  # cause, then the log tail
    assert not marker.exists()
    assert server.process is None


def test_bad_engine_flag_fails_fast(tiny_model_path, tmp_path) -> None:
    config = EngineConfig(str(tiny_model_path), "tiny", extra_args=("--no-such-flag",))
    message, seconds, _ = _start_failure(config, tmp_path)
    print(f"\nbad flag: error after {seconds:.1f} s: {message.splitlines()[0]}")
    assert message.startswith("bad engine flag") and seconds < 60


def test_port_already_taken_is_refused_before_launch(tiny_model_path, tmp_path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = VLLMServer(EngineConfig(str(tiny_model_path), "tiny"), tmp_path / "engine.log", port=port)
        started = time.monotonic()
        with pytest.raises(EngineStartError, match=f"port already in use: 127.0.0.1:{port}"):
            server.start()
        assert time.monotonic() - started < 1 and server.process is None


def test_a_port_taken_during_start_up_is_retried_on_a_new_port(tiny_model_path, tmp_path, monkeypatch) -> None:
    """The kit picks a free port; vLLM binds it only after its imports. If another process takes
    it meanwhile (seen on busy machines), the engine is launched again on a new port."""
    import socket

    import tts_utils.engine.server as engine

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(engine, "free_port", _first_then_free(taken))
        config = EngineConfig(str(tiny_model_path), "tiny", max_model_len=512, cpu_kv_cache_gib=1,
                              extra_args=("--enforce-eager",))
        with VLLMServer(config, tmp_path / "engine.log", startup_timeout_s=300) as server:
            assert server.port != taken
            log = (tmp_path / "engine.log").read_text(errors="replace")
    assert log.count("=== engine start") == 2 and re.search(r"Address already in use|Errno 98", log)


def _first_then_free(taken: int):
    from tts_utils.engine.server import free_port

    calls = iter([taken])
    return lambda: next(calls, None) or free_port()


def test_too_little_memory_is_refused_before_launch(math500_path) -> None:
    config = StudyConfig.create(dataset=str(math500_path), num_problems=2, cpu_kv_cache_gib=0,
                                gpu_memory_utilization=0.00001)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"tiny at TP=1: not enough memory: .* GiB needed .* gives"):
        plan_runs(config, "01_greedy")
    assert time.monotonic() - started < 60


def test_engine_killed_mid_run_keeps_finished_requests_and_resumes(math500_path) -> None:
    config = _config(math500_path)
    plan = plan_runs(config, "01_greedy")[0][0]
    folder = plan.folder()
    killed = {}

    def kill_engine_after_two_requests() -> None:
        _wait_for(lambda: folder.requests_file.exists() and len(read_records(folder.requests_file)) >= 2,
                  300, "two finished requests")
        killed["pid"] = _engine_pid(folder.engine_log)
        os.kill(killed["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_engine_after_two_requests, daemon=True)
    killer.start()
    with pytest.raises(SweepError, match=plan.run_name):
        run_sweep(config, "01_greedy")
    killer.join(5)
    kept = read_records(folder.requests_file)
    status = json.loads(folder.status_file.read_text())
    failure = json.loads(folder.failure_file.read_text())
    assert status["state"] == "incomplete" and 2 <= len(kept) < 6 and failure["requests_on_disk"] == len(kept)
    # The broken session is recorded too: its time, and that the engine counters of its finished
    # requests were never read.
    (broken,) = folder.segments()
    assert broken["interrupted"] and broken["requests_run"] == len(kept) and broken["requests_counted"] == 0
    assert broken["wall_s"] > 0
    _wait_for(lambda: not process_group_alive(killed["pid"]), 10, "the engine's processes to exit")

    outcome = run_sweep(config, "01_greedy")
    records = read_records(folder.requests_file)
    ids = [r["request_id"] for r in records]
    print(f"\nengine SIGKILL: {len(kept)} requests kept, {6 - len(kept)} re-run, outcome {outcome['outcome'][0]}")
    assert outcome["outcome"][0] == "resumed and completed"
    assert len(ids) == len(set(ids)) == 6 and ids[:len(kept)] == [r["request_id"] for r in kept]
    assert folder.is_complete() and not folder.failure_file.exists()
    # Counters of 6 - kept requests only: the engine's own timings are not given as the run's.
    summary = pd.read_csv(folder.summary_file)
    assert summary["engine_mean_e2e_latency_s"].isna().all()
    assert (summary["engine_counters_missing_reason"]
            == f"engine counters cover {6 - len(kept)} of 6 requests: a session was interrupted before it read them").all()
    # Derived again from its records with no engine: the same numbers, no new session.
    derived = {name: (folder.path / name).read_text() for name in ("results.csv", "steps.csv", "summary.csv")}
    sessions = len(folder.segments())
    assert run_sweep(config, "01_greedy", derive_again=True)["outcome"].tolist() == ["derived again"]
    assert len(folder.segments()) == sessions and folder.is_complete()
    assert {name: (folder.path / name).read_text() for name in derived} == derived


# A shell's background job starts with SIGINT ignored, and Python then never turns SIGINT into
# KeyboardInterrupt; restore the terminal's behaviour, as in a user's foreground run or a kernel.
SWEEP_SCRIPT = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from tts_utils.config import StudyConfig
from tts_utils.study.sweep import run_sweep
config = StudyConfig.create(study=sys.argv[1], dataset=sys.argv[2], num_problems=int(sys.argv[3]), budgets=[64, 512],
                            cpu_kv_cache_gib=1)
run_sweep(config, "01_greedy")
"""


def _start_sweep_process(math500_path: Path, study: str, num_problems: int = 6) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT, study, str(math500_path), str(num_problems)],
                            cwd=REPO_ROOT,
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_interrupt_stops_the_engine_within_ten_seconds_and_keeps_work(math500_path) -> None:
    # 40 problems: a run of a minute or more, so the interrupt lands mid-run even on a busy machine.
    config = StudyConfig.create(study="interrupted", dataset=str(math500_path), num_problems=40,
                                budgets=[64, 512], cpu_kv_cache_gib=1)
    folder = plan_runs(config, "01_greedy")[0][0].folder()
    sweep = _start_sweep_process(math500_path, "interrupted", 40)
    try:
        _wait_for(lambda: folder.requests_file.exists() and len(read_records(folder.requests_file)) >= 1,
                  300, "a finished request")
        with pytest.raises(StudyLockedError):  # a second sweep on the same study refuses at once
            run_sweep(config, "01_greedy")
        pid = _engine_pid(folder.engine_log)
        sweep.send_signal(signal.SIGINT)
        seconds = _wait_for(lambda: not process_group_alive(pid), 10, "the engine's process group to exit")
        _wait_for(lambda: sweep.poll() is not None, 30, "the interrupted sweep to exit")
    finally:
        sweep.kill()
    status = json.loads(folder.status_file.read_text())
    print(f"\nSIGINT: engine group gone {seconds:.1f} s after the interrupt; {status['done']} requests kept")
    assert status["state"] == "incomplete" and status["error"].startswith("KeyboardInterrupt")
    assert len(read_records(folder.requests_file)) >= 1


def test_kit_killed_mid_run_leaves_no_engine_and_no_half_record(math500_path) -> None:
    config = _config(math500_path, "kit-killed")
    folder = plan_runs(config, "01_greedy")[0][0].folder()
    sweep = _start_sweep_process(math500_path, "kit-killed")
    try:
        _wait_for(lambda: folder.requests_file.exists() and len(read_records(folder.requests_file)) >= 2,
                  300, "two finished requests")
        pid = _engine_pid(folder.engine_log)
        sweep.kill()  # SIGKILL: no cleanup code of the kit runs
        seconds = _wait_for(lambda: not process_group_alive(pid), 60, "the orphaned engine to exit")
    finally:
        sweep.kill()
    kept = len(read_records(folder.requests_file, repair=True))
    outcome = run_sweep(config, "01_greedy")
    ids = [r["request_id"] for r in read_records(folder.requests_file)]
    print(f"\nkit SIGKILL: engine gone after {seconds:.1f} s; {kept} requests kept; resume: {outcome['outcome'][0]}")
    assert len(ids) == len(set(ids)) == 6 and folder.is_complete()


def test_changed_files_are_re_derived_and_a_corrupt_run_does_not_stop_the_others(math500_path) -> None:
    """A finished run whose steps.csv (or results) no longer match their checksums is derived again
    from requests.jsonl without an engine; one whose requests.jsonl is corrupt gets its failure.json
    while the sweep goes on to the next run."""
    from tts_utils.speculation.stepcost import checked_step_files

    config = StudyConfig.create(study="rederive", dataset=str(math500_path), num_problems=2, budgets=[16, 32],
                                batch_concurrency=2, cpu_kv_cache_gib=1)
    run_sweep(config, "01_greedy")
    batched, latency = (plan.folder() for plan in plan_runs(config, "01_greedy")[0])
    sessions = len(latency.segments())
    steps = latency.steps_file.read_text()
    latency.steps_file.write_text(steps.replace(",0.", ",9.", 1))  # one changed number
    assert checked_step_files("rederive") == []
    outcome = run_sweep(config, "01_greedy").set_index("run_name")["outcome"]
    assert outcome[latency.path.name] == "re-derived (files did not match their checksums)"
    assert len(latency.segments()) == sessions and latency.steps_file.read_text() == steps  # no engine ran
    assert checked_step_files("rederive") == [latency.steps_file]

    lines = batched.requests_file.read_text().splitlines(keepends=True)
    batched.requests_file.write_text(lines[0].replace('"token_ids":[', '"token_ids":[7,', 1) + "".join(lines[1:]))
    with open(batched.results_file, "a") as out:
        out.write("garbage\n")
    latency.summary_file.write_text(latency.summary_file.read_text() + "\n")
    with pytest.raises(SweepError, match=rf"1 of 2 runs failed: {batched.path.name}: .*requests.jsonl line 1"):
        run_sweep(config, "01_greedy")
    failure = json.loads(batched.failure_file.read_text())
    assert failure["type"] == "CorruptResultError" and "move the run folder" in failure["error"]
    assert latency.is_complete()  # the run after the corrupt one was still re-derived
