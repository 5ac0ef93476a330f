"""Run the notebook chain headlessly with papermill and render each executed notebook to HTML.

    python -m tts_utils.pipeline reproduce [--profile smoke|paper|FILE|auto] [--set key=value ...]
    python -m tts_utils.pipeline run 03_spec [--profile ...] [--set model=14b]
    python -m tts_utils.pipeline check params/paper.yaml

Each notebook receives only the profile keys its parameters cell declares; a key no notebook
declares, a bad value or malformed YAML is a one-line error before anything runs. Executed
notebooks and HTML go to ``outputs/reports/<study>/``. A failing notebook stops the chain, names
the failing cell, and keeps the partial notebook; finished runs stay on disk, so a re-run resumes.
Used by the Makefile.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tts_utils.config import ConfigError, StudyConfig, read_profile
from tts_utils.hardware import detect
from tts_utils.paths import NOTEBOOKS_DIR, profile_path, reports_dir
from tts_utils.tiny_model import PLUMBING_WARNING

CHAIN = ("00_setup", "01_greedy", "02_tp", "03_spec", "04_analysis")


def default_profile() -> str:
    """``paper`` when an NVIDIA GPU is visible, else the embedded default ``smoke``."""
    return "paper" if detect().accelerator == "gpu" else "smoke"


def notebook_path(name: str) -> Path:
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    if not path.exists():
        raise ConfigError(f"unknown notebook {name!r}; expected one of {', '.join(CHAIN)}")
    return path


def declared_parameters(name: str) -> dict[str, Any]:
    """The parameters cell of a notebook, as papermill reads it."""
    import papermill

    return papermill.inspect_notebook(str(notebook_path(name)))


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as YAML (``[1024, 4096]``, ``true``, ``14b``)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes key=value, got {pair!r}")
        key = key.strip()
        overrides[key] = value if key in {"model", "study", "dataset"} else yaml.safe_load(value)
    return overrides


def resolve_parameters(profile: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], StudyConfig]:
    """Profile values with overrides on top, checked as a whole."""
    name = default_profile() if profile == "auto" else profile
    values = {**read_profile(profile_path(name)), **overrides}
    return values, StudyConfig.create(**values)


def render_html(executed: Path) -> Path:
    """Write ``<notebook>.html`` beside an executed notebook."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    html = executed.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return html


def run_notebook(name: str, values: dict[str, Any], study: str) -> Path:
    """Execute one notebook with the parameters it declares; return its HTML report."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    declared = declared_parameters(name)
    parameters = {key: value for key, value in values.items() if key in declared}
    output = reports_dir(study) / f"{name}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"== {name}: running with {parameters}", flush=True)
    try:
        papermill.execute_notebook(str(notebook_path(name)), str(output), parameters=parameters,
                                   cwd=str(NOTEBOOKS_DIR), progress_bar=False, kernel_name="python3")
    except PapermillExecutionError as error:
        render_html(output)
        raise ChainError(f"{name} failed in cell {error.exec_count} ({error.ename}: {error.evalue}); "
                         f"partial notebook kept at {output}") from None
    html = render_html(output)
    print(f"== {name}: done in {time.monotonic() - started:.0f} s -> {html}", flush=True)
    return html


class ChainError(RuntimeError):
    """A notebook of the chain failed."""


def _write_index(study: str, reports: list[Path]) -> Path:
    index = reports_dir(study) / "index.html"
    links = "\n".join(f'<li><a href="{p.name}">{p.stem}</a></li>' for p in reports)
    index.write_text(f"<html><body><h1>Test-time scaling study: {study}</h1><ul>{links}</ul></body></html>\n")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tts_utils.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["reproduce", "run", "check"])
    parser.add_argument("target", nargs="?", help="notebook name for 'run', profile for 'check'")
    parser.add_argument("--profile", default="auto", help="smoke, paper, a YAML path, or auto (default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            profile = args.target or args.profile
            values, config = resolve_parameters(profile, parse_overrides(args.overrides))
            print(f"{profile_path(profile)}: ok ({len(values)} keys, study {config.study!r})")
            return 0
        values, config = resolve_parameters(args.profile, parse_overrides(args.overrides))
        names = CHAIN if args.command == "reproduce" else (args.target,)
        if args.command == "run" and not args.target:
            raise ConfigError(f"'run' needs a notebook name: {', '.join(CHAIN)}")
        for name in names:
            notebook_path(name)
        if "tiny" in config.model_keys or config.system_only:
            print(f"\n{'!' * 100}\n!! {PLUMBING_WARNING}\n{'!' * 100}\n", flush=True)
        reports = [run_notebook(name, values, config.study) for name in names]
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ChainError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.command == "reproduce":
        print(f"\nReport: {_write_index(config.study, reports)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
