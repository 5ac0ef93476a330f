"""The notebooks' ``parameters`` cells, written from ``StudyConfig`` (config.py): one typed literal
per parameter the notebook declares, its default, and its help text as an aligned comment.

The help text lives once, on the field; a test (tests/test_repo.py) fails when a committed cell
differs from what this module writes. After changing a parameter, run
``python -m tts_utils.parameters_cell`` (``--check`` only reports). Used by the five notebooks.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

from tts_utils.cli import OneLineParser, run
from tts_utils.config import NOTEBOOKS, StudyConfig
from tts_utils.errors import ConfigError
from tts_utils.paths import NOTEBOOKS_DIR

# Comments line up two spaces after the longest assignment up to this length; a longer one (a long
# default list) gets its comment two spaces after it rather than pushing every comment right.
MAX_COMMENT_COLUMN = 40


def notebook_fields(notebook: str) -> list[Field]:
    """The StudyConfig fields ``notebook`` declares, in StudyConfig's order."""
    if notebook not in NOTEBOOKS:
        raise ConfigError(f"unknown notebook {notebook!r}; expected one of {', '.join(NOTEBOOKS)}")
    return [f for f in fields(StudyConfig) if notebook in f.metadata["notebooks"]]


def literal(value: Any) -> tuple[str, str]:
    """A default as the notebook writes it: (type name papermill reads, Python literal)."""
    if isinstance(value, tuple):
        return "list", repr(list(value))
    if isinstance(value, str):
        return "str", json.dumps(value)  # double quotes, as the notebooks always had
    return type(value).__name__, repr(value)


def parameters_cell(notebook: str) -> str:
    """The source of ``notebook``'s parameters cell."""
    defaults = StudyConfig()
    assignments = []
    for f in notebook_fields(notebook):
        type_name, value = literal(getattr(defaults, f.name))
        assignments.append((f"{f.name}: {type_name} = {value}", f.metadata["help"]))
    column = max((len(code) for code, _ in assignments if len(code) <= MAX_COMMENT_COLUMN), default=0) + 2
    return "\n".join(f"{code.ljust(column - 2)}  # {help_text}" for code, help_text in assignments)


def notebook_file(notebook: str) -> Path:
    return NOTEBOOKS_DIR / f"{notebook}.ipynb"


def _parameters_index(cells: list[dict], path: Path) -> int:
    tagged = [i for i, cell in enumerate(cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ConfigError(f"{path} must have exactly one cell tagged 'parameters', has {len(tagged)}")
    return tagged[0]


def committed_cell(notebook: str) -> str:
    """The source of ``notebook``'s parameters cell as committed."""
    path = notebook_file(notebook)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "".join(cells[_parameters_index(cells, path)]["source"])


def write_cell(notebook: str) -> bool:
    """Rewrite ``notebook``'s parameters cell from StudyConfig; True if it changed. The JSON keeps
    the repository's format (indent 1, UTF-8 as is, trailing newline), so only the cell's lines
    show in a diff."""
    path = notebook_file(notebook)
    document = json.loads(path.read_text(encoding="utf-8"))
    cell = document["cells"][_parameters_index(document["cells"], path)]
    source = parameters_cell(notebook)
    if "".join(cell["source"]) == source:
        return False
    cell["source"] = source.splitlines(keepends=True)
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m tts_utils.parameters_cell [--check] [NOTEBOOK ...]``: write the notebooks'
    parameters cells from StudyConfig (all five by default); --check writes nothing and exits 1 if
    any cell differs."""
    parser = OneLineParser(prog="python -m tts_utils.parameters_cell", description=main.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help=f"default: {' '.join(NOTEBOOKS)}")
    parser.add_argument("--check", action="store_true", help="report cells that differ; write nothing")
    args = parser.parse_args(argv)

    def command() -> int:
        names = args.notebooks or list(NOTEBOOKS)
        for name in names:
            notebook_fields(name)  # an unknown name fails before any file is written
        if args.check:
            stale = [name for name in names if committed_cell(name) != parameters_cell(name)]
            for name in stale:
                print(f"{name}: parameters cell differs from StudyConfig; run python -m tts_utils.parameters_cell")
            return 1 if stale else 0
        for name in names:
            print(f"{name}: {'rewritten' if write_cell(name) else 'unchanged'}")
        return 0

    return run(command)


if __name__ == "__main__":
    raise SystemExit(main())
