"""Trace sets: real reasoning outputs to replay, as token ids, checked against what they claim
before anything runs.

A trace set is one model's outputs on known problems: per trace the prompt ids, the output ids,
whether the output ended by itself (end-of-sequence) or at a length cap, and the gold answer. It
is read from any of:

* a JSON Lines file (``.jsonl``, or gzip-compressed ``.jsonl.gz``) with the output as text
  (``output``, ``full_response``, ``response`` or ``completion``) or as token ids (``output_ids``)
  and the problem (``unique_id`` when present, else ``problem``, ``question`` or ``prompt``
  matched to the dataset by its text); optional its own gold answer (``answer`` or
  ``ground_truth``), ``model`` or ``model_name``, ``temperature``, ``finish_reason``,
  ``prompt_ids``, recorded token counts (``output_tokens`` or ``total_generated_tokens``;
  ``prefill_tokens``) and a repetition index (``sample_index``, ``repetition`` or ``sample``)
  when a problem appears more than once;
* one of the kit's own run folders (``requests.jsonl`` holds the generated token ids), so a real
  greedy run can be replayed.

The file is read twice, streamed line by line (memory bounded by the longest trace, not the file):
``load_trace_set`` checks every line, and ``TraceSet.traces`` reads them again for the replay.
Checked (each failure a one-line ``ConfigError`` naming the file and line):

* fields, problems in the dataset, token ids inside the tokenizer's vocabulary;
* prompt + output within the model's context (its shape's ``max_position_embeddings``);
* no problem twice, unless a repetition index tells the lines apart;
* the recorded token count against the re-tokenized output: a trace that ended by itself counts
  its text plus the end-of-sequence token, one cut at a length cap its text alone (without a
  ``finish_reason`` either is taken). A trace may be off by up to ``TOKEN_TOLERANCE`` tokens (a
  sampled, non-canonical tokenization re-tokenizes shorter) and is then reported in
  ``TraceSet.notes``; more than that, or off at all in more than ``MISMATCH_SHARE`` of the traces,
  means the tokenizer is not the one that wrote the traces, and the set is refused;
* a file without recorded counts: the tokenizer's ids (added tokens included) against the model's
  embedding rows (within ``VOCAB_SLACK``) and a decode/re-encode round trip of the first
  ``ROUND_TRIP_TRACES`` traces instead; a clear mismatch is refused, else ``notes`` say so;
* the model: a ``model`` field, or a run folder's identity, must name the model given; with
  neither, a size in the file name (``...-7b...``) must be the model's size, and a set with no
  evidence at all is accepted with a loud note (the tokens of 1.5B and 7B traces of one family
  cannot tell them apart).

Reported, not refused:

* the gold answer graded against is the dataset's, read by its registry entry's rule
  (``TraceSet.gold_source`` says which); a trace's own gold is read by the same rule and, where
  it differs, the set's ``notes`` say in how many traces (GSM8K outputs often carry the whole
  worked solution as ``answer``);
* ``prefill_tokens`` against the kit's prompt re-tokenized (``TraceSet.prompt_note``): a
  difference means the replay's prompt is not the one the model saw (the n-gram look-up reads it).

Token counts follow the engine (``EOS_CONVENTION``).

Used by replay.py (03_spec, the replay CLI) and preflight.py.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from tts_utils.data import Problem, load_problems, parse_dataset, resolve_source
from tts_utils.engine.model_source import ModelSource, load_tokenizer, shape_config, shape_context
from tts_utils.errors import ConfigError, CorruptResultError
from tts_utils.models import ModelSpec
from tts_utils.progress import progress
from tts_utils.store import read_json, read_records

PROBLEM_FIELDS = ("problem", "question", "prompt")
TEXT_FIELDS = ("output", "full_response", "response", "completion")
GOLD_FIELDS = ("answer", "ground_truth")
MODEL_FIELDS = ("model", "model_name")
COUNT_FIELDS = ("output_tokens", "total_generated_tokens")
REPETITION_FIELDS = ("sample_index", "repetition", "sample")
EOS_CONVENTION = ("output tokens count the end-of-sequence token of a trace that ended by itself, as the engine "
                  "does (a trace cut at a length cap has none)")
# Recorded vs re-tokenized output length: the shipped traces are off by 1..6 tokens in 3 of 100
# (../shared/data/traces/README.md); a wrong tokenizer is off by hundreds in every trace.
TOKEN_TOLERANCE = 8
MISMATCH_SHARE = 0.05
# Without recorded counts a wrong tokenizer is otherwise silent (issue 31: 2.232 tokens/step instead of
# 1.876): its ids (added tokens included) must then be within this share of the model's embedding rows
# (the R1 tokenizer in ../shared/tokenizers: 152,064 ids, against 151,936 rows for 1.5B and 152,064 for
# 7B/14B; the tiny model's has 512), and the first ROUND_TRIP_TRACES traces must survive a decode/re-encode.
VOCAB_SLACK = 0.01
ROUND_TRIP_TRACES = 16
# Files above this size show progress while they are checked.
LONG_FILE_BYTES = 20 * 2**20
_SIZE = re.compile(r"(?<![0-9a-z.])(\d+(?:\.\d+)?)b(?![a-z0-9])")


@dataclass(frozen=True)
class Trace:
    """One output to replay."""

    problem_id: str
    prompt_ids: tuple[int, ...]
    output_ids: tuple[int, ...]
    ended: bool  # the output ends with the end-of-sequence token (not cut at a length cap)
    gold: str
    # Which repetition of the problem (sample_index, repetition or sample; 0 when a file has one per
    # problem): every join of a trace's steps and grades is keyed by problem and sample.
    sample_index: int = 0


class _Traces:
    """The traces of a set, read again from their file on every pass (one trace in memory at a time)."""

    def __init__(self, read: Callable[[], Iterator[Trace]], count: int) -> None:
        self._read, self._count = read, count

    def __iter__(self) -> Iterator[Trace]:
        return self._read()

    def __len__(self) -> int:
        return self._count

    def first(self, count: int) -> _Traces:
        """The first ``count`` traces (``trace_limit``), still read one at a time."""
        return _Traces(lambda: itertools.islice(self._read(), count), min(count, self._count))


@dataclass(frozen=True)
class TraceSet:
    """Traces of one model, with where they came from and what the checks found."""

    source: str
    model: str
    sampling: dict
    traces: _Traces = field(compare=False, repr=False)
    fingerprint: str = field(default="")
    # token-count exceptions within tolerance, missing model evidence, own gold answers that differ
    notes: tuple[str, ...] = ()
    gold_source: str = ""  # the dataset graded against, and its rule for the gold answer
    prompt_note: str = ""  # how the kit's prompt differs from prefill_tokens recorded; empty: it does not

    @property
    def name(self) -> str:
        path = Path(self.source)
        if path.name.endswith(".gz"):
            path = path.with_suffix("")
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


def _model_size(key: str) -> str | None:
    found = _SIZE.findall(key.lower().split("-")[-1])
    return found[0] if found else None


def name_evidence(path: Path, model: ModelSpec) -> str | None:
    """What a trace file's name says about its model: ``None`` when it names no size, else the
    size it names; a size other than the model's is a ``ConfigError``."""
    sizes = set(_SIZE.findall(path.name.lower()))
    own = _model_size(model.key)
    if not sizes or own is None:
        return None
    if own not in sizes:
        raise ConfigError(f"{path}: the file name says {'/'.join(sorted(s + 'b' for s in sizes))}, not model "
                          f"{model.key!r}; traces of one model replayed as another give the other's numbers "
                          "(rename the file if its name is wrong)")
    return own + "b"


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
        self.tokenizer_path = source.tokenizer_path
        self.tokenizer = load_tokenizer(source, hint="give the traces' tokenizer folder with --tokenizer "
                                                     "(replay CLI) or trace_tokenizer (studies)")
        self.vocab_size = len(self.tokenizer)
        self.eos_id = self.tokenizer.eos_token_id
        self.context = source.max_context or shape_context(model)
        self.dataset = dataset
        self.spec = parse_dataset(dataset)[0]
        self._index: tuple[dict, dict] | None = None

    def index(self) -> tuple[dict[str, Problem], dict[str, Problem]]:
        if self._index is None:
            self._index = _problem_index(load_problems(self.dataset, 0, 0).problems)
        return self._index

    def dataset_label(self) -> str:
        resolved = resolve_source(self.dataset)
        if self.dataset == "auto" and resolved == "builtin":
            return ("dataset auto, which fell back to the kit's built-in problems (the hub is unreachable): "
                    "give MATH500 as a file (--dataset FILE, or dataset: PATH)")
        return f"dataset {self.dataset}"

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def check_context(self, prompt: tuple[int, ...], output: tuple[int, ...], where: str) -> None:
        if self.context is not None and len(prompt) + len(output) > self.context:
            raise ConfigError(f"{where}: prompt + output are {len(prompt) + len(output)} tokens, longer than "
                              f"{self.model.key}'s {self.context}-token context")


