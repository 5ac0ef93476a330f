"""A study's ``trace_sets`` entries: which model each names, where its file is (``public:`` sets
fetched and checked, ``proxy:`` entries kept, ``own`` meaning this study's greedy TP1 runs), and the
tokenizer that reads it. Used by replay.py (03_spec) and study/preflight.py (before the chain).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from tts_utils.engine.model_source import resolve
from tts_utils.errors import ConfigError
from tts_utils.models import MODELS, get_model
from tts_utils.paths import study_dir
from tts_utils.speculation.trace_fetch import (
    OPTIONAL,
    TRACE_TOKENIZER_ENV,
    own_problems,
    resolve_entry,
    trace_tokenizer_for,
)
from tts_utils.store import RunFolder, read_json

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
                                      dataset=own_problems(path, resolved)))
    return entries


def own_models(config) -> set[str]:
    """The models whose own greedy TP1 runs ``trace_sets`` will replay (``own``, ``MODEL=own`` or an
    empty list): the study's models named so, and none at a temperature above 0 (own_runs takes
    greedy runs only, and 01_greedy then writes none)."""
    named = set()
    for entry in config.trace_sets or (OWN,):
        key, sep, path = entry.partition("=")
        if (not sep and entry.strip() == OWN) or (sep and path.strip() == OWN):
            named |= set(config.model_keys) if not sep else {key}
    return named & set(config.model_keys) if config.temperature == 0 else set()


def check_proxies(entries: list[TraceEntry], own: set[str] = frozenset()) -> None:
    """Each ``MODEL=proxy:OTHER`` needs a trace set of OTHER (an entry, or ``own`` runs) to stand in:
    refused before anything is replayed (03_spec, and ``pipeline check`` before 00)."""
    replayed = {entry.model for entry in entries if not entry.path.startswith(PROXY)} | set(own)
    for entry in entries:
        of = entry.path[len(PROXY):] if entry.path.startswith(PROXY) else None
        if of == entry.model:
            raise ConfigError(f"trace set {entry.model}={entry.path}: a model cannot stand in for itself")
        if of is not None and of not in replayed:
            raise ConfigError(f"trace set {entry.model}={entry.path}: the study replays no trace set of {of!r} to "
                              f"stand in (add {of}=PATH, {of}=public:NAME or {of}=own to trace_sets)")


def trace_source(config, key: str, entry: TraceEntry):
    """What reads an entry's token ids: the engine's own source for this study's runs; for other
    traces of a real model, its own tokenizer (trace_fetch.trace_tokenizer_for), unless local
    weights (``model_paths``) bring theirs and none is given. Random-weight shapes carry the tiny
    tokenizer, so real traces always need the model's own."""

    model = get_model(key)
    source = resolve(model, config.load_format, config.local_model_dirs)
    local_weights = key in config.local_model_dirs and config.load_format != "dummy"
    given = config.trace_tokenizer or os.environ.get(TRACE_TOKENIZER_ENV, "")
    if not entry.own and model.hf_id and (given or not local_weights):
        source = replace(source, tokenizer_path=trace_tokenizer_for(model, config.trace_tokenizer))
    return model, source
