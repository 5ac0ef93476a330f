"""The chain's log: a notebook that fails, in a cell or by losing its kernel, is never silent."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tts_utils import pipeline
from tts_utils.errors import ChainError
from tts_utils.paths import reports_dir


def _notebook(tmp_path: Path, *sources: str) -> Path:
    path = tmp_path / "99_probe.ipynb"
    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run a hand-made notebook through ``run_notebook`` as if it were one of the chain."""

    def run(*sources: str) -> Path:
        path = _notebook(tmp_path, *sources)
        monkeypatch.setattr(pipeline, "notebook_path", lambda name: path)
        monkeypatch.setattr(pipeline, "declared_parameters", lambda name: {})
        return pipeline.run_notebook("99_probe", {}, "probe")

    return run


def test_a_clean_notebook_logs_its_start_output_and_end(probe) -> None:
    html = probe("print('hello from the kernel')")
    log = (reports_dir("probe") / "chain.log").read_text()
    assert html.exists() and "== 99_probe: running" in log and "== 99_probe: done in" in log
    assert "hello from the kernel" in log and "load average" in log
    assert "overflow-x: auto" in html.read_text()  # wide tables scroll inside the page


def test_a_failing_cell_leaves_its_traceback_in_the_log(probe) -> None:
    with pytest.raises(ChainError, match=r"99_probe failed in cell 2 \(ZeroDivisionError"):
        probe("x = 1", "x / 0")
    log = (reports_dir("probe") / "chain.log").read_text()
    assert "ZeroDivisionError" in log and "x / 0" in log and "\x1b[" not in log
    assert (reports_dir("probe") / "99_probe.html").exists()


def test_a_dead_kernel_is_a_chain_error_with_a_log(probe) -> None:
    with pytest.raises(ChainError, match="99_probe failed outside its cells"):
        probe("import os; os._exit(3)")
    log = (reports_dir("probe") / "chain.log").read_text()
    assert "failed outside its cells (DeadKernelError" in log and "Traceback" in log and "load average" in log
    assert (reports_dir("probe") / "99_probe.html").exists()


def test_an_engine_port_race_runs_the_notebook_once_more(probe) -> None:
    """The kit picks a free port; another process may bind it before the engine does (10-30 s later)."""
    html = probe("""
import json
from tts_utils.paths import study_dir
failure = study_dir("probe") / "tiny-baseline-tp1-0123456789" / "failure.json"
if not failure.exists():  # first attempt: the sweep recorded the engine's start-up failure
    failure.parent.mkdir(parents=True)
    failure.write_text(json.dumps({"type": "EngineStartError", "error": "port already in use (engine exit code 1, log x)"}))
    raise RuntimeError("1 of 1 runs failed: tiny-baseline-tp1-0123456789: port already in use")
print("second attempt ran")
""")
    log = (reports_dir("probe") / "chain.log").read_text()
    assert html.exists() and "second attempt ran" in log and "attempt 2" in log
    assert "lost the port the kit chose for it to another process" in log


def test_a_real_failure_is_not_tried_twice(probe) -> None:
    with pytest.raises(ChainError):
        probe("raise RuntimeError('a real bug')")
    log = (reports_dir("probe") / "chain.log").read_text()
    assert "attempt 1" in log and "attempt 2" not in log


def test_the_race_is_recognised_in_the_engine_s_own_words() -> None:
    from tts_utils.engine.server import diagnose

    message = f"{diagnose('OSError: [Errno 98] Address already in use')} (engine exit code 1, log engine.log)\ntail"
    assert pipeline.port_race_message(message)
    assert not pipeline.port_race_message("bad engine flag (engine exit code 2, log engine.log)")