def _trace_from_record(reader: _Reader, record: dict, where: str) -> tuple[Trace, int | None]:
    """One trace, and how far its recorded token count is off the re-tokenized output (None: no count)."""
    by_id, by_text = reader.index()
    problem_text = _first(record, PROBLEM_FIELDS)
    unique_id = record.get("unique_id")
    if not problem_text and not unique_id:
        raise ConfigError(f"{where}: missing field 'problem' (or 'question', 'prompt' or 'unique_id')")
    problem = by_id.get(unique_id) if unique_id else by_text.get(" ".join(str(problem_text).split()))
    if problem is None:
        raise ConfigError(f"{where}: problem {unique_id or str(problem_text)[:40]!r} is not in {reader.dataset_label()}")
    if "prompt_ids" in record:
        prompt = _check_ids(record["prompt_ids"], reader.vocab_size, where, "prompt_ids")
    else:
        prompt = tuple(reader.encode(reader.model.prompt(problem.problem)))
    recorded = _recorded_count(record, where)
    if "output_ids" in record:
        output = _check_ids(record["output_ids"], reader.vocab_size, where, "output_ids")
        ended = bool(output) and output[-1] == reader.eos_id
        offset = None if recorded is None else recorded - len(output)
    else:
        text = _first(record, TEXT_FIELDS)
        if text is None:
            raise ConfigError(f"{where}: missing field 'output' (or 'full_response', 'response', 'completion' "
                              "or 'output_ids')")
        output = tuple(reader.encode(str(text)))
        ended = record.get("finish_reason", "stop") != "length" and _ended_by_count(record, recorded, len(output))
        offset = None if recorded is None else _count_offset(record, recorded, len(output))
        if ended and reader.eos_id is not None:
            output += (reader.eos_id,)  # the engine counts and emits the end-of-sequence token
    reader.check_context(prompt, output, where)
    return Trace(problem.unique_id, prompt, output, ended, problem.answer, _sample_index(record, where)), offset


