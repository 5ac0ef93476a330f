"""The warnings that say loudly when numbers cannot be read as science, written once.

``PLUMBING_WARNING``: the embedded default (the tiny random-weight model on CPU);
``SYSTEM_ONLY_WARNING``: real architectures with random weights; ``RANDOM_WEIGHTS_WARNING``: a folder
written by ``random_weights`` loaded as a checkpoint. ``shout`` frames one for a console
or a notebook. Each warning opens with its label (``PLUMBING_LABEL``, ...); the ``*_NOTE`` forms say
the same in a sentence about one model's numbers (report/findings.py, 01-03's closing cells). Used by
notebook.py (00-04), pipeline.py, report/landing.py and report/findings.py.
"""

from __future__ import annotations

PLUMBING_LABEL, SYSTEM_ONLY_LABEL, RANDOM_WEIGHTS_LABEL = "EMBEDDED DEFAULT", "SYSTEM-ONLY MODE", "RANDOM WEIGHTS"
PLUMBING_WARNING = (
    f"{PLUMBING_LABEL}: a random-weight tiny model on CPU. These numbers measure the kit's plumbing, "
    "not reasoning, accuracy or any real hardware's serving speed."
)
SYSTEM_ONLY_WARNING = (
    f"{SYSTEM_ONLY_LABEL}: real architectures with random weights (load_format: dummy). Latency and cost "
    "are those of the architecture on this hardware; the runs' own accuracy is not computed."
)
RANDOM_WEIGHTS_WARNING = (
    RANDOM_WEIGHTS_LABEL + ": {models} loaded from a folder written by tts_utils random_weights. "
    "The engine path is the real one, but the text is noise: accuracy and n-gram acceptance are those of noise, not of the model; "
    "latency and cost are the architecture's on this hardware."
)
# The warnings' words for one model's numbers in a sentence.
PLUMBING_NOTE = f"{PLUMBING_LABEL}: the kit's plumbing, not reasoning, accuracy or real serving speed"
SYSTEM_ONLY_NOTE = f"{SYSTEM_ONLY_LABEL}: random weights, so latency and cost only, no accuracy"
RANDOM_WEIGHTS_NOTE = (f"{RANDOM_WEIGHTS_LABEL}: the text is noise, so accuracy and n-gram acceptance are "
                       "those of noise; latency and cost are the architecture's")
# Registry keys of the kit's own random-weight models: their accuracy and timings are plumbing.
PLUMBING_MODELS = frozenset({"tiny", "tiny-draft"})
# results.csv / summary.csv ``weights``: "real" for a checkpoint, "random" for random weights (the
# tiny model, system-only mode, or a folder with the random_weights marker).
REAL_WEIGHTS, RANDOM_WEIGHTS = "real", "random"


def real_weight_rows(frame):
    """The rows of a results frame whose model ran with real weights (not the tiny model, and not
    random weights by their ``weights`` column, which runs before that column existed lack)."""
    if frame.empty:
        return frame
    real = ~frame["model"].isin(PLUMBING_MODELS)
    if "weights" in frame:
        real &= frame["weights"].fillna(REAL_WEIGHTS) != RANDOM_WEIGHTS
    return frame[real]
WIDTH = 100


def random_weights_warning(config) -> str:
    """``RANDOM_WEIGHTS_WARNING`` naming a study's random-weights folders (empty if it has none)."""
    models = config.random_weight_models
    return RANDOM_WEIGHTS_WARNING.format(models=", ".join(models)) if models else ""


def shout(*lines: str) -> str:
    """``lines`` between two rows of exclamation marks, each line starting with ``!!``."""
    return "\n".join(["!" * WIDTH, *(f"!! {line}" for line in lines), "!" * WIDTH])
