"""What every command line of the kit shares: errors are one line on stderr with exit code 2.

argparse's own errors (an unknown flag, ``--spec-tokens abc``) print the usage and then the error;
``OneLineParser`` prints the error alone, with a pointer to ``--help``; ``run`` turns the kit's
bad-input errors into that line. ``study_parser`` and ``study_config`` give every command that runs
a study the same ``--profile`` and ``--set``. Used by every CLI of the kit (``python -m tts_utils``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import yaml

from tts_utils.config import StudyConfig, read_profile
from tts_utils.errors import ConfigError, CorruptResultError, StudyLockedError
from tts_utils.hardware import detect
from tts_utils.paths import profile_path

EXIT_BAD_INPUT = 2
# Errors that mean the input is wrong (or another sweep holds the study): one line, exit code 2.
BAD_INPUT = (ConfigError, StudyLockedError, CorruptResultError)


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


def run(command: Callable[[], int | None]) -> int:
    """Run a CLI's work: the kit's bad-input errors become one line and exit code 2; the
    command's own code (None = 0) otherwise. Every ``main`` of the kit goes through here."""
    try:
        code = command()
    except BAD_INPUT as error:
        return fail(error)
    return 0 if code is None else code


def default_profile() -> str:
    """``paper`` when an NVIDIA GPU is visible, else the embedded default ``smoke``."""
    return "paper" if detect().accelerator == "gpu" else "smoke"


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as YAML (``[1024, 4096]``, ``true``, ``14b``)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes key=value, got {pair!r}")
        key = key.strip()
        if key in {"model", "study", "dataset"}:
            overrides[key] = value
            continue
        try:
            loaded = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML ({getattr(error, 'problem', None) or error}); "
                              "lists are written [a, b], text with spaces or ':' in quotes") from None
        if "#" in value and "#" not in yaml.safe_dump(loaded):
            # YAML reads " #..." as a comment and would drop the rest of the value without a word.
            raise ConfigError(f"--set {pair!r}: '#' starts a YAML comment and would cut the value; "
                              f"quote it: {key}='\"{value}\"'")
        overrides[key] = loaded
    return overrides


def study_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A command-line parser with the ``--profile`` and ``--set`` options of every command that
    runs a study (this module, sweep, acceptance_sweep, estimate)."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--profile", default="auto", help="smoke, paper, a YAML path, or auto (default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser


def study_config(args: argparse.Namespace) -> StudyConfig:
    """The checked configuration that ``--profile`` and ``--set`` give. Raises ConfigError."""
    return resolve_parameters(args.profile, parse_overrides(args.overrides))[1]


def resolve_parameters(profile: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], StudyConfig]:
    """Profile values with overrides on top, checked as a whole."""
    name = default_profile() if profile == "auto" else profile
    values = {**read_profile(profile_path(name)), **overrides}
    return values, StudyConfig.create(**values)