def _sample_index(record: dict, where: str) -> int:
    """The record's repetition number (0 when it names none)."""
    value = _first(record, REPETITION_FIELDS)
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {'/'.join(REPETITION_FIELDS)} must be an integer, got {value!r}") from None


def _recorded_count(record: dict, where: str, names: tuple[str, ...] = COUNT_FIELDS) -> int | None:
    value = _first(record, names)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: recorded token count {value!r} is not an integer") from None


def _own_gold_differs(reader: _Reader, record: dict, trace: Trace) -> bool:
    """The trace carries its own gold answer, and it is not the dataset's once read by the same rule."""
    own = _first(record, GOLD_FIELDS)
    return own is not None and reader.spec.gold(own).strip() != trace.gold.strip()


def _gold_source(dataset: str) -> str:
    """The gold answers a set is graded against: its dataset, and how a record gives the gold."""
    source = resolve_source(dataset)
    return f"dataset {source} ({parse_dataset(source)[0].gold_rule})"


def _prompt_note(offsets: list[int], total: int) -> str:
    """What ``prefill_tokens`` recorded minus the kit's prompt tokens says about the replay's prompt."""
    if not offsets:
        return ""
    low, high = min(offsets), max(offsets)
    if low > 0 or high < 0:
        least, most = sorted((abs(low), abs(high)))
        how = f"{least if least == most else f'{least}..{most}'} tokens {'shorter' if low > 0 else 'longer'} than"
    else:
        how = f"{low:+d}..{high:+d} tokens off"
    return (f"in {len(offsets)} of {total} traces the kit's prompt re-tokenizes {how} the prefill_tokens recorded: "
            "the replay's prompt is not the one the model saw")


