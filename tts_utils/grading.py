"""Grade model outputs against MATH500 gold answers with math-verify, under two stated rules.

* strict (headline): only an answer written after the reasoning ends (``</think>`` for the R1
  distills, ``<|im_start|>answer`` for s1.1) counts. A trace cut off by the budget before its
  reasoning ended scores 0, even if the gold value appears somewhere in the unfinished work.
* lenient: math-verify's own extraction over the whole text (what many harnesses report).

Every item is graded in a worker process with a hard per-item timeout: an output that hangs or
crashes the parser is marked ``timeout``/``crash`` and the worker is replaced, so no output can
stop a sweep. Inside it, each parse and comparison is limited in CPU time, not wall time: a grader
starved of CPU by engines beside it grades as a quiet one does (math-verify's own limits are wall-clock
alarms, and one fired on a loaded 2-core machine: a correct 7B answer graded wrong, 0.90 for 0.91).
Used by sweep.py (01-03) when a run is finalised, and by replay.py.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from types import TracebackType

from tts_utils.errors import GraderStartError

# CPU seconds for each parse or comparison inside the worker (its process CPU time, SIGPROF).
INNER_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class GradeItem:
    """One output to grade."""

    text: str
    gold: str
    reasoning_end: str


@dataclass(frozen=True)
class Grade:
    """Outcome for one output; ``status`` is ``ok``, ``timeout``, ``crash`` or ``error: ...``."""

    strict_correct: bool
    lenient_correct: bool
    reasoning_finished: bool
    strict_answer: str | None
    lenient_answer: str | None
    status: str
    grade_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def final_answer_part(text: str, reasoning_end: str) -> str | None:
    """Text after the last end-of-reasoning marker, or ``None`` if the reasoning never ended."""
    if reasoning_end not in text:
        return None
    return text.rpartition(reasoning_end)[2]


def _shown(parsed: list) -> str | None:
    return str(parsed[-1])[:200] if parsed else None


class CpuTimeout(BaseException):
    """A parse or comparison used up its CPU seconds (BaseException, as math-verify's own timeout,
    so that no ``except Exception`` inside the parser swallows it)."""


@contextmanager
def cpu_limit(seconds: float) -> Iterator[None]:
    """Raise ``CpuTimeout`` once this process has used ``seconds`` of CPU time inside the block
    (user and system, ``ITIMER_PROF``): waiting for a core does not count, spinning does."""

    def expired(signum: int, frame: object) -> None:
        raise CpuTimeout

    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _parse(text: str) -> list:
    """math-verify's parse without its wall-clock alarm, within ``INNER_TIMEOUT_S`` CPU seconds ([] after)."""
    from math_verify import parse

    try:
        with cpu_limit(INNER_TIMEOUT_S):
            return parse(text, parsing_timeout=None)
    except CpuTimeout:
        return []


def _verify(gold: list, prediction: list) -> bool:
    """math-verify's verify without its wall-clock alarm, within ``INNER_TIMEOUT_S`` CPU seconds (False after)."""
    from math_verify import verify

    if not (gold and prediction):
        return False
    try:
        with cpu_limit(INNER_TIMEOUT_S):
            return bool(verify(gold, prediction, timeout_seconds=None))
    except CpuTimeout:
        return False


def grade_in_process(item: GradeItem, gold_cache: dict | None = None) -> dict:
    """Grade one item in this process (the worker calls this). Returns ``Grade`` fields."""
    started = time.perf_counter()
    text = item.text if isinstance(item.text, str) else str(item.text)
    cache = gold_cache if gold_cache is not None else {}
    gold = cache.get(item.gold) or _parse(f"${item.gold}$")
    if gold:  # an empty parse is not kept: it is tried again with the next item
        cache[item.gold] = gold
    lenient_pred = _parse(text)
    lenient = _verify(gold, lenient_pred)
    answer_part = final_answer_part(text, item.reasoning_end)
    strict_pred = _parse(answer_part) if answer_part else []
    strict = _verify(gold, strict_pred)
    return {
        "strict_correct": bool(strict), "lenient_correct": bool(lenient),
        "reasoning_finished": answer_part is not None, "strict_answer": _shown(strict_pred),
        "lenient_answer": _shown(lenient_pred), "status": "ok",
        "grade_s": time.perf_counter() - started,
    }


