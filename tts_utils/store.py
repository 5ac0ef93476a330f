"""The results store: self-describing run folders that survive crashes and refuse corruption.

One folder per run under ``outputs/runs/<study>/<run name>-<identity hash>/``:

* ``run.json``       the run's full identity and configuration, with provenance (atomic write)
* ``requests.jsonl`` one line per finished request, each with a CRC of its record; appended and
                     fsynced as requests finish, so a crash keeps all finished work
* ``segments.jsonl`` one line per engine session: start-up time, engine version, counter deltas
* ``status.json``    ``running`` / ``incomplete`` / ``complete`` (+ checksums of the derived files)
* ``probe.jsonl``    system-only n-gram runs: probe requests, greedy with a presence penalty (steps without drafts)
* ``results.csv``    per request x budget rows (graded); ``summary.csv`` per budget; ``steps.csv``
                     per streamed chunk (context, draft length, seconds); written last
* ``failure.json``   error, traceback and engine log tail of the last failed attempt

A torn last line (the kit killed mid-write) is dropped with a warning and its request re-run; any
other bad line, or a derived file whose checksum does not match, is a ``CorruptResultError`` that
names the file. A study-level lock stops two sweeps writing one study at once. 04_analysis seals the
files others read with the same checksums (``write_sealed``, ``sealed_problem``).
Used by sweep.py (01-03), analysis.py (04) and the readers of 04's files (report/left_out.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tts_utils.errors import CorruptResultError, StudyLockedError
from tts_utils.paths import study_dir


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary sibling, fsync, rename: readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; results are for everyone to read
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CorruptResultError(f"{path}: unreadable JSON ({error})") from None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _encode_line(record: dict) -> str:
    payload = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    return f'{{"crc":{zlib.crc32(payload.encode())},"record":{payload}}}\n'


def append_record(path: Path, record: dict) -> None:
    """Append one checksummed record and fsync it before returning."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(_encode_line(record))
        out.flush()
        os.fsync(out.fileno())


def read_records(path: Path, repair: bool = False) -> list[dict]:
    """All records of a ``requests.jsonl``, each verified against its CRC.

    A last line without its newline is the mark of a crash mid-write: it is dropped with a
    warning (and cut from the file when ``repair``). Any other bad line raises.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = lines[-1] != b""
    complete_lines = lines[:-1]
    records = []
    for number, line in enumerate(complete_lines, 1):
        try:
            wrapper = json.loads(line.decode("utf-8"))
            payload = json.dumps(wrapper["record"], separators=(",", ":"), ensure_ascii=False)
            valid = zlib.crc32(payload.encode()) == wrapper["crc"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            valid = False
        if not valid:
            raise CorruptResultError(f"{path} line {number}: record fails its checksum (edited or corrupted)")
        records.append(wrapper["record"])
    if torn:
        warnings.warn(f"{path}: dropped a partial last line (a write was interrupted); "
                      "its request will be run again", stacklevel=2)
        if repair:
            with open(path, "r+b") as out:
                out.truncate(len(raw) - len(lines[-1]))
    return records


@dataclass
class RunFolder:
    """Paths and state of one run folder."""

    path: Path

    @property
    def run_file(self) -> Path:
        return self.path / "run.json"

    @property
    def requests_file(self) -> Path:
        return self.path / "requests.jsonl"

    @property
    def segments_file(self) -> Path:
        return self.path / "segments.jsonl"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def results_file(self) -> Path:
        return self.path / "results.csv"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.csv"

    @property
    def probe_file(self) -> Path:
        return self.path / "probe.jsonl"

    @property
    def steps_file(self) -> Path:
        return self.path / "steps.csv"

    @property
    def failure_file(self) -> Path:
        return self.path / "failure.json"

    @property
    def engine_log(self) -> Path:
        return self.path / "engine.log"

    def status(self) -> dict:
        return read_json(self.status_file) if self.status_file.exists() else {"state": "new"}

    def set_status(self, state: str, **extra: Any) -> None:
        atomic_write_json(self.status_file, {**{k: v for k, v in self.status().items()
                                                if k not in {"error"}}, "state": state, **extra})

    def mismatches(self, names: tuple[str, ...] | None = None) -> list[str]:
        """Files that no longer match the checksums status.json recorded when the run finished,
        each with why; ``names`` limits the check (default: every file recorded). results.csv and
        summary.csv are always recorded; older runs recorded no others, and are not held to them."""
        recorded = self.status().get("sha256", {})
        problems = []
        for name in names or tuple(recorded) or DERIVED_FILES:
            if name not in recorded and name not in DERIVED_FILES:
                continue
            target = self.path / name
            if not target.exists():
                problems.append(f"{target}: missing")
            elif file_sha256(target) != recorded.get(name):
                problems.append(f"{target}: checksum does not match status.json (edited or corrupted)")
        return problems

    def is_complete(self, names: tuple[str, ...] | None = None) -> bool:
        """Complete and its files match the checksums recorded when it finished (see ``mismatches``)."""
        return self.status().get("state") == "complete" and not self.mismatches(names)

    def checked(self, name: str) -> Path:
        """The path of one of the run's files, verified against its recorded checksum; a mismatch is
        a ``CorruptResultError`` that names the file and what repairs it."""
        problems = self.mismatches((name,))
        if problems:
            raise CorruptResultError(f"{problems[0]}; {REPAIR_ADVICE}")
        return self.path / name

    def segments(self) -> list[dict]:
        return read_records(self.segments_file)


# Checksummed at the end of every run (status.json); results.csv and summary.csv by every version.
DERIVED_FILES = ("results.csv", "summary.csv")
CHECKSUMMED_FILES = ("results.csv", "summary.csv", "steps.csv", "requests.jsonl", "probe.jsonl")
REPAIR_ADVICE = ("re-running the sweep (make reproduce, or notebooks 01-03) derives it again from requests.jsonl, "
                 "without an engine")


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of each of a finished run's files that exists (status.json records them)."""
    return {name: file_sha256(folder / name) for name in CHECKSUMMED_FILES if (folder / name).exists()}


