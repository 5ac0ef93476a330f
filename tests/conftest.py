"""Shared fixtures: MATH500 from ../shared, a per-test outputs folder, one greedy tiny-model server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tts_utils.paths import REPO_ROOT

MATH500 = Path(os.environ.get("TTS_MATH500", REPO_ROOT.parent / "shared" / "data" / "math500.jsonl"))


@pytest.fixture(scope="session")
def math500_path() -> Path:
    """The MATH500 file the tests use (never copied into the repo)."""
    if not MATH500.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs MATH500 at {MATH500}")
        pytest.skip(f"MATH500 not found at {MATH500} (set TTS_MATH500)")
    return MATH500


@pytest.fixture(autouse=True)
def outputs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes results into its own folder; the model cache stays shared."""
    folder = tmp_path / "outputs"
    monkeypatch.setenv("TTS_OUTPUTS_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    from tts_utils.tiny_model import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def greedy_server(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real vLLM CPU engine, greedy, TP=1, on the tiny model; started once per session."""
    from tts_utils.engine import EngineConfig, VLLMServer

    config = EngineConfig(str(tiny_model_path), "tiny", max_model_len=2048, cpu_kv_cache_gib=1)
    with VLLMServer(config, tmp_path_factory.mktemp("engine") / "engine.log") as server:
        yield server