READY = "ready"


def _worker(conn: Connection) -> None:
    # math-verify warns once that its own timeouts are off (the kit's are CPU-time limits), and logs
    # whole offending texts on errors: a 1 MB output would flood the notebook.
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    gold_cache: dict = {}
    conn.send(READY)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        try:
            result = grade_in_process(GradeItem(*message), gold_cache)
        except Exception as error:  # any parser failure is a graded-as-error item, not a crash
            result = {"status": f"error: {type(error).__name__}: {str(error)[:200]}"}
        conn.send(result)


def _failed(status: str, seconds: float, text: str, reasoning_end: str) -> Grade:
    return Grade(False, False, final_answer_part(text, reasoning_end) is not None, None, None,
                 status, seconds)


# A fresh worker says it is ready within this time (it imports nothing heavy before saying so).
WORKER_START_TIMEOUT_S = 120.0


class Grader:
    """Grades items one by one in a replaceable worker process.

    Use as a context manager: ``with Grader() as grader: grades = grader.grade_many(items)``.
    """

    def __init__(self, item_timeout_s: float = 10.0) -> None:
        self.item_timeout_s = item_timeout_s
        self._context = mp.get_context("spawn")
        self._process: mp.Process | None = None
        self._conn: Connection | None = None
        self._warm = False  # a fresh worker's first item also pays for its imports

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _ensure_worker(self) -> Connection:
        if self._process is None or not self._process.is_alive():
            parent, child = self._context.Pipe()
            self._process = self._context.Process(target=_worker, args=(child,), daemon=True)
            self._process.start()
            child.close()
            self._conn = parent
            self._await_ready(parent)
        assert self._conn is not None
        return self._conn

    def _await_ready(self, conn: Connection) -> None:
        """Wait for a new worker's hello. A worker that dies first never graded anything, so no item
        may count it as a crash (graded wrong): the cause is the process, not the text."""
        try:
            if conn.poll(WORKER_START_TIMEOUT_S) and conn.recv() == READY:
                return
        except (EOFError, OSError):
            pass
        if self._process is not None:
            self._process.join(timeout=5)
        exit_code = self._process.exitcode if self._process is not None else None
        self._kill_worker()
        raise GraderStartError(
            f"the grading worker died before grading anything (exit code {exit_code}); a script that grades must run its code under "
            "`if __name__ == \"__main__\":`, because the worker is a spawned process that imports the script again")

    def _kill_worker(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(timeout=5)
        self._process = None
        self._conn = None
        self._warm = False

    def close(self) -> None:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            try:
                self._conn.send(None)
                self._process.join(timeout=5)
            except (BrokenPipeError, OSError):
                pass
        self._kill_worker()

    def grade(self, item: GradeItem) -> Grade:
        """Grade one item; never raises for bad text, never waits longer than the timeout."""
        text = item.text
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        started = time.perf_counter()
        conn = self._ensure_worker()
        budget_s = self.item_timeout_s + (0.0 if self._warm else 30.0)
        try:
            conn.send((text, item.gold, item.reasoning_end))
            if not conn.poll(budget_s):
                self._kill_worker()
                return _failed("timeout", time.perf_counter() - started, text, item.reasoning_end)
            result = conn.recv()
        except (EOFError, BrokenPipeError, OSError):
            self._kill_worker()
            return _failed("crash", time.perf_counter() - started, text, item.reasoning_end)
        self._warm = True
        if result.get("status") != "ok":
            return _failed(result["status"], time.perf_counter() - started, text, item.reasoning_end)
        result["grade_s"] = time.perf_counter() - started
        return Grade(**result)

    def grade_many(self, items: list[GradeItem]) -> list[Grade]:
        return [self.grade(item) for item in items]