def write_sealed(path: Path, text: str) -> None:
    """``atomic_write_text``, then the file's sha256 recorded in the ``status.json`` beside it, as a
    finished run records its files: 04_analysis seals what the pick and the landing page read."""
    atomic_write_text(path, text)
    status = read_json(path.parent / "status.json") if (path.parent / "status.json").exists() else {}
    atomic_write_json(path.parent / "status.json", {**status, "sha256": {**status.get("sha256", {}),
                                                                         path.name: file_sha256(path)}})


def sealed_problem(path: Path, repair: str) -> str:
    """Why a file ``write_sealed`` wrote cannot be trusted ("" when it matches its checksum): missing,
    no checksum recorded (an older writer), or a mismatch (``RunFolder.mismatches``); ``repair`` says
    what writes it again."""
    folder = RunFolder(path.parent)
    try:
        recorded = folder.status().get("sha256", {})
    except CorruptResultError as error:
        return f"{error}; {repair}"
    if not path.exists():
        return f"{path}: missing; {repair}"
    if path.name not in recorded:
        return f"{path}: no checksum recorded in {folder.status_file.name} (written by an older kit); {repair}"
    problems = folder.mismatches((path.name,))
    return f"{problems[0]}; {repair}" if problems else ""


@contextmanager
def study_lock(study: str) -> Iterator[Path]:
    """Exclusive, non-blocking lock on a study folder; a second sweep refuses at once."""
    folder = study_dir(study)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / ".lock"
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise StudyLockedError(
                f"another sweep (pid {holder}) is writing {folder}; wait for it or choose another study"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield folder
    finally:
        handle.close()


@dataclass
class StudyResults:
    """Everything 04_analysis reads: per-request rows, per-budget summaries, run metadata."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    runs: pd.DataFrame
    excluded: list[tuple[str, str]] = field(default_factory=list)
    # Batched accuracy passes (method baseline-batched): their latency is batched, so they are kept
    # out of ``rows`` and ``summary``; latency runs on subsets carry their grades as predicted rows.
    batched: pd.DataFrame = field(default_factory=pd.DataFrame)


def unfinished(status: dict) -> str:
    """Why a run that is not complete is left out, in words: its state, how far it got and what
    stopped it ("unfinished (incomplete): 1 request done, stopped by KeyboardInterrupt; the sweep
    resumes it"). Used by load_study and report/modelled.py."""
    state = status.get("state", "new")
    done = status.get("done")
    far = f": {done} request(s) done" if isinstance(done, int) else ""
    error = str(status.get("error") or "").strip().rstrip(":")
    stopped = f", stopped by {error}" if error else ""
    return f"unfinished ({state}){far}{stopped}; running its sweep again resumes it"


def load_study(study: str) -> StudyResults:
    """Load every complete run of a study into pandas, in one call.

    Runs that are unfinished, or whose files fail validation, are left out and listed in
    ``excluded`` with the file and the reason, never mixed in silently.
    """
    rows, summaries, runs, excluded, batched = [], [], [], [], []
    folder = study_dir(study)
    for run_dir in sorted(p for p in folder.glob("*") if p.is_dir()) if folder.exists() else []:
        run = RunFolder(run_dir)
        try:
            if run.status().get("state", "new") != "complete":
                excluded.append((str(run_dir), unfinished(run.status())))
                continue
            problems = run.mismatches(DERIVED_FILES)
            if problems:
                raise CorruptResultError(f"{problems[0]}; {REPAIR_ADVICE}")
            meta = read_json(run.run_file)
            runs.append({"run_name": run_dir.name, **meta["identity"], "budget_mode": run.status().get("budget_mode"),
                         "batch_check": run.status().get("batch_check"),
                         "prediction_check": run.status().get("prediction_check")})
            if meta["identity"].get("method") == "baseline-batched":
                batched.append(pd.read_csv(run.summary_file))
                continue
            rows.append(pd.read_csv(run.results_file))
            summaries.append(pd.read_csv(run.summary_file))
        except (CorruptResultError, pd.errors.ParserError, KeyError, OSError) as error:
            excluded.append((str(run_dir), str(error)))
    return StudyResults(
        rows=pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(),
        summary=pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(),
        runs=pd.DataFrame(runs),
        excluded=excluded,
        batched=pd.concat(batched, ignore_index=True) if batched else pd.DataFrame(),
    )


def no_runs_reason(results: StudyResults, study: str) -> str:
    """Why a study has nothing to analyse, and what repairs it (04_analysis's first check)."""
    if not results.excluded:
        return f"no complete runs in study {study!r}: run 01-03 first"
    corrupt = [(Path(path).name, reason) for path, reason in results.excluded
               if "checksum" in reason or "missing" in reason or "unreadable" in reason]
    if corrupt:
        name, reason = corrupt[0]
        return (f"every run of study {study!r} was left out: {len(corrupt)} of {len(results.excluded)} fail their "
                f"checksums (first: {name}: {reason.split('; ')[0]}); {REPAIR_ADVICE}")
    name, reason = results.excluded[0]
    return (f"no complete runs in study {study!r}: {len(results.excluded)} left out (first: {name}: {reason}); "
            "re-running 01-03 resumes them")

