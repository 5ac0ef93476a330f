"""Trace sets: real reasoning outputs to replay, as token ids, checked before anything runs.

A trace set is one model's outputs on known problems: per trace the prompt ids, the output ids,
whether the output ended by itself (end-of-sequence) or at a length cap, and the gold answer. It
is read from any of:

* a JSON Lines file with the output as text (``output`` or ``full_response``) or as token ids
  (``output_ids``), the problem (``problem``; ``unique_id`` when present, else matched to the
  dataset by its text) and the gold answer (``answer`` or ``ground_truth``); optional ``model`` or
  ``model_name``, ``temperature``, ``finish_reason``, ``prompt_ids``;
* one of the kit's own run folders (``requests.jsonl`` holds the generated token ids), so a real
  greedy run can be replayed.

Every problem is a one-line ``ConfigError`` naming the file and line: a missing field, a problem
not in the dataset, an output longer than the model's context, token ids outside the tokenizer's
vocabulary, a trace set that declares another model. Used by replay.py (03_spec, the replay CLI).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tts_utils.config import ConfigError
from tts_utils.data import Problem, load_problems
from tts_utils.model_source import ModelSource, load_tokenizer
from tts_utils.models import ModelSpec

TEXT_FIELDS = ("output", "full_response")
GOLD_FIELDS = ("answer", "ground_truth")
MODEL_FIELDS = ("model", "model_name")


@dataclass(frozen=True)
class Trace:
    """One output to replay."""

    problem_id: str
    prompt_ids: tuple[int, ...]
    output_ids: tuple[int, ...]
    ended: bool  # the output ends with the end-of-sequence token (not cut at a length cap)
    gold: str


@dataclass(frozen=True)
class TraceSet:
    """Traces of one model, with where they came from."""

    source: str
    model: str
    sampling: dict
    traces: tuple[Trace, ...]
    fingerprint: str = field(default="")

    @property
    def name(self) -> str:
        path = Path(self.source)
        return path.name if path.suffix else path.name.rsplit("-", 1)[0]


def _problem_index(problems: tuple[Problem, ...]) -> tuple[dict[str, Problem], dict[str, Problem]]:
    by_id = {p.unique_id: p for p in problems}
    by_text = {" ".join(p.problem.split()): p for p in problems}
    return by_id, by_text


def _first(record: dict, names: tuple[str, ...]):
    return next((record[name] for name in names if record.get(name) not in (None, "")), None)


def _check_model(declared: str | None, model: ModelSpec, where: str) -> None:
    if declared and declared not in {model.key, model.hf_id} and declared.split("/")[-1] != (model.hf_id or "").split("/")[-1]:
        raise ConfigError(f"{where}: trace set is for {declared!r}, not model {model.key!r} ({model.hf_id})")


def _check_ids(ids: list, vocab_size: int, where: str, what: str) -> tuple[int, ...]:
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ConfigError(f"{where}: {what} must be a list of integers")
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ConfigError(f"{where}: {what} holds token id {bad[0]} outside the tokenizer's vocabulary "
                          f"(0..{vocab_size - 1})")
    return tuple(ids)


class _Reader:
    """Shared state for reading one trace set: model, tokenizer, dataset index, context limit."""

    def __init__(self, model: ModelSpec, source: ModelSource, dataset: str) -> None:
        self.model = model
        self.tokenizer = load_tokenizer(source)
        self.tokenizer.model_max_length = 10**9  # long traces are checked against the model's context below
        self.vocab_size = len(self.tokenizer)
        self.eos_id = self.tokenizer.eos_token_id
        self.context = source.max_context
        self.dataset = dataset
        self._index: tuple[dict, dict] | None = None

    def index(self) -> tuple[dict[str, Problem], dict[str, Problem]]:
        if self._index is None:
            self._index = _problem_index(load_problems(self.dataset, 0, 0).problems)
        return self._index

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def check_context(self, prompt: tuple[int, ...], output: tuple[int, ...], where: str) -> None:
        if self.context is not None and len(prompt) + len(output) > self.context:
            raise ConfigError(f"{where}: prompt + output are {len(prompt) + len(output)} tokens, longer than "
                              f"{self.model.key}'s {self.context}-token context")


def _trace_from_record(reader: _Reader, record: dict, where: str) -> Trace:
    by_id, by_text = reader.index()
    problem_text = record.get("problem")
    unique_id = record.get("unique_id")
    if not problem_text and not unique_id:
        raise ConfigError(f"{where}: missing field 'problem' (or 'unique_id')")
    problem = by_id.get(unique_id) if unique_id else by_text.get(" ".join(str(problem_text).split()))
    if problem is None:
        raise ConfigError(f"{where}: problem {unique_id or str(problem_text)[:40]!r} is not in dataset {reader.dataset}")
    gold = _first(record, GOLD_FIELDS) or problem.answer
    if "prompt_ids" in record:
        prompt = _check_ids(record["prompt_ids"], reader.vocab_size, where, "prompt_ids")
    else:
        prompt = tuple(reader.encode(reader.model.prompt(problem.problem)))
    if "output_ids" in record:
        output = _check_ids(record["output_ids"], reader.vocab_size, where, "output_ids")
        ended = bool(output) and output[-1] == reader.eos_id
    else:
        text = _first(record, TEXT_FIELDS)
        if text is None:
            raise ConfigError(f"{where}: missing field 'output' (or 'full_response' or 'output_ids')")
        output = tuple(reader.encode(str(text)))
        ended = record.get("finish_reason", "stop") != "length" and _ended_by_count(record, len(output))
        if ended and reader.eos_id is not None:
            output += (reader.eos_id,)  # the engine counts and emits the end-of-sequence token
    reader.check_context(prompt, output, where)
    return Trace(problem.unique_id, prompt, output, ended, str(gold))


def _ended_by_count(record: dict, text_tokens: int) -> bool:
    """Without a finish reason, a recorded token count above the text's own tokens means the
    end-of-sequence token was emitted (and counted); otherwise the trace is taken as cut."""
    recorded = record.get("output_tokens", record.get("total_generated_tokens"))
    if "finish_reason" in record:
        return True
    return recorded not in (None, "") and int(recorded) > text_tokens


def _read_jsonl(reader: _Reader, path: Path) -> tuple[list[Trace], str | None, float | None]:
    traces, declared, temperature = [], None, None
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError(f"{where}: not JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{where}: not a JSON object")
            declared = _first(record, MODEL_FIELDS) or declared
            _check_model(_first(record, MODEL_FIELDS), reader.model, where)
            if record.get("temperature") not in (None, ""):
                temperature = float(record["temperature"])
            traces.append(_trace_from_record(reader, record, where))
    return traces, declared, temperature


def _read_run_folder(reader: _Reader, folder: Path) -> tuple[list[Trace], str | None, float | None]:
    from tts_utils.store import read_json, read_records

    identity = read_json(folder / "run.json")["identity"]
    _check_model(identity.get("model"), reader.model, str(folder / "run.json"))
    problems = {p.unique_id: p for p in load_problems(identity["problem_source"], 0, 0).problems}
    traces = []
    for number, record in enumerate(read_records(folder / "requests.jsonl"), 1):
        where = f"{folder / 'requests.jsonl'} line {number}"
        problem = problems.get(record["problem_id"])
        if problem is None:
            raise ConfigError(f"{where}: problem {record['problem_id']!r} is not in {identity['problem_source']}")
        prompt = tuple(reader.encode(reader.model.prompt(problem.problem)))
        if len(prompt) != record["prompt_tokens"]:
            raise ConfigError(f"{where}: the prompt re-tokenizes to {len(prompt)} tokens, the engine counted "
                              f"{record['prompt_tokens']}")
        output = _check_ids(record["token_ids"], reader.vocab_size, where, "token_ids")
        reader.check_context(prompt, output, where)
        traces.append(Trace(problem.unique_id, prompt, output, record["finish_reason"] == "stop", problem.answer))
    return traces, identity.get("model"), identity["sampling"]["temperature"]


def load_trace_set(path: str | Path, model: ModelSpec, source: ModelSource, dataset: str = "auto") -> TraceSet:
    """Read and check one trace set for ``model`` (tokenized with ``source``'s tokenizer)."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise ConfigError(f"trace set not found: {path}")
    reader = _Reader(model, source, dataset)
    if path.is_dir():
        if not (path / "requests.jsonl").exists():
            raise ConfigError(f"{path} is a folder but not a run folder (no requests.jsonl)")
        traces, declared, temperature = _read_run_folder(reader, path)
    else:
        traces, declared, temperature = _read_jsonl(reader, path)
    if not traces:
        raise ConfigError(f"trace set {path} holds no traces")
    digest = hashlib.sha256()
    for trace in traces:
        digest.update(json.dumps([trace.problem_id, trace.prompt_ids, trace.output_ids]).encode())
    return TraceSet(str(path), model.key, {"temperature": temperature, "declared_model": declared},
                    tuple(traces), digest.hexdigest()[:16])
