"""Ray placement (``placement: ray``): runs side by side on disjoint (logical) GPUs, a killed worker
retried from disk, failures recorded, and clear errors before anything starts. The engine tests run
the real vLLM CPU engine on the tiny model; the others run placement around a stand-in ``run_one``."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tts_utils.config import StudyConfig
from tts_utils.engine.server import free_port, process_group_alive
from tts_utils.errors import ConfigError, SweepError
from tts_utils.store import read_records
from tts_utils.study.placement import AGENT_WAIT_MS, ATTEMPTS_FILE, run_placed
from tts_utils.study.plan import plan_runs
from tts_utils.study.sweep import _record_failure, execute, run_sweep

ray = pytest.importorskip("ray")

# Columns of results.csv that depend on the tokens, not on timing.
RESULT_COLUMNS = ["request_id", "problem_id", "budget_tokens", "output_tokens", "hit_budget", "finish_reason",
                  "strict_correct", "lenient_correct", "grade_status"]


def _wait_for(condition, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def _config(math500_path: Path, study: str, **values) -> StudyConfig:
    values = {"num_problems": 2, "budgets": [32], "cpu_kv_cache_gib": 1, **values}
    return StudyConfig.create(study=study, dataset=str(math500_path), extra_engine_args=["--enforce-eager"],
                              **values)


def _engine_pids(log: Path) -> list[int]:
    return [int(pid) for pid in re.findall(r"APIServer pid=(\d+)", log.read_text(errors="replace"))]


def _tokens(folder) -> dict[str, list[int]]:
    return {r["request_id"]: r["token_ids"] for r in read_records(folder.requests_file)}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A Ray cluster the kit did not start (what ``ray_address`` names): one node, 2 logical GPUs.

    ``ray start --block`` in its own process group: stopping that group stops this cluster only.
    """
    port = free_port()
    log = tmp_path_factory.mktemp("ray-cluster") / "ray-start.log"
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
               "--num-cpus=2", "--num-gpus=2", "--include-dashboard=false", "--disable-usage-stats",
               f"--object-store-memory={256 * 2**20}"]
    # Token authentication off for this throw-away cluster: a driver needs the token otherwise.
    # A loaded 2-core machine (the chain matrix beside it) registers the node slowly: Ray's default
    # wait then gives up ("GCS cannot find the node"), and the raylet stops itself when its agents take
    # more than 30 s to write their ports (seen: "Timed out waiting for file .../metrics_agent_port").
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_raylet_start_wait_time_s": "120",
           "RAY_agent_register_timeout_ms": str(AGENT_WAIT_MS)}
    with open(log, "wb") as out:
        head = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_for(lambda: "Ray runtime started" in log.read_text(errors="replace") or head.poll() is not None,
                  120, "the Ray head to start")
        assert head.poll() is None, log.read_text(errors="replace")
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # `ray start --block` stops the processes it started on SIGTERM
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # whatever of its group is left
        except ProcessLookupError:
            pass


def test_a_run_needing_more_gpus_than_any_node_is_refused_at_once(math500_path) -> None:
    """On a local cluster the kit starts (2 logical GPUs), a TP 4 run would wait forever: refused."""
    plan = plan_runs(_config(math500_path, "too-big"), "01_greedy")[0][0]
    plan = dataclasses.replace(plan, engine=dataclasses.replace(plan.engine, tensor_parallel_size=4))
    started = time.monotonic()
    with pytest.raises(ConfigError) as error:
        run_placed([plan], execute, logical_gpus=2)
    seconds = time.monotonic() - started
    print(f"\nrefused after {seconds:.1f} s: {error.value}")
    assert len(str(error.value).splitlines()) == 1
    assert re.search(r"needs 4 GPUs on one node .* has 2; nothing was started", str(error.value))
    assert seconds < 60 and not plan.folder().path.exists()
    assert not ray.is_initialized()  # the kit's local cluster is shut down


def test_a_local_cluster_that_misses_rays_startup_wait_is_started_again(monkeypatch, capsys) -> None:
    """Ray waits a fixed 30 s for a local raylet (CI once failed so, the chain matrix beside it): the
    kit stops what the failed attempt left running and starts the cluster again; other errors pass."""
    from tts_utils.study import placement

    attempts: list[dict] = []
    leftovers: list[subprocess.Popen] = []

    def init(**args):  # stands in for ray.init: the first attempt leaves a process and times out
        attempts.append(args)
        if len(attempts) == 1:
            leftovers.append(subprocess.Popen(["sleep", "300"]))
            raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "init", init)
    placement._start_local({"address": "local"})
    assert attempts == [{"address": "local"}] * 2
    assert leftovers[0].poll() is not None  # stopped (and reaped) before the second attempt
    assert "did not register within Ray's 30 s (attempt 1 of 3" in capsys.readouterr().err

    def broken(**args):
        raise RuntimeError("Version mismatch")

    monkeypatch.setattr(ray, "init", broken)
    with pytest.raises(RuntimeError, match="Version mismatch"):
        placement._start_local({"address": "local"})
    attempts.clear()

    def never(**args):
        attempts.append(args)
        raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(ray, "init", never)
    with pytest.raises(Exception, match="timed out during startup"):
        placement._start_local({"address": "local"})
    assert len(attempts) == placement.LOCAL_START_ATTEMPTS


