"""``tp_import``: which other study's greedy runs may price this study's traces, and the refusals.

An entry is a study name under outputs/runs/ or a folder of run folders. Refused (one-line
``ConfigError``): an entry that is neither, this study itself (its runs are priced already: every
configuration would count twice), one without a complete greedy (baseline) run of the models, and
one measured on another device unless ``tp_import_any_hardware`` (step costs do not transfer).
Used by study/preflight.py (``pipeline check``, before 00) and report/modelled.py (04_analysis).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tts_utils.errors import ConfigError
from tts_utils.hardware import device_name
from tts_utils.paths import study_dir
from tts_utils.store import RunFolder, read_json


def import_folder(source: str, study: str = "") -> tuple[Path, str]:
    """A ``tp_import`` entry's folder and study name; ``study`` (the importing one) may not name itself."""
    path = Path(source).expanduser()
    if path.is_dir():
        folder, name = path.resolve(), path.name
    elif study_dir(source).is_dir():
        folder, name = study_dir(source), source
    else:
        raise ConfigError(f"tp_import: {source!r} is neither a study under {study_dir('').parent} nor a folder of runs")
    if study and folder.resolve() == study_dir(study).resolve():
        raise ConfigError(f"tp_import: {source!r} is this study itself ({study!r}); its own runs price its traces "
                          "already (importing them counts every configuration twice): leave it out of tp_import")
    return folder, name


def greedy_run_hardware(folder: Path, models: set[str]) -> list[str]:
    """The hardware label of each complete greedy (baseline) run of ``models`` in a study folder."""
    import pandas as pd

    labels = []
    for run_dir in sorted(p for p in folder.glob("*") if p.is_dir()):
        run = RunFolder(run_dir)
        if run.status().get("state") != "complete" or not run.is_complete():
            continue
        identity = read_json(run.run_file)["identity"]
        if identity["method"] == "baseline" and identity["model"] in models:
            labels.append(str(pd.read_csv(run.results_file, usecols=["hardware"], nrows=1)["hardware"].iloc[0]))
    return labels


def check_import(source: str, hardware: Iterable[str], own_hardware: Iterable[str], models: set[str],
                 any_hardware: bool = False) -> None:
    """Refuse an import with no greedy run of ``models`` (``hardware``: one label per run), or whose
    device differs from this study's unless ``any_hardware``."""
    theirs = {device_name(label) for label in hardware}
    if not theirs:
        raise ConfigError(f"tp_import: {source!r} has no complete greedy (baseline) run of {', '.join(sorted(models))}")
    mine = {device_name(label) for label in own_hardware}
    if mine and theirs != mine and not any_hardware:
        raise ConfigError(f"tp_import: {source!r} ran on {', '.join(sorted(theirs))}, this study on "
                          f"{', '.join(sorted(mine))}; step costs do not transfer between devices "
                          "(set tp_import_any_hardware: true to import them anyway)")


def check_tp_import(sources: Iterable[str], study: str, own_hardware: set[str], models: set[str],
                    any_hardware: bool = False) -> None:
    """Every ``tp_import`` entry as 04_analysis will read it, before the chain starts."""
    for source in sources:
        folder, _ = import_folder(source, study)
        check_import(source, greedy_run_hardware(folder, models), own_hardware, models, any_hardware)
