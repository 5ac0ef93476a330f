"""Problems with gold answers: MATH500 from the Hugging Face hub, a local file, or the kit's built-in
set; or any dataset of the registry (datasets.py), from the hub or a local file.

``dataset`` parameter values (one-line ConfigError for anything else):

* ``hub`` or ``math500``: ``HuggingFaceH4/MATH-500``, split ``test``;
* ``gsm8k``, ``aime2024``, ``aime2025`` (any registry name): that dataset from the hub;
* a path to a ``.jsonl``/``.parquet`` file with MATH500's fields (problem, answer, unique_id);
* ``NAME:PATH``: a local file with registry dataset NAME's fields (``gsm8k:/data/gsm8k.jsonl``
  reads ``question`` and ``answer``, and takes the gold after ``####``); a dataset without ids
  gets ``NAME/<row index>``;
* ``builtin``: 24 problems written for the kit, MATH500's schema, for offline smoke runs;
* ``auto``: hub, else builtin, said loudly. ``auto`` is decided once per process and its warning
  printed once, so every plan of a notebook uses the same problems (a hub that answers one call
  and not the next would otherwise split them).

Used by 00_setup (reachability check), the sweeps of 01-03 and the trace sets of the replay.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from tts_utils.config import read_text
from tts_utils.datasets import DATASETS, MATH500, DatasetSpec, get_dataset
from tts_utils.errors import ConfigError
from tts_utils.paths import BUILTIN_PROBLEMS_FILE

HUB_DATASET = MATH500.hub_id
# The values that mean MATH500 (hub, built-in or either) rather than a registry name or a file.
MATH500_SOURCES = ("auto", "hub", "builtin", MATH500.key)
# What ``auto`` resolved to in this process, and the warnings already printed.
_auto_choice: dict[str, str] = {}
_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Print a ``!!`` warning the first time this process meets it (a notebook shows it once)."""
    if message not in _warned:
        _warned.add(message)
        print(f"!! {message}", flush=True)


@dataclass(frozen=True)
class Problem:
    unique_id: str
    problem: str
    answer: str
    subject: str = ""
    level: int = 0


@dataclass(frozen=True)
class ProblemSet:
    """The problems a run uses, and where they came from."""

    problems: tuple[Problem, ...]
    source: str

    @property
    def fingerprint(self) -> str:
        """Hash of ids, texts and answers: part of every run's identity."""
        digest = hashlib.sha256()
        for p in self.problems:
            digest.update(json.dumps([p.unique_id, p.problem, p.answer]).encode())
        return digest.hexdigest()[:16]


def _records_from_file(path: Path) -> list[dict]:
    if not path.exists():
        raise ConfigError(f"dataset file not found: {path}")
    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict("records")
    if path.suffix != ".jsonl":
        raise ConfigError(f"dataset file must be .jsonl or .parquet, got {path}")
    records = []
    text = read_text(path, "dataset file")
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: JSON text may hold U+2028
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ConfigError(f"dataset file {path} line {number} is not JSON: {error.msg}") from None
    return records


@lru_cache(maxsize=len(DATASETS))
def _hub_records(key: str) -> tuple[dict, ...]:
    from datasets import load_dataset

    spec = DATASETS[key]
    return tuple(load_dataset(spec.hub_id, spec.hub_config, split=spec.split))


def _records_from_hub(key: str = MATH500.key) -> list[dict]:
    return list(_hub_records(key))


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Quick check before ``datasets`` spends ~25 s retrying an unreachable hub."""
    if any(os.environ.get(name, "").lower() in {"1", "true", "yes"}
           for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    return not connection_refused(host, 443, timeout_s)


def connection_refused(host: str, port: int, timeout_s: float = 3.0) -> str:
    """Why ``host:port`` accepts no connection within ``timeout_s``; empty when it does. A look
    before a library waits out its own retries (the hub, trace downloads)."""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        return str(error) or type(error).__name__
    return ""


def _to_problems(records: list[dict], spec: DatasetSpec, source: str, hint: str = "") -> list[Problem]:
    """Problems from ``spec``'s fields; ``hint`` follows a missing-fields error."""
    if not records:
        raise ConfigError(f"dataset {source} has no records")
    missing = [name for name in spec.fields if name not in records[0]]
    if missing:
        raise ConfigError(f"dataset {source} lacks fields: {', '.join(missing)}{hint}")
    problems = []
    for index, record in enumerate(records):
        absent = [name for name in spec.fields if record.get(name) in (None, "")]
        if absent:
            raise ConfigError(f"dataset {source} record {index} lacks fields: {', '.join(absent)}")
        gold = spec.gold(record[spec.gold_field])
        if not gold:
            raise ConfigError(f"dataset {source} record {index}: no gold answer in {spec.gold_field!r} "
                              f"({spec.gold_rule})")
        unique_id = str(record[spec.id_field]) if spec.id_field else f"{spec.key}/{index}"
        problems.append(Problem(unique_id, str(record[spec.problem_field]), gold,
                                str(record.get("subject", "")), int(record.get("level", 0) or 0)))
    return problems


