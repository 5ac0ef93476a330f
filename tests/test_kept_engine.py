"""A sequential sweep keeps an engine for the next run of the same engine configuration
(study/session.py ``engines_kept``), and never holds two: the keeper's rules, with a stand-in server
process (a ``sleep``) in place of vLLM's. The real engine path: tests/test_grid.py's batched pass,
whose latency run takes the batched pass's engine."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from tts_utils.engine.server import EngineConfig
from tts_utils.study import session

CONFIG = EngineConfig("/models/tiny", "tiny")


class StandIn:
    """What ``_take_engine`` uses of a VLLMServer: its config, its process, start and stop."""

    started: list[StandIn] = []

    def __init__(self, config: EngineConfig, log_path: Path, startup_timeout_s: float = 0.0) -> None:
        self.config, self.log_path, self.port, self.process, self.startup_s = config, log_path, 1, None, None
        self.headers, self.base_url = {}, "http://127.0.0.1:1"

    def start(self) -> None:
        self.process = subprocess.Popen(["sleep", "60"])
        self.startup_s = 1.0
        StandIn.started.append(self)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None


def _plan(config: EngineConfig) -> SimpleNamespace:
    return SimpleNamespace(engine=config, startup_timeout_s=1.0)


def test_the_next_run_of_one_configuration_takes_the_kept_engine_and_another_stops_it(tmp_path, monkeypatch):
    monkeypatch.setattr(session, "VLLMServer", StandIn)
    StandIn.started = []
    with session.engines_kept():
        first, kept_from = session._take_engine(_plan(CONFIG), tmp_path / "a.log")
        assert kept_from == "" and len(StandIn.started) == 1
        session._KEPT.get().server, session._KEPT.get().started_by = first, "run-a"
        again, kept_from = session._take_engine(_plan(CONFIG), tmp_path / "b.log")
        assert again is first and kept_from == "run-a" and len(StandIn.started) == 1
        assert "the engine of run run-a" in (tmp_path / "b.log").read_text()
        session._KEPT.get().server = again
        other, kept_from = session._take_engine(_plan(replace(CONFIG, tensor_parallel_size=2)), tmp_path / "c.log")
        assert kept_from == "" and first.process is None and other.process.poll() is None  # stopped first
        session._KEPT.get().server = other
        other.process.kill()  # a kept engine that died is not taken
        other.process.wait()
        fresh, kept_from = session._take_engine(_plan(replace(CONFIG, tensor_parallel_size=2)), tmp_path / "d.log")
        assert fresh is not other and kept_from == "" and len(StandIn.started) == 3
        session._KEPT.get().server = fresh
    assert fresh.process is None  # stopped at the end of the sweep
    alone, _ = session._take_engine(_plan(CONFIG), tmp_path / "e.log")  # outside a sweep: nothing is kept
    assert session._KEPT.get() is None
    alone.stop()


def test_a_failed_session_does_not_keep_its_engine(tmp_path, monkeypatch):
    monkeypatch.setattr(session, "VLLMServer", StandIn)
    StandIn.started = []
    plan = SimpleNamespace(engine=CONFIG, startup_timeout_s=1.0, run_name="run-a")
    failing = session.Session(plan, SimpleNamespace(engine_log=tmp_path / "a.log", segments_file=tmp_path / "s.jsonl",
                                                    requests_file=tmp_path / "r.jsonl"),
                              None, True, "", [], [])
    monkeypatch.setattr(session, "make_client", _broken_client)
    with session.engines_kept(), pytest.raises(RuntimeError, match="no /version"):
        session._run_on_engine(failing)
    assert StandIn.started[0].process is None and session._KEPT.get() is None


class _broken_client:  # noqa: N801 - stands in for make_client(...): its first call fails
    def __init__(self, headers) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *_) -> None:
        pass

    def get(self, url: str):
        raise RuntimeError("no /version")
