"""Every input of a study checked before the first notebook or engine: the chain fails in seconds.

``check_inputs`` reads what a study will read later and refuses it now, with the one-line
``ConfigError`` the later step would give: each ``trace_sets`` entry (the file or run folder, its
model key, and, with ``deep``, every trace as 03_spec will check it: counts, context, duplicates,
the model the file names), the tokenizer the traces are read with (a missing folder, or a hub id
while the hub is unreachable and the id is not cached: said at once, naming ``trace_tokenizer``),
and the dataset (a file is read; ``hub`` needs the hub). The profile itself is checked when read
(config.read_profile: an empty file is an error). Used by pipeline.py (check, reproduce, run) and
sweep.py (every sweep, dry runs included).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from tts_utils.config import ConfigError, StudyConfig
from tts_utils.models import MODELS
from tts_utils.paths import study_dir

TOKENIZER_HINT = "give a local tokenizer folder with trace_tokenizer (--set trace_tokenizer=DIR)"


PROXY = "proxy:"  # MODEL=proxy:OTHER: OTHER's replayed traces stand in for MODEL's (no grades)
# A trace_sets entry "own" (or MODEL=own): this study's greedy TP1 runs, replayed beside real traces.
OWN = "own"


@dataclass(frozen=True)
class TraceEntry:
    """One trace set a study replays: its model, where it is, and how to read it."""

    model: str
    path: str
    optional: bool = False  # a public?: set: skipped with a one-line note when it cannot be had
    own: bool = False       # one of this study's greedy TP1 runs (the tiny model's on the embedded default)
    dataset: str = ""       # the problems its traces answer; empty: the study's dataset


def own_runs(config, key: str | None) -> list[TraceEntry]:
    """``own`` (or ``MODEL=own``): this study's complete greedy (temperature 0) TP1 runs of its models."""
    from tts_utils.store import RunFolder, read_json

    entries = []
    for folder in sorted(study_dir(config.study).glob("*-baseline-tp1-*")):
        run = RunFolder(folder)
        if run.is_complete():
            identity = read_json(run.run_file)["identity"]
            model = identity["model"]
            if model in config.model_keys and model == (key or model) and identity["sampling"]["temperature"] == 0:
                entries.append(TraceEntry(model, str(folder), own=True))
    if not entries:
        print(f"no complete greedy TP1 run{' of ' + key if key else ''} in study {config.study!r} to replay yet "
              "(01_greedy writes them)")
    return entries


def trace_entries(config, with_own: bool = True) -> list[TraceEntry]:
    """One entry per trace set of ``trace_sets``: ``PATH`` (for the study's only model) or
    ``MODEL=PATH``; ``public:NAME`` / ``public?:NAME`` are fetched (trace_fetch; an optional one
    that cannot be had is left out, with a note); ``proxy:MODEL`` stays; ``own`` (or ``MODEL=own``)
    means this study's greedy TP1 runs, which is also what an empty ``trace_sets`` replays
    (left out with ``with_own=False``: before the chain they do not exist yet)."""
    from tts_utils.trace_fetch import OPTIONAL, carries_problems, resolve_entry

    entries: list[TraceEntry] = []
    for entry in config.trace_sets or (OWN,):
        key, sep, path = entry.partition("=")
        if not sep:
            if entry.strip() == OWN:
                entries += own_runs(config, None) if with_own else []
                continue
            if len(config.model_keys) != 1:
                raise ConfigError(f"trace set {entry!r}: name its model as MODEL=PATH (the study has several)")
            key, path = config.model_keys[0], entry
        if key not in MODELS:
            raise ConfigError(f"trace set {entry!r}: unknown model {key!r}; known: {', '.join(MODELS)}")
        if path.strip() == OWN:
            entries += own_runs(config, key) if with_own else []
            continue
        if path.startswith(PROXY):
            if path[len(PROXY):] not in MODELS:
                raise ConfigError(f"trace set {entry!r}: proxy of unknown model {path[len(PROXY):]!r}")
            entries.append(TraceEntry(key, path))
            continue
        resolved = resolve_entry(path)
        if resolved is not None:
            entries.append(TraceEntry(key, resolved, path.startswith(OPTIONAL),
                                      dataset=resolved if carries_problems(path) else ""))
    return entries


def trace_source(config, key: str, entry: TraceEntry):
    """What reads an entry's token ids: the engine's own source for this study's runs; for other
    traces of a real model, its own tokenizer (trace_fetch.trace_tokenizer_for), unless local
    weights (``model_paths``) bring theirs and none is given. Random-weight shapes carry the tiny
    tokenizer, so real traces always need the model's own."""
    import os

    from tts_utils.model_source import resolve
    from tts_utils.models import get_model
    from tts_utils.trace_fetch import TRACE_TOKENIZER_ENV, trace_tokenizer_for

    model = get_model(key)
    source = resolve(model, config.load_format, config.local_model_dirs)
    local_weights = key in config.local_model_dirs and config.load_format != "dummy"
    given = config.trace_tokenizer or os.environ.get(TRACE_TOKENIZER_ENV, "")
    if not entry.own and model.hf_id and (given or not local_weights):
        source = replace(source, tokenizer_path=trace_tokenizer_for(model, config.trace_tokenizer))
    return model, source


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
    from tts_utils.data import HUB_DATASET, hub_reachable, load_problems

    if dataset == "hub":
        if not hub_reachable():
            raise ConfigError(f"dataset hub: {HUB_DATASET} is unreachable from here; give MATH500 as a file "
                              "(dataset: PATH) or use dataset: auto (falls back to the built-in problems)")
        return
    if dataset not in {"auto", "builtin"}:
        load_problems(dataset, 0, 0)


def check_inputs(config: StudyConfig, deep: bool = True) -> list[str]:
    """Check the study's inputs (module docstring); returns notes to show (token-count exceptions
    of the trace sets, missing model evidence). Raises ConfigError."""
    from tts_utils.model_source import check_tokenizer_reachable

    check_dataset(config.dataset)
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
            from tts_utils.traces import load_trace_set

            trace_set = load_trace_set(entry.path, model, source, entry.dataset or config.dataset)
            notes += [f"{trace_set.name}: {note}" for note in trace_set.notes]
    return notes