def parse_dataset(dataset: str) -> tuple[DatasetSpec, str | None]:
    """The registry entry a ``dataset`` value means and its local file (``None``: the hub or the
    built-in set). ``NAME:PATH`` (no '/' or '.' before the colon) is a file of NAME's fields; any
    other value with a '/' or a '.' a file of MATH500's; anything else a registry name."""
    if dataset in MATH500_SOURCES:
        return MATH500, None
    name, colon, path = dataset.partition(":")
    if colon and not {"/", "."} & set(name):
        if not path.strip():
            raise ConfigError(f"dataset {dataset!r}: NAME:PATH needs a file after the colon")
        return get_dataset(name), path
    if "/" in dataset or "." in dataset:
        return MATH500, dataset
    return get_dataset(dataset), None


def resolve_source(dataset: str) -> str:
    """Which source ``dataset`` means on this machine (``auto``: the hub if reachable, else builtin,
    decided once per process; ``math500``: the hub)."""
    if dataset == MATH500.key:
        return "hub"
    if dataset != "auto":
        return dataset
    if "auto" not in _auto_choice:
        _auto_choice["auto"] = "hub" if hub_reachable() else "builtin"
    return _auto_choice["auto"]


def _from_hub_or_builtin(dataset: str, source: str) -> tuple[list[Problem], str]:
    """MATH500 from the hub, or the built-in set (``auto`` falls back to it, once per process)."""
    if source == "hub":
        try:
            return _to_problems(_records_from_hub(), MATH500, HUB_DATASET), source
        except Exception as error:
            if dataset != "auto":
                raise ConfigError(f"cannot load {HUB_DATASET} from the hub: {type(error).__name__}") from None
            # Later calls in this process take the built-in problems too, with the same one warning.
            _auto_choice.update(auto="builtin", why=f"{HUB_DATASET} failed to load ({type(error).__name__})")
    if dataset == "auto":
        why = _auto_choice.get("why", f"{HUB_DATASET} is unreachable from here")
        warn_once(f"{why}; using the kit's {BUILTIN_PROBLEMS_FILE.name} instead: accuracy on these is not "
                  "MATH500 accuracy.")
    return _to_problems(_records_from_file(BUILTIN_PROBLEMS_FILE), MATH500, "builtin"), "builtin"


def _from_registry(spec: DatasetSpec, file: str | None) -> tuple[list[Problem], str]:
    """A registry dataset from the hub (checked reachable first: ``datasets`` retries for ~25 s),
    or from a local file; MATH500's file keeps its bare path as its source."""
    if file is None:
        if not hub_reachable():
            raise ConfigError(f"dataset {spec.key}: {spec.hub_id} is unreachable from here; give it as a file "
                              f"(dataset: {spec.key}:PATH)")
        try:
            records = _records_from_hub(spec.key)
        except Exception as error:
            raise ConfigError(f"cannot load {spec.hub_id} from the hub: {type(error).__name__}") from None
        return _to_problems(records, spec, spec.hub_id), spec.key
    path = Path(file).expanduser().resolve()
    source = str(path) if spec is MATH500 else f"{spec.key}:{path}"
    hint = (f" (a file of another dataset: NAME:PATH, NAME one of {', '.join(DATASETS)})"
            if spec is MATH500 else "")
    return _to_problems(_records_from_file(path), spec, source, hint), source


def load_problems(dataset: str, num_problems: int, seed: int) -> ProblemSet:
    """Load, check and subset the problems.

    ``num_problems`` 0 means all; otherwise a subset drawn with ``seed`` (same seed, same subset),
    kept in dataset order.
    """
    source = resolve_source(dataset)
    if source in ("hub", "builtin"):
        problems, source = _from_hub_or_builtin(dataset, source)
    else:
        problems, source = _from_registry(*parse_dataset(source))
    if num_problems and num_problems < len(problems):
        chosen = sorted(random.Random(seed).sample(range(len(problems)), num_problems))
        problems = [problems[i] for i in chosen]
    return ProblemSet(tuple(problems), source)
