"""What every command line of the kit shares: errors are one line on stderr with exit code 2.

argparse's own errors (an unknown flag, ``--spec-tokens abc``) print the usage and then the error;
``OneLineParser`` prints the error alone, with a pointer to ``--help``. Used by the CLIs of
pipeline, sweep, acceptance_sweep, estimate and replay.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from tts_utils.config import ConfigError

EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``error: ... (see PROG --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def fail(error: BaseException) -> int:
    """Print ``error`` as one line on stderr; the exit code for bad input."""
    text = " ".join(str(error).split("\n")[0].split()) or type(error).__name__
    print(f"error: {text}", file=sys.stderr)
    return EXIT_BAD_INPUT


def check_output_file(path: str | Path, flag: str) -> None:
    """An output file the command will write at the end: not a folder, and its folder writable
    (or creatable), checked before the expensive part."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ConfigError(f"{flag} {path}: permission denied")
