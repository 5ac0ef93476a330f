"""MATH500 problems: from the Hugging Face hub, a local file, or the kit's built-in set.

``dataset`` parameter values: ``hub`` (``HuggingFaceH4/MATH-500``, split ``test``), a path to a
``.jsonl``/``.parquet`` file with the same fields, ``builtin`` (24 problems written for the kit,
same schema, for offline smoke runs), or ``auto`` (hub, else builtin, said loudly). ``auto`` is
decided once per process and its warning printed once, so every plan of a notebook uses the same
problems (a hub that answers one call and not the next would otherwise split them). Used by
00_setup (reachability check) and the sweeps of 01-03.
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

from tts_utils.config import ConfigError, read_text
from tts_utils.paths import BUILTIN_PROBLEMS_FILE

HUB_DATASET = "HuggingFaceH4/MATH-500"
REQUIRED_FIELDS = ("problem", "answer", "unique_id")
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


@lru_cache(maxsize=1)
def _hub_records() -> tuple[dict, ...]:
    from datasets import load_dataset

    return tuple(load_dataset(HUB_DATASET, split="test"))


def _records_from_hub() -> list[dict]:
    return list(_hub_records())


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


def _to_problems(records: list[dict], source: str) -> list[Problem]:
    if not records:
        raise ConfigError(f"dataset {source} has no records")
    missing = [name for name in REQUIRED_FIELDS if name not in records[0]]
    if missing:
        raise ConfigError(f"dataset {source} lacks fields: {', '.join(missing)}")
    problems = []
    for index, record in enumerate(records):
        absent = [name for name in REQUIRED_FIELDS if record.get(name) in (None, "")]
        if absent:
            raise ConfigError(f"dataset {source} record {index} lacks fields: {', '.join(absent)}")
        problems.append(Problem(str(record["unique_id"]), str(record["problem"]), str(record["answer"]),
                                str(record.get("subject", "")), int(record.get("level", 0) or 0)))
    return problems


def resolve_source(dataset: str) -> str:
    """Which source ``dataset`` means on this machine (``auto``: the hub if reachable, else builtin),
    decided once per process."""
    if dataset != "auto":
        return dataset
    if "auto" not in _auto_choice:
        _auto_choice["auto"] = "hub" if hub_reachable() else "builtin"
    return _auto_choice["auto"]


def load_problems(dataset: str, num_problems: int, seed: int) -> ProblemSet:
    """Load, check and subset the problems.

    ``num_problems`` 0 means all; otherwise a subset drawn with ``seed`` (same seed, same subset),
    kept in dataset order.
    """
    source = resolve_source(dataset)
    problems: list[Problem] = []
    if source == "hub":
        try:
            problems = _to_problems(_records_from_hub(), HUB_DATASET)
        except Exception as error:
            if dataset != "auto":
                raise ConfigError(f"cannot load {HUB_DATASET} from the hub: {type(error).__name__}") from None
            # Later calls in this process take the built-in problems too, with the same one warning.
            _auto_choice.update(auto="builtin", why=f"{HUB_DATASET} failed to load ({type(error).__name__})")
            source = "builtin"
    if source == "builtin":
        if dataset == "auto":
            why = _auto_choice.get("why", f"{HUB_DATASET} is unreachable from here")
            warn_once(f"{why}; using the kit's {BUILTIN_PROBLEMS_FILE.name} instead: accuracy on these is not "
                      "MATH500 accuracy.")
        problems = _to_problems(_records_from_file(BUILTIN_PROBLEMS_FILE), "builtin")
    elif source != "hub":
        path = Path(source).expanduser().resolve()
        problems = _to_problems(_records_from_file(path), str(path))
        source = str(path)
    if num_problems and num_problems < len(problems):
        chosen = sorted(random.Random(seed).sample(range(len(problems)), num_problems))
        problems = [problems[i] for i in chosen]
    return ProblemSet(tuple(problems), source)
