"""A study's ``trace_sets`` entries: which model each names, where its file is (``public:`` sets
fetched and checked, ``proxy:`` entries kept), and the tokenizer that reads it. Used by replay.py
(03_spec) and study/preflight.py (before the chain).
"""

from __future__ import annotations

import os

from tts_utils.config import ConfigError, StudyConfig
from tts_utils.engine.model_source import ModelSource, resolve
from tts_utils.models import MODELS, get_model
from tts_utils.speculation.trace_fetch import OPTIONAL, resolve_entry

PROXY = "proxy:"  # MODEL=proxy:OTHER: OTHER's replayed traces stand in for MODEL's (no grades)


def trace_entries(config: StudyConfig) -> list[tuple[str, str, bool]]:
    """(model key, path, optional) of each ``trace_sets`` entry: ``PATH`` (for the study's only
    model) or ``MODEL=PATH``. ``public:NAME`` / ``public?:NAME`` become their fetched local files
    (trace_fetch; an optional one that cannot be had is left out, with the reason printed);
    ``proxy:MODEL`` stays as it is."""

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

    model = get_model(key)
    source = resolve(model, config.load_format, config.local_model_dirs)
    if config.trace_tokenizer or (model.hf_id and config.load_format == "dummy"):
        source = ModelSource(source.engine_path, config.trace_tokenizer or model.hf_id, source.identity,
                             source.max_context)
    return source
