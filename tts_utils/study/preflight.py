"""Every input of a study checked before the first notebook or engine: the chain fails in seconds.

``check_inputs`` reads what a study will read later and refuses it now, with the one-line
``ConfigError`` the later step would give: each ``trace_sets`` entry (the file or run folder, its
model key, and, with ``deep``, every trace as 03_spec will check it: counts, context, duplicates,
the model the file names), the tokenizer the traces are read with (a missing folder, or a hub id
while the hub is unreachable and the id is not cached: said at once, naming ``trace_tokenizer``),
the dataset (a file is read; ``hub`` needs the hub), and ``placement: ray`` where Ray is not
installed (01 would stop at its first sweep). The profile itself is checked when read
(config.read_profile: an empty file is an error). ``plan_every_run`` plans every run of 01-03 and
resolves what 03 and 04 would resolve late (proxies, ``tp_import``). Used by pipeline.py (check,
reproduce, run) and sweep.py (every sweep, dry runs included).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from pathlib import Path

from tts_utils.config import StudyConfig
from tts_utils.data import HUB_DATASET, hub_reachable, load_problems
from tts_utils.engine.model_source import check_tokenizer_reachable
from tts_utils.errors import ConfigError
from tts_utils.hardware import detect
from tts_utils.paths import study_dir
from tts_utils.speculation.trace_sets import PROXY, check_proxies, own_models, trace_entries, trace_source
from tts_utils.speculation.traces import load_trace_set
from tts_utils.study.plan import NOTEBOOK_METHODS, cpu_engine, plan_runs
from tts_utils.study.tp_import import check_tp_import, greedy_run_hardware

TOKENIZER_HINT = "give a local tokenizer folder with trace_tokenizer (--set trace_tokenizer=DIR)"


def check_trace_path(path: str) -> Path:
    """A trace set's file or run folder exists and can be read (no tokenizer needed)."""
    target = Path(path).expanduser()
    if not target.exists():
        raise ConfigError(f"trace set not found: {target.resolve()}")
    if target.is_dir():
        if not (target / "requests.jsonl").exists():
            raise ConfigError(f"trace set {target} is a folder but not a run folder (no requests.jsonl)")
        target = target / "requests.jsonl"
    elif not (target.name.endswith(".jsonl") or target.name.endswith(".jsonl.gz")):
        raise ConfigError(f"trace set {target}: expected a .jsonl or .jsonl.gz file, or one of the kit's run folders")
    if not os.access(target, os.R_OK):
        raise ConfigError(f"trace set {target}: permission denied")
    return target


def check_dataset(dataset: str) -> None:
    """A dataset file is read and checked now; ``hub`` needs the hub (``auto`` falls back, loudly)."""

    if dataset == "hub":
        if not hub_reachable():
            raise ConfigError(f"dataset hub: {HUB_DATASET} is unreachable from here; give MATH500 as a file "
                              "(dataset: PATH) or use dataset: auto (falls back to the built-in problems)")
        return
    if dataset not in {"auto", "builtin"}:
        load_problems(dataset, 0, 0)


def check_placement(config: StudyConfig) -> None:
    """``placement: ray`` needs the ray package where runs start (a dry run starts none)."""
    if config.placement == "ray" and not config.dry_run and importlib.util.find_spec("ray") is None:
        raise ConfigError("placement: ray needs the ray package, which this Python lacks (it is in the kit's "
                          "dependencies: make setup, or pip install ray==2.60.0); or --set placement=sequential")


def check_late_inputs(config: StudyConfig) -> None:
    """What 03 and 04 resolve hours later, refused now: proxies without a trace set to stand in
    (trace_sets.check_proxies) and ``tp_import`` entries (study/tp_import.py) as 04 will read them,
    against the device this study runs on (its finished runs' on a dry run)."""
    if any(entry.partition("=")[2].strip().startswith(PROXY) for entry in config.trace_sets):
        check_proxies(trace_entries(config, with_own=False), own_models(config))
    if config.tp_import:
        models = set(config.model_keys) | {entry.partition("=")[0].strip() for entry in config.trace_sets if "=" in entry}
        own_hardware = set() if config.dry_run else {detect().describe()}
        if study_dir(config.study).is_dir():
            own_hardware |= set(greedy_run_hardware(study_dir(config.study), models))
        check_tp_import(config.tp_import, config.study, own_hardware, models, config.tp_import_any_hardware)


def plan_every_run(config: StudyConfig) -> list[str]:
    """Plan every run of 01-03 as the sweeps will, so that what a later notebook refuses (a GPU-only
    setting on a CPU, forcing past the context, memory, a proxy or ``tp_import`` that cannot be
    resolved) is refused now, before 00 starts. Rates replayed from trace sets do not exist before 03
    replays them: there, each model needs a trace set (or a proxy, or its own greedy runs) to replay,
    and the runs are planned with the engine's acceptance in their place.
    Returns one line per sweep notebook: what it will run."""
    check_late_inputs(config)
    lines = []
    for notebook in NOTEBOOK_METHODS:
        planned = config
        if notebook == "03_spec" and config.spec_acceptance == "replay" and not cpu_engine(config):
            named = {entry.model for entry in trace_entries(config, with_own=False)} | own_models(config)
            missing = [key for key in config.model_keys if key not in named]
            if missing:
                greedy = (f"; own replays greedy runs only, and at temperature {config.temperature} 01_greedy "
                          "writes none" if config.temperature != 0 and own_models(replace(config, temperature=0))
                          else "")
                raise ConfigError(f"spec_acceptance: replay needs a trace set for {', '.join(missing)} in trace_sets "
                                  f"(MODEL=PATH, MODEL=public:NAME, MODEL=proxy:OTHER or MODEL=own){greedy}")
            planned = replace(config, spec_acceptance="engine")
        runs, skipped = plan_runs(planned, notebook)
        lines.append(f"{notebook}: {len(runs)} run(s)" + (f"; {'; '.join(skipped)}" if skipped else ""))
    return lines


def check_inputs(config: StudyConfig, deep: bool = True) -> list[str]:
    """Check the study's inputs (module docstring); returns notes to show (token-count exceptions
    of the trace sets, missing model evidence). Raises ConfigError."""

    check_dataset(config.dataset)
    check_placement(config)
    entries = [entry for entry in trace_entries(config, with_own=False) if not entry.path.startswith(PROXY)]
    for entry in entries:
        check_trace_path(entry.path)
    notes = []
    for entry in entries:
        model, source = trace_source(config, entry.model, entry)
        try:
            check_tokenizer_reachable(source.tokenizer_path, TOKENIZER_HINT)
        except ConfigError as error:
            if not entry.optional:
                raise
            notes.append(f"real traces {Path(entry.path).name} will be skipped: {error}")
            continue
        if deep:

            trace_set = load_trace_set(entry.path, model, source, entry.dataset or config.dataset)
            notes += [f"{trace_set.name}: {note}" for note in filter(None, (*trace_set.notes, trace_set.prompt_note))]
    return notes
