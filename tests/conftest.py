"""Shared fixtures: MATH500 and traces from ../shared, a per-test outputs folder, and the tiny-model
engines that tests share (one server per configuration for the whole session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tts_utils.paths import REPO_ROOT

SHARED = REPO_ROOT.parent / "shared"
MATH500 = Path(os.environ.get("TTS_MATH500", SHARED / "data" / "math500.jsonl"))
TRACES = Path(os.environ.get("TTS_TRACES", SHARED / "data" / "traces"))
R1_TOKENIZER = Path(os.environ.get("TTS_R1_TOKENIZER", SHARED / "tokenizers" / "r1-distill-qwen"))

# Two xdist workers, two CPU engines at once: vLLM's automatic binding puts every TP-1 engine on core 0
# (the other core reserved), so side by side they share one core. Measured with the tiny model, two
# engines started together: 41.7 and 48.0 s to /health with the automatic binding, 28.2 and 28.2 s
# with one core each (28.6 s alone). Each worker's TP-1 engines get their own core; the kit replaces
# this binding for TP > 1 (one group per rank) and placement: ray sets its own per task.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
    _CORES = sorted(os.sched_getaffinity(0))
    if len(_CORES) > 1:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(_CORES[int(_WORKER[2:]) % len(_CORES)])


def _shared(path: Path, variable: str) -> Path:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {path}")
        pytest.skip(f"{path} not found (set {variable})")
    return path


@pytest.fixture(scope="session")
def math500_path() -> Path:
    """The MATH500 file the tests use (never copied into the repo)."""
    return _shared(MATH500, "TTS_MATH500")


@pytest.fixture(scope="session")
def traces_dir() -> Path:
    """Real R1-Distill-Qwen outputs (../shared/data/traces)."""
    return _shared(TRACES, "TTS_TRACES")


@pytest.fixture(scope="session")
def r1_tokenizer_path() -> Path:
    """The R1-Distill-Qwen tokenizer (../shared/tokenizers/r1-distill-qwen)."""
    return _shared(R1_TOKENIZER, "TTS_R1_TOKENIZER")


@pytest.fixture(scope="session")
def shared_trace_env(traces_dir: Path, r1_tokenizer_path: Path) -> dict[str, str]:
    """The variables that let the embedded default replay the public real traces offline: the local
    copies in ../shared stand in for the pinned download and the hub's tokenizer (CI has neither)."""
    return {"TTS_TRACES_DIR": str(traces_dir), "TTS_TRACE_TOKENIZER": str(r1_tokenizer_path)}


@pytest.fixture(autouse=True)
def outputs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes results into its own folder; the model cache stays shared."""
    folder = tmp_path / "outputs"
    monkeypatch.setenv("TTS_OUTPUTS_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    from tts_utils.engine.tiny_model import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def _server(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory, **engine):
    from tts_utils.engine.server import EngineConfig, VLLMServer

    # Compiled, not eager (unlike the kit's own tiny runs): under a loaded suite an eager worker of
    # this server once died of SIGILL on a 2-token prompt; these servers start once per session.
    config = EngineConfig(str(tiny_model_path), "tiny", max_model_len=2048, cpu_kv_cache_gib=1, **engine)
    with VLLMServer(config, tmp_path_factory.mktemp("engine") / "engine.log") as server:
        yield server


@pytest.fixture(scope="session")
def greedy_server(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real vLLM CPU engine, greedy, TP=1, on the tiny model; started once per session."""
    yield from _server(tiny_model_path, tmp_path_factory)


@pytest.fixture(scope="session")
def ngram_server(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same engine with the paper's n-gram speculation (5 tokens, look-up 1..4), and the
    break-even sweep's worker extension reachable through dev-mode /collective_rpc."""
    from tts_utils.engine.server import SpeculativeConfig
    from tts_utils.study.acceptance_sweep import EXTENSION

    yield from _server(tiny_model_path, tmp_path_factory, speculative=SpeculativeConfig(5, 1, 4),
                       extra_args=("--worker-extension-cls", EXTENSION), env=(("VLLM_SERVER_DEV_MODE", "1"),))


# Each of these tests is an xdist scope of its own (one chain per profile, one render per study), so
# that the long tests of one module run on both cores; every other test is scheduled with its module.
SPREAD = ("tests/test_profiles.py::test_a_shipped_profile_runs_the_whole_chain_on_the_cpu[",
          "tests/test_reference.py::test_a_committed_study_equals_its_render_with_todays_kit[")


def _scope(nodeid: str) -> str:
    return nodeid if nodeid.startswith(SPREAD) else nodeid.split("::")[0]


# The longest module scopes after the SPREAD tests, longest first (seconds on 2 cores, 2026-12-07):
# faults 335, notebooks 267, placement 161, replay_engine 160, bad_input 89, grid 83, engine 59.
LONG_MODULES = ("tests/test_faults.py", "tests/test_notebooks.py", "tests/test_placement.py",
                "tests/test_replay_engine.py", "tests/test_bad_input.py", "tests/test_grid.py", "tests/test_engine.py")


def _order(item: pytest.Item) -> int:
    if item.nodeid.startswith(SPREAD):
        return 0
    module = item.nodeid.split("::")[0]
    return 1 + LONG_MODULES.index(module) if module in LONG_MODULES else 1 + len(LONG_MODULES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest scopes are handed out first (the ``SPREAD`` chains, then ``LONG_MODULES``), so that
    the short ones fill the end instead of one long scope while the other worker idles (stable: a
    module's tests keep their order)."""
    items.sort(key=_order)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``make test`` (``-n 2``): each module is one scope, so its module and session fixtures (the shared
    engines) start once, and each ``SPREAD`` test is its own. Not ``--dist loadgroup``: under pytest 9.2
    xdist 3.8 cannot rename a test to its group (``item._nodeid``), so every test was scheduled alone
    and each worker started the session engines of test_engine.py and test_replay_engine.py."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # xdist would hand out the scopes with most tests first
    class ModuleScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return ModuleScopes(config, log)