def _count_offset(record: dict, recorded: int, text_tokens: int) -> int:
    """Recorded count minus what the text gives: a stopped trace counts its end-of-sequence token,
    a trace cut at the length cap does not; without a finish reason either is exact."""
    reason = record.get("finish_reason")
    if reason is None:
        return 0 if recorded in (text_tokens, text_tokens + 1) else recorded - text_tokens - (recorded > text_tokens)
    return recorded - text_tokens - (reason != "length")


def _ended_by_count(record: dict, recorded: int | None, text_tokens: int) -> bool:
    """Without a finish reason, a recorded token count above the text's own tokens means the
    end-of-sequence token was emitted (and counted); otherwise the trace is taken as cut."""
    if "finish_reason" in record:
        return True
    return recorded is not None and recorded > text_tokens


def _open_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a JSON Lines file, plain or gzip, streamed; unreadable files and
    bytes that are not UTF-8 are one-line errors naming the line."""
    opener = gzip.open if path.name.endswith(".gz") else open
    number = 0
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise ConfigError(f"{path} line {number}: not UTF-8 text ({error.reason} at byte "
                                      f"{error.start} of the line)") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied (cannot read the trace file)") from None
    except (gzip.BadGzipFile, EOFError, OSError) as error:
        raise ConfigError(f"{path} line {number + 1}: unreadable ({error})") from None


def _records(path: Path) -> Iterator[tuple[str, dict]]:
    for number, line in _open_lines(path):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{where}: not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{where}: not a JSON object")
        yield where, record


def _jsonl_traces(reader: _Reader, path: Path) -> Iterator[tuple[str, dict, Trace, int | None]]:
    for where, record in _records(path):
        _check_model(_first(record, MODEL_FIELDS), reader.model, where)
        trace, offset = _trace_from_record(reader, record, where)
        yield where, record, trace, offset


def _folder_traces(reader: _Reader, folder: Path) -> Iterator[tuple[str, dict, Trace, int | None]]:

    identity = read_json(folder / "run.json")["identity"]
    _check_model(identity.get("model"), reader.model, str(folder / "run.json"))
    problems = {p.unique_id: p for p in load_problems(identity["problem_source"], 0, 0).problems}
    try:
        records = read_records(folder / "requests.jsonl")
    except CorruptResultError as error:
        raise ConfigError(str(error)) from None
    # A run that ran each budget separately holds one request per budget: its longest one per problem
    # and sample is the trace (the shorter ones are its prefixes under greedy decoding).
    longest: dict[tuple, tuple[int, dict]] = {}
    for number, record in enumerate(records, 1):
        key = (record["problem_id"], record.get("sample_index") or 0)
        if key not in longest or record.get("max_tokens", 0) > longest[key][1].get("max_tokens", 0):
            longest[key] = (number, record)
    for number, record in sorted(longest.values(), key=lambda pair: pair[0]):
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
        offset = record["completion_tokens"] - len(output) if "completion_tokens" in record else None
        trace = Trace(problem.unique_id, prompt, output, record["finish_reason"] == "stop", problem.answer,
                      int(record.get("sample_index") or 0))
        yield where, {"sample_index": record.get("sample_index"), "request_id": record["request_id"]}, trace, offset


def _iterate(reader: _Reader, path: Path) -> Iterator[tuple[str, dict, Trace, int | None]]:
    return _folder_traces(reader, path) if path.is_dir() else _jsonl_traces(reader, path)


def _advice(reader: _Reader) -> str:
    return (f"the tokenizer ({reader.tokenizer_path}) is probably not the one that wrote these traces; give the "
            "model's own with --tokenizer (replay CLI) or trace_tokenizer (studies)")


def _round_trips(reader: _Reader, record: dict, trace: Trace) -> bool:
    """Whether a trace survives its tokenizer both ways: text -> ids -> the same text, or (traces given
    as ids) ids -> text -> as many ids, within ``TOKEN_TOLERANCE`` (sampled ids need not be canonical)."""
    text = None if "output_ids" in record else _first(record, TEXT_FIELDS)
    ids = list(trace.output_ids)
    if text is not None and trace.ended and reader.eos_id is not None:
        ids = ids[:-1]  # the end-of-sequence token the reader appended
    decoded = reader.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if text is not None:
        return decoded == str(text)
    return abs(len(reader.encode(decoded)) - len(ids)) <= TOKEN_TOLERANCE


def _check_without_counts(path: Path, reader: _Reader, total: int, failed: list[str]) -> str:
    """No recorded token count to check the tokenizer against: its vocabulary against the model's
    embedding rows and a round trip of a sample instead. Refuses a clear mismatch; else the note."""
    missing = f"no recorded token counts ({' or '.join(COUNT_FIELDS)})"
    sampled = min(total, ROUND_TRIP_TRACES)
    rows = (shape_config(reader.model) or {}).get("vocab_size")
    ids = len(reader.tokenizer)
    if isinstance(rows, int) and abs(ids - rows) > VOCAB_SLACK * rows:
        raise ConfigError(f"{path}: {missing} to check the tokenizer against, and its {ids} ids (added tokens included) are not the vocabulary of "
                          f"{reader.model.key} ({rows} embedding rows, ±{VOCAB_SLACK:.0%}): {_advice(reader)}")
    if len(failed) > max(1, int(MISMATCH_SHARE * sampled)):
        raise ConfigError(f"{path}: {missing} to check the tokenizer against, and {len(failed)} of the first {sampled} traces do not survive a "
                          f"decode/re-encode round trip with it (first: {_line(failed[0])}): {_advice(reader)}")
    vocabulary = (f"its {ids} ids against {reader.model.key}'s {rows} embedding rows (±{VOCAB_SLACK:.0%})"
                  if isinstance(rows, int) else f"no shipped shape of {reader.model.key} to check its vocabulary against")
    return (f"{missing}: the tokenizer could not be checked against them; checked instead: {vocabulary}, and a "
            f"decode/re-encode round trip of {sampled} of its {total} traces")


def _check_counts(path: Path, reader: _Reader, offsets: list[tuple[str, str, int]], total: int) -> list[str]:
    """Refuse a set whose recorded token counts the tokenizer cannot reproduce; report exceptions."""
    advice = _advice(reader)
    for where, problem_id, offset in offsets:
        if abs(offset) > TOKEN_TOLERANCE:
            raise ConfigError(f"{where} ({problem_id}): the recorded token count is {offset:+d} off the re-tokenized "
                              f"output (tolerance ±{TOKEN_TOLERANCE}): {advice}")
    allowed = max(1, int(MISMATCH_SHARE * total))
    if len(offsets) > allowed:
        raise ConfigError(f"{path}: {len(offsets)} of {total} traces re-tokenize to another token count than "
                          f"recorded (at most {allowed} may, by ±{TOKEN_TOLERANCE}): {advice}")
    return [f"{_line(where)} ({problem_id}): recorded token count {offset:+d} off the re-tokenized output "
            f"(within ±{TOKEN_TOLERANCE})" for where, problem_id, offset in offsets]


def _line(where: str) -> str:
    """``line N`` of a ``PATH line N`` location."""
    return "line " + where.rsplit(" line ", 1)[-1]


def _progress_for(path: Path):
    """A progress counter (per trace) for long files, or a no-op."""
    size = path.stat().st_size if path.is_file() else 0
    if size < LONG_FILE_BYTES:
        return nullcontext(lambda: None)
    lines = sum(1 for _ in _open_lines(path))
    return progress(lines, f"checking {path.name} ({size / 2**20:.0f} MB)", unit="lines")


def load_trace_set(path: str | Path, model: ModelSpec, source: ModelSource, dataset: str = "auto") -> TraceSet:
    """Read and check one trace set for ``model`` (tokenized with ``source``'s tokenizer).

    One streamed pass checks every line (module docstring); the returned set's ``traces`` are read
    again, one at a time, when iterated.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise ConfigError(f"trace set not found: {path}")
    if path.is_dir() and not (path / "requests.jsonl").exists():
        raise ConfigError(f"{path} is a folder but not a run folder (no requests.jsonl)")
    if path.is_file() and not (path.name.endswith(".jsonl") or path.name.endswith(".jsonl.gz")):
        raise ConfigError(f"trace set {path}: expected a .jsonl or .jsonl.gz file, or one of the kit's run folders")
    named = None if path.is_dir() else name_evidence(path, model)
    reader = _Reader(model, source, dataset)
    declared, temperature, count, gold_differs = None, None, 0, 0
    counted, round_trip_failed = 0, []  # traces with a recorded token count; sampled ones failing a round trip
    seen: dict[tuple, str] = {}
    offsets: list[tuple[str, str, int]] = []
    prefill_offsets: list[int] = []
    digest = hashlib.sha256()
    with _progress_for(path) as advance:
        for where, record, trace, offset in _iterate(reader, path):
            declared = _first(record, MODEL_FIELDS) or declared
            if record.get("temperature") not in (None, ""):
                temperature = float(record["temperature"])
            # Lines told apart only by a request id are the same output twice, not two samples.
            key = (trace.problem_id, trace.sample_index)
            if key in seen:
                raise ConfigError(f"{where}: problem {trace.problem_id!r} appears again (first at "
                                  f"{_line(seen[key])}); a trace set holds "
                                  f"each problem once, or tells repetitions apart with {' or '.join(REPETITION_FIELDS)}")
            seen[key] = where
            if offset:
                offsets.append((where, trace.problem_id, offset))
            counted += offset is not None
            if offset is None and not path.is_dir() and count < ROUND_TRIP_TRACES and not _round_trips(reader, record, trace):
                round_trip_failed.append(where)
            prefill = _recorded_count(record, where, ("prefill_tokens",))
            if prefill is not None and prefill != len(trace.prompt_ids):
                prefill_offsets.append(prefill - len(trace.prompt_ids))
            gold_differs += _own_gold_differs(reader, record, trace)
            digest.update(json.dumps([trace.problem_id, trace.prompt_ids, trace.output_ids]).encode())
            count += 1
            advance()
    if not count:
        raise ConfigError(f"trace set {path} holds no traces")
    notes = _check_counts(path, reader, offsets, count)
    if not counted and not path.is_dir():
        notes.append(_check_without_counts(path, reader, count, round_trip_failed))
    dataset = reader.dataset
    if path.is_dir():
        identity = read_json(path / "run.json")["identity"]
        declared, temperature = identity.get("model"), identity["sampling"]["temperature"]
        dataset = identity["problem_source"]
    elif not declared and named is None:
        notes.append(f"no model field and no size in the file name: taken as {model.key} on your word (the tokens of "
                      "1.5B and 7B traces of one family cannot tell them apart)")
    gold_source = _gold_source(dataset)
    if gold_differs:
        notes.append(f"{gold_differs} of {count} traces carry their own gold ({' or '.join(GOLD_FIELDS)}) that "
                     f"differs from the dataset's read by the same rule; graded against {gold_source}")
    return TraceSet(str(path), model.key, {"temperature": temperature, "declared_model": declared},
                    _Traces(lambda: (trace for _, _, trace, _ in _iterate(reader, path)), count),
                    digest.hexdigest()[:16], tuple(notes), gold_source, _prompt_note(prefill_offsets, count))