def test_sweep_on_a_cluster_records_a_failure_and_finishes_the_other_run(math500_path, ray_cluster, capsys,
                                                                         monkeypatch, outputs_dir) -> None:
    """run_sweep with placement: ray and ray_address, around a stand-in for ``execute``: the TP 2 run
    raises, the TP 1 run completes; failure.json as in the sequential path, one line per outcome."""
    import tts_utils.study.sweep as sweep

    def stand_in(plan) -> str:  # a closure: Ray ships it by value to the worker
        if plan.tensor_parallel_size == 2:
            raise RuntimeError("engine said no\nsecond line")
        return f"completed in {os.environ['TTS_OUTPUTS_DIR']}"

    monkeypatch.setattr(sweep, "execute", stand_in)
    config = _config(math500_path, "cluster", tp_sizes=[1, 2], placement="ray", ray_address=ray_cluster)
    plans = {p.tensor_parallel_size: p for p in plan_runs(config, "02_tp")[0]}
    with pytest.raises(SweepError, match=rf"1 of 2 runs failed: {plans[2].run_name}: engine said no$"):
        run_sweep(config, "02_tp")
    printed = capsys.readouterr().out
    print(printed)
    assert f"{plans[1].run_name}: completed in {outputs_dir}" in printed
    assert f"{plans[2].run_name}: failed (see failure.json) [" in printed
    failed = plans[2].folder()
    assert json.loads(failed.failure_file.read_text())["error"] == "engine said no\nsecond line"
    assert failed.status()["state"] == "incomplete"
    attempts = {tp: read_records(p.folder().path / ATTEMPTS_FILE) for tp, p in plans.items()}
    assert [len(a) for a in attempts.values()] == [1, 1]
    assert attempts[2][0]["gpu_ids"] == "0,1" and attempts[2][0]["cpu_binding"] == "0|1"
    assert attempts[1][0]["gpu_ids"] in {"0", "1"} and attempts[1][0]["cpu_binding"] == attempts[1][0]["gpu_ids"]
    assert not ray.is_initialized()


@pytest.mark.engine
def test_runs_side_by_side_and_a_killed_worker_resumes_from_disk(math500_path, ray_cluster) -> None:
    """Two CPU engine runs of one configuration (studies "clean" and "killed") on the cluster's 2
    logical GPUs run at the same time, each pinned to its own core. SIGKILL the Ray worker of one once
    it has a finished request: Ray retries the task, the retry runs only the missing requests, its
    first engine is gone, and its results equal the clean run's."""
    values = {"num_problems": 4, "budgets": [256]}
    plans = [plan_runs(_config(math500_path, study, **values), "01_greedy")[0][0] for study in ("killed", "clean")]
    killed, clean = (plan.folder() for plan in plans)
    seen: dict = {}

    def kill_worker_after_one_request() -> None:
        _wait_for(lambda: len(read_records(killed.requests_file)) >= 1, 300, "a finished request")
        seen["worker"] = read_records(killed.path / ATTEMPTS_FILE)[0]["pid"]
        seen["engine"] = _engine_pids(killed.engine_log)[-1]
        os.kill(seen["worker"], signal.SIGKILL)
        seen["killed_at"] = time.time()
        # Read what was kept after the kill: a request may finish between the wait and the kill, and the
        # retry cannot write before its own engine has started (tens of seconds).
        seen["kept"] = [r["request_id"] for r in read_records(killed.requests_file)]

    killer = threading.Thread(target=kill_worker_after_one_request, daemon=True)
    killer.start()
    started = time.monotonic()
    rows = run_placed(plans, execute, ray_address=ray_cluster, on_failure=_record_failure)
    killer.join(5)
    print(f"\nboth runs: {time.monotonic() - started:.0f} s; {len(seen['kept'])} request(s) kept at the kill")
    for row in rows:
        print(f"{row['run_name']}: {row['outcome']} on GPU {row['gpu_ids']} (cores {row['cpu_binding']}), "
              f"{row['attempts']} attempt(s), last {row['seconds']} s")
    assert [row["outcome"] for row in rows] == ["resumed and completed", "completed"]
    assert [row["attempts"] for row in rows] == [2, 1]
    _wait_for(lambda: not process_group_alive(seen["engine"]), 10, "the killed worker's engine to exit")
    # Side by side: the clean run and the killed run's first attempt overlap, on different cores.
    first = read_records(killed.path / ATTEMPTS_FILE)[0]
    assert max(first["started_at"], rows[1]["started_at"]) < min(seen["killed_at"], rows[1]["finished_at"])
    assert {first["cpu_binding"], rows[1]["cpu_binding"]} == {"0", "1"}
    for binding, folder in ((first["cpu_binding"], killed), (rows[1]["cpu_binding"], clean)):
        assert f"VLLM_CPU_OMP_THREADS_BIND='{binding}'" in folder.engine_log.read_text(errors="replace")
    # The retry: a new worker, only the missing requests, nothing twice, the clean run's results.
    attempts = read_records(killed.path / ATTEMPTS_FILE)
    assert len(attempts) == 2 and attempts[0]["pid"] == seen["worker"] != attempts[1]["pid"]
    ids = [r["request_id"] for r in read_records(killed.requests_file)]
    assert len(ids) == len(set(ids)) == 4 and ids[:len(seen["kept"])] == seen["kept"] and len(seen["kept"]) < 4
    assert killed.segments()[-1]["requests_run"] == 4 - len(seen["kept"])
    assert killed.is_complete() and clean.is_complete() and not killed.failure_file.exists()
    assert _tokens(killed) == _tokens(clean) and all(_tokens(clean).values())
    import pandas as pd

    results = [pd.read_csv(folder.results_file)[RESULT_COLUMNS] for folder in (killed, clean)]
    pd.testing.assert_frame_equal(*results)
    assert not ray.is_initialized()
