"""The warnings that say loudly when numbers cannot be read as science, written once.

``PLUMBING_WARNING``: the embedded default (the tiny random-weight model on CPU);
``SYSTEM_ONLY_WARNING``: real architectures with random weights. ``shout`` frames one for a console
or a notebook. Used by notebook.py (00-04), pipeline.py and report/landing.py.
"""

from __future__ import annotations

PLUMBING_WARNING = (
    "EMBEDDED DEFAULT: a random-weight tiny model on CPU. These numbers measure the kit's plumbing, "
    "not reasoning, accuracy or any real hardware's serving speed."
)
SYSTEM_ONLY_WARNING = (
    "SYSTEM-ONLY MODE: real architectures with random weights (load_format: dummy). Latency and cost "
    "are those of the architecture on this hardware; accuracy is not computed."
)
# Registry keys of the kit's own random-weight models: their accuracy and timings are plumbing.
PLUMBING_MODELS = frozenset({"tiny", "tiny-draft"})
WIDTH = 100


def shout(*lines: str) -> str:
    """``lines`` between two rows of exclamation marks, each line starting with ``!!``."""
    return "\n".join(["!" * WIDTH, *(f"!! {line}" for line in lines), "!" * WIDTH])
