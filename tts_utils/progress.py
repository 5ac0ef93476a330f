"""Progress bars that suit where a notebook runs: a widget in JupyterLab, one line in a report.

In JupyterLab (ipywidgets installed, a Jupyter server attached) a sweep shows a live widget bar; in
a terminal, a tqdm bar; in a headless run (papermill, the rendered HTML reports) nothing until the
end, then one summary line on stdout, because a text bar in a captured notebook becomes one stderr
line per update. ``quiet_library_bars`` does the same for the bars of Hugging Face libraries;
``strip_ansi`` removes terminal colour codes from text bound for a report.
Used by sweep.py (01-03), notebook.py (all notebooks), pipeline.py and report/landing.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Terminal escape sequences (colours, cursor moves), as in tracebacks and nvidia-smi output.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences."""
    return ANSI_ESCAPE.sub("", text)


def display_mode() -> str:
    """``widget`` (a Jupyter frontend renders widgets), ``terminal`` (stderr is a TTY) or ``line``."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    in_kernel = shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
    # Jupyter Server (JupyterLab, Notebook 7) names the session of the kernels it starts; papermill
    # and nbclient start kernels without one, and nothing renders widgets there.
    if in_kernel and os.environ.get("JPY_SESSION_NAME") and importlib.util.find_spec("ipywidgets"):
        return "widget"
    if not in_kernel and sys.stderr is not None and sys.stderr.isatty():
        return "terminal"
    return "line"


@contextmanager
def progress(total: int, description: str, unit: str = "req") -> Iterator[Callable[[], None]]:
    """Count finished items; yields the function to call once per item.

    ``with progress(len(specs), run_name) as advance: ... advance()``. Headless, the only output
    is ``<description>: 8/8 req in 12.3 s`` when the block ends (``stopped at`` if it raised).
    """
    mode = display_mode()
    bar = None
    if mode == "widget":
        from tqdm.notebook import tqdm

        bar = tqdm(total=total, desc=description, unit=unit)
    elif mode == "terminal":
        from tqdm import tqdm

        bar = tqdm(total=total, desc=description, unit=unit)
    done = 0
    started = time.monotonic()

    def advance() -> None:
        nonlocal done
        done += 1
        if bar is not None:
            bar.update()

    finished = False
    try:
        yield advance
        finished = True
    finally:
        if bar is not None:
            bar.close()
        else:
            seconds = time.monotonic() - started
            state = "" if finished else " (stopped)"
            print(f"{description}: {done}/{total} {unit} in {seconds:.1f} s{state}", flush=True)


def quiet_library_bars() -> None:
    """Turn off the Hugging Face libraries' own bars where no widget can show them.

    Their text bars (a model written, a tokenizer or data set downloaded) would land in a headless
    report as red stderr lines. Set through the environment, before the libraries are imported
    (they read it once), and switched off in any already imported.
    """
    if display_mode() != "line":
        return
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(name, "1")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils.logging import disable_progress_bar

        disable_progress_bar()
    if "datasets" in sys.modules:
        from datasets.utils import disable_progress_bars as disable_datasets_bars

        disable_datasets_bars()
