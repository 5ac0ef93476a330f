"""Where every file of the kit lives; the one module that knows.

Anchored on this file, so JupyterLab (cwd = notebooks/) and papermill or make (cwd = repo root)
resolve the same places. Two environment variables move the writable trees, which the tests use:
``TTS_OUTPUTS_DIR`` (default ``outputs/``) and ``TTS_CACHE_DIR`` (default ``.cache/``).
Used by every notebook and most modules.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "tts_utils"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"
DOCS_DIR = REPO_ROOT / "docs"
MODEL_SHAPES_DIR = PACKAGE_DIR / "model_shapes"
BUILTIN_PROBLEMS_FILE = PACKAGE_DIR / "builtin_problems.jsonl"


def outputs_dir() -> Path:
    """Root of everything the kit generates (gitignored)."""
    return Path(os.environ.get("TTS_OUTPUTS_DIR", REPO_ROOT / "outputs")).resolve()


def cache_dir() -> Path:
    """Where built artefacts (the tiny model, system-only model folders) are kept and reused."""
    return Path(os.environ.get("TTS_CACHE_DIR", REPO_ROOT / ".cache")).resolve()


def study_dir(study: str) -> Path:
    """Run folders of one study (one profile's results); 04_analysis reads one of these."""
    return outputs_dir() / "runs" / study


def reports_dir(study: str) -> Path:
    """Executed notebooks and their HTML renderings for one study."""
    return outputs_dir() / "reports" / study


def replays_dir(study: str) -> Path:
    """Replays of real traces (n-gram steps, accuracy by budget) written by 03_spec for one study."""
    return outputs_dir() / "replays" / study


def acceptance_dir(study: str) -> Path:
    """Break-even sweeps (ms per token at chosen acceptance lengths) written by 03_spec."""
    return outputs_dir() / "acceptance" / study


def figures_dir(study: str) -> Path:
    """Figures and tables written by 04_analysis."""
    return outputs_dir() / "figures" / study


def profile_path(profile: str) -> Path:
    """A profile name (``smoke``) or a path to a YAML file."""
    candidate = Path(profile)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        return candidate.resolve()
    return PARAMS_DIR / f"{profile}.yaml"
