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
from pathlib import Path

from tts_utils.config import ConfigError, StudyConfig
from tts_utils.models import MODELS

TOKENIZER_HINT = "give a local tokenizer folder with trace_tokenizer (--set trace_tokenizer=DIR)"


PROXY = "proxy:"  # MODEL=proxy:OTHER: OTHER's replayed traces stand in for MODEL's (no grades)


def trace_entries(config: StudyConfig) -> list[tuple[str, str, bool]]:
    """(model key, path, optional) of each ``trace_sets`` entry: ``PATH`` (for the study's only
    model) or ``MODEL=PATH``. ``public:NAME`` / ``public?:NAME`` become their fetched local files
    (trace_fetch; an optional one that cannot be had is left out, with the reason printed);
    ``proxy:MODEL`` stays as it is."""
    from tts_utils.speculation.trace_fetch import OPTIONAL, resolve_entry

    entries = []
    for entry in config.trace_sets:
        key, sep, path = entry.partition("=")
        if not sep or os.sep in key:  # a path that holds "=" further on is still a path
            if len(config.model_keys) != 1:
                raise ConfigError(f"trace set {entry!r}: name its model as MODEL=PATH (the study has several)")
            key, path = config.model_keys[0], entry
        key, path = key.strip(), path.strip()
        if key not in MODELS:
            raise ConfigError(f"trace set {entry!r}: unknown model {key!r}; known: {', '.join(MODELS)}")
        if path.startswith(PROXY):
            if path[len(PROXY):] not in MODELS:
                raise ConfigError(f"trace set {entry!r}: proxy of unknown model {path[len(PROXY):]!r}")
            entries.append((key, path, False))
            continue
        resolved = resolve_entry(path)
        if resolved is not None:
            entries.append((key, resolved, path.startswith(OPTIONAL)))
    return entries


def trace_source(key: str, config: StudyConfig):
    """The model source whose tokenizer reads ``key``'s traces: ``trace_tokenizer`` if given; for
    random-weight shapes (which carry the tiny tokenizer) the model's own from the hub."""
    from tts_utils.engine.model_source import ModelSource, resolve
    from tts_utils.models import get_model

    model = get_model(key)
    source = resolve(model, config.load_format, config.local_model_dirs)
    if config.trace_tokenizer or (model.hf_id and config.load_format == "dummy"):
        source = ModelSource(source.engine_path, config.trace_tokenizer or model.hf_id, source.identity,
                             source.max_context)
    return source


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
    from tts_utils.engine.model_source import check_tokenizer_reachable
    from tts_utils.models import get_model

    check_dataset(config.dataset)
    entries = [(key, path, optional) for key, path, optional in trace_entries(config) if not path.startswith(PROXY)]
    for _, path, _ in entries:
        check_trace_path(path)
    notes = []
    for key, path, optional in entries:
        source = trace_source(key, config)
        try:
            check_tokenizer_reachable(source.tokenizer_path, TOKENIZER_HINT)
        except ConfigError as error:
            if not optional:
                raise
            notes.append(f"real traces {Path(path).name} will be skipped: {error}")
            continue
        if deep:
            from tts_utils.speculation.traces import load_trace_set

            trace_set = load_trace_set(path, get_model(key), source, config.dataset)
            notes += [f"{trace_set.name}: {note}" for note in trace_set.notes]
    return notes
