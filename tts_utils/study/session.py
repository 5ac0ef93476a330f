"""One engine session of a run, as a list of tasks (``TASKS``): the missing requests, the one-pass
and batch-invariance checks, the no-draft probe, the prediction check and budget forcing. The engine
starts only when one has work; the session is recorded in segments.jsonl. Used by sweep.execute (01-03).
Inside ``engines_kept`` (a sequential sweep) an engine stays up for the next run whose engine
configuration is the same (on a CPU, 01's batched pass and its latency runs): one start instead of two.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tts_utils import provenance
from tts_utils.engine.energy import ENERGY_KEYS, EnergyMeter, used_gpu_indices
from tts_utils.engine.model_source import load_tokenizer
from tts_utils.engine.runner import (
    RequestSpec,
    SamplingConfig,
    counter_delta,
    make_client,
    read_counters,
    run_requests,
    stream_one,
)
from tts_utils.engine.server import VLLMServer
from tts_utils.hardware import detect
from tts_utils.progress import progress
from tts_utils.store import (
    RunFolder,
    append_record,
    read_records,
)
from tts_utils.study import budget_forcing
from tts_utils.study.plan import (
    BATCH_CHECK_PROBLEMS,
    ONE_PASS_CHECK_PROBLEMS,
    PROBE_PRESENCE_PENALTY,
    WARMUP_TOKENS,
    RunPlan,
)
from tts_utils.study.results import latency_scope, prediction_check

if TYPE_CHECKING:
    import httpx


def _warm_up(client, server: VLLMServer, plan: RunPlan) -> None:
    """One short request before measuring, kept out of the results."""
    first = plan.problems.problems[0]
    stream_one(client, server.base_url, plan.model.key,
               RequestSpec("warmup", first.unique_id, 0, plan.model.prompt(first.problem), WARMUP_TOKENS),
               plan.sampling)


def _rerun_alone(client, server: VLLMServer, plan: RunPlan, records: list[dict], problems: int, label: str,
                 max_tokens: int | None) -> tuple[list[str], list[tuple[str, int]]]:
    """Re-run the first problems one at a time, at ``max_tokens`` (None: each record's own), and
    compare their tokens with the recorded run's first tokens. Returns the problems checked and,
    for each mismatch, the problem and the first token that differs."""
    recorded = {r["problem_id"]: r for r in records if r["sample_index"] == 0}
    checked, mismatches = [], []
    for problem in plan.problems.problems[:problems]:
        record = recorded.get(problem.unique_id)
        if record is None:
            continue
        length = max_tokens or record["max_tokens"]
        again = stream_one(client, server.base_url, plan.model.key,
                           RequestSpec(f"{label}-{problem.unique_id}", problem.unique_id, 0,
                                       plan.model.prompt(problem.problem), length), plan.sampling).token_ids
        expected = record["token_ids"][:length]
        checked.append(problem.unique_id)
        if again != expected:
            differs = next((i for i, (a, b) in enumerate(zip(again, expected)) if a != b), min(len(again), len(expected)))
            mismatches.append((problem.unique_id, differs))
    return checked, mismatches


def verify_one_pass(client, server: VLLMServer, plan: RunPlan, records: list[dict],
                    problems: int = ONE_PASS_CHECK_PROBLEMS) -> dict:
    """Re-run a few problems at the smallest budget and compare with the long run's prefix."""
    budget = min(plan.budgets)
    checked, mismatches = _rerun_alone(client, server, plan, records, problems, "check", budget)
    return {"budget_tokens": budget, "checked": checked, "mismatches": [m[0] for m in mismatches],
            "consistent": not mismatches}


def verify_batch_invariance(client, server: VLLMServer, plan: RunPlan, records: list[dict],
                            problems: int = BATCH_CHECK_PROBLEMS) -> dict:
    """Re-run a few problems of the batched pass alone (concurrency 1, same engine) and compare
    every token: batch-invariant kernels make them equal; where they are not, the batched tokens
    do not stand for batch-1 runs."""
    checked, mismatches = _rerun_alone(client, server, plan, records, problems, "batch-check", None)
    return {"checked": checked, "consistent": bool(checked) and not mismatches,
            "mismatches": [{"problem_id": p, "first_difference_at_token": at} for p, at in mismatches],
            "batch_invariant_env": dict(plan.engine.env).get("VLLM_BATCH_INVARIANT") == "1"}


def _measure(client, server: VLLMServer, plan: RunPlan, target: Path, specs: list[RequestSpec],
             sampling: SamplingConfig | None = None) -> dict:
    """Run requests, appending each finished record to ``target``; returns the /metrics counter
    deltas and the GPU energy of the run (per request too, at concurrency 1)."""
    per_request = plan.concurrency == 1

    def keep(record, meter: EnergyMeter) -> None:
        entry = record.to_dict()
        entry["energy_j"] = meter.mark() if per_request else None
        append_record(target, entry)

    before = read_counters(client, server.base_url)
    with EnergyMeter(used_gpu_indices(plan.tensor_parallel_size) if detect().accelerator == "gpu" else ()) as meter:
        with progress(len(specs), plan.run_name) as advance:
            run_requests(client, server.base_url, plan.model.key, specs, sampling or plan.sampling,
                         plan.concurrency, on_record=lambda record: keep(record, meter), progress=advance)
    counters = counter_delta(before, read_counters(client, server.base_url))
    return {**counters, **meter.reading.to_counters()}


@dataclass
class Session:
    """What the tasks of one engine session share: the run, what was on disk when the session
    opened, the engine once it is up, and the session's line in segments.jsonl."""

    plan: RunPlan
    folder: RunFolder
    budget_mode: str | None  # None until the one-pass check decides it
    every_problem: bool  # False: the latency subset only, unless the prediction check misses
    scope: str  # the latency scope, as status.json records it
    records: list[dict]  # the requests on disk when the session opened
    missing: list[RequestSpec]  # the requests the run still needs, as of then
    client: httpx.Client | None = None
    server: VLLMServer | None = None
    record: dict = field(default_factory=dict)  # this session's line in segments.jsonl
    deltas: list[dict] = field(default_factory=list)  # /metrics counter deltas and energy per measured batch
    counted: int = 0  # requests whose engine counters are in ``deltas``

    @property
    def mode(self) -> str:
        """The budget mode that stands: one-pass unless a check said otherwise."""
        return self.budget_mode or "one-pass"

    def measure(self, specs: list[RequestSpec]) -> None:
        """Run requests into requests.jsonl, keeping their counters and energy for the session's line."""
        self.deltas.append(_measure(self.client, self.server, self.plan, self.folder.requests_file, specs))
        self.counted += len(specs)

    def measure_not_on_disk(self, specs: list[RequestSpec]) -> None:
        """Run those of ``specs`` that requests.jsonl does not hold yet."""
        done = {r["request_id"] for r in read_records(self.folder.requests_file)}
        self.measure([s for s in specs if s.request_id not in done])


@dataclass(frozen=True)
class SessionTask:
    """One task of an engine session.

    ``due``: whether it has work, read from disk before the engine starts (the engine starts only
    when some task has). ``run``: with the engine up, does the work there is then, which an earlier
    task may have added to (the budget-forcing continuations of requests just measured).
    """

    due: Callable[[Session], bool]
    run: Callable[[Session], None]


def _open(plan: RunPlan, folder: RunFolder, budget_mode: str | None) -> Session:
    """The session's view of the run folder: requests on disk (a torn last line repaired), the
    latency scope, and the requests still missing."""
    records = read_records(folder.requests_file, repair=True)
    done = {r["request_id"] for r in records}
    every_problem, scope = latency_scope(plan, folder)
    missing = [s for s in plan.request_specs(budget_mode or "one-pass", every_problem) if s.request_id not in done]
    return Session(plan, folder, budget_mode, every_problem, scope, records, missing)


def _missing_due(session: Session) -> bool:
    return bool(session.missing)


def _measure_missing(session: Session) -> None:
    """The requests the run needed when the session opened."""
    if session.missing:
        session.measure(session.missing)


def _one_pass_check_due(session: Session) -> bool:
    return session.budget_mode is None and len(session.plan.budgets) > 1 and not session.plan.batched


def _check_one_pass(session: Session) -> None:
    """Shorter budgets are read off the long run's prefix; where re-runs at the smallest budget
    differ, fall back to a separate run per budget."""
    if not _one_pass_check_due(session):
        return
    plan, folder = session.plan, session.folder
    check = verify_one_pass(session.client, session.server, plan, read_records(folder.requests_file))
    session.budget_mode = "one-pass" if check["consistent"] else "separate"
    folder.set_status("running", budget_mode=session.budget_mode, one_pass_check=check)
    if session.budget_mode == "separate":
        print(f"!! {plan.run_name}: runs at max_tokens={check['budget_tokens']} differ from the long "
              f"run's prefix ({len(check['mismatches'])} of {len(check['checked'])} checked); "
              "falling back to a separate run per budget for this configuration.")
        session.measure_not_on_disk(plan.request_specs("separate", session.every_problem))


def _batch_check_due(session: Session) -> bool:
    return session.plan.batched and "batch_check" not in session.folder.status()


def _check_batch_invariance(session: Session) -> None:
    """Whether the batched pass's tokens stand for batch-1 runs; recorded, and said when not."""
    if not _batch_check_due(session):
        return
    plan = session.plan
    check = verify_batch_invariance(session.client, session.server, plan, read_records(session.folder.requests_file))
    session.folder.set_status("running", batch_check=check)
    if not check["consistent"]:
        print(f"!! {plan.run_name}: the batched pass's greedy tokens differ from batch-1 tokens on "
              f"{len(check['mismatches'])} of {len(check['checked'])} problems checked; latency runs of "
              f"{plan.model.key} fall back to measuring every problem at concurrency 1.")


def _probe_due(session: Session) -> bool:
    return len(read_records(session.folder.probe_file)) < session.plan.probe_requests


def _probe_without_draft(session: Session) -> None:
    """The no-draft probe's requests not on disk yet, into probe.jsonl (their counters apart)."""
    plan, folder = session.plan, session.folder
    probed = {r["request_id"] for r in read_records(folder.probe_file)}
    probes = [s for s in plan.probe_specs() if s.request_id not in probed]
    if probes:
        probe_sampling = replace(plan.sampling, temperature=0.0, presence_penalty=PROBE_PRESENCE_PENALTY)
        session.record["probe_sampling"] = probe_sampling.identity()
        session.record["probe"] = _measure(session.client, session.server, plan, folder.probe_file, probes,
                                           probe_sampling)


def _prediction_check_due(session: Session) -> bool:
    return not session.every_problem and "prediction_check" not in session.folder.status()


def _check_prediction(session: Session) -> None:
    """A latency subset stands for every problem only if the step-cost prediction holds; else
    every problem is measured now."""
    if not _prediction_check_due(session):
        return
    plan, folder = session.plan, session.folder
    gate = prediction_check(plan, folder)
    folder.set_status("running", prediction_check=gate)
    if not gate["passed"]:
        session.scope = (f"every problem measured: the step-cost prediction missed by {gate['worst_error']:+.1%} "
                         f"(tolerance {plan.prediction_tolerance:.0%})")
        print(f"!! {plan.run_name}: {session.scope}; measuring the other problems now.")
        folder.set_status("running", latency_scope=session.scope)
        session.measure_not_on_disk(plan.request_specs(session.mode))


def _forcing_due(session: Session) -> bool:
    return bool(session.plan.force_answer_tokens) and (
        bool(session.missing) or _forcing_pending(session.plan, session.folder, session.records))


def _force_answers(session: Session) -> None:
    """The budget-forcing continuations not on disk yet, once every budget's tokens are final
    (one-pass or separate)."""
    plan = session.plan
    if not plan.force_answer_tokens:
        return
    forced_file = session.folder.path / budget_forcing.FORCED_FILE
    session.record["forced_requests_run"] = budget_forcing.run_forcing(
        session.client, session.server.base_url, plan, read_records(session.folder.requests_file), forced_file,
        {r["request_id"] for r in read_records(forced_file)})


# The session's tasks, in the order they run.
TASKS = (
    SessionTask(_missing_due, _measure_missing),
    SessionTask(_one_pass_check_due, _check_one_pass),
    SessionTask(_batch_check_due, _check_batch_invariance),
    SessionTask(_probe_due, _probe_without_draft),
    SessionTask(_prediction_check_due, _check_prediction),
    SessionTask(_forcing_due, _force_answers),
)


def engine_session(plan: RunPlan, folder: RunFolder, budget_mode: str | None) -> str:
    """Start an engine if a task has work, run the tasks, record the session; returns the budget
    mode that stands (``one-pass`` or ``separate``)."""
    session = _open(plan, folder, budget_mode)
    if any(task.due(session) for task in TASKS):
        folder.set_status("running", budget_mode=budget_mode, done=len({r["request_id"] for r in session.records}),
                          latency_scope=session.scope)
        _run_on_engine(session)
    return session.mode


@dataclass
class KeptEngine:
    """The engine a sequential sweep keeps up after a run's session, and the run that started it."""

    server: VLLMServer | None = None
    started_by: str = ""


_KEPT: ContextVar[KeptEngine | None] = ContextVar("kept_engine", default=None)


@contextmanager
def engines_kept() -> Iterator[None]:
    """Within it, a run's engine is kept for the next run with the same engine configuration, and
    stopped when a run needs another, when a session fails, and at the end. Used by sweep.run_sweep
    (sequential placement; under Ray each run is its own task)."""
    kept = KeptEngine()
    token = _KEPT.set(kept)
    try:
        yield
    finally:
        _KEPT.reset(token)
        if kept.server is not None:
            kept.server.stop()


def _take_engine(plan: RunPlan, log: Path) -> tuple[VLLMServer, str]:
    """The kept engine if it serves ``plan.engine`` and is alive (with the run that started it),
    else a new one, started (with ""). A kept engine of another configuration is stopped first:
    never two engines at once."""
    kept = _KEPT.get()
    if kept is not None and kept.server is not None:
        server, kept.server = kept.server, None
        if server.config == plan.engine and server.process is not None and server.process.poll() is None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')}: the engine of run {kept.started_by} "
                             f"(port {server.port}, its log: {server.log_path}) kept for this run ===\n")
            return server, kept.started_by
        server.stop()
    server = VLLMServer(plan.engine, log, startup_timeout_s=plan.startup_timeout_s)
    server.start()
    return server, ""


def _run_on_engine(session: Session) -> None:
    """Start the engine (or take the one kept for this configuration), warm it up and run every task
    in turn; the session's line is written even when a task fails or the run is interrupted."""
    plan = session.plan
    session.record = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "provenance": provenance.collect()}
    started = time.monotonic()
    server: VLLMServer | None = None
    try:
        server, shared_with = _take_engine(plan, session.folder.engine_log)
        with make_client(server.headers) as client:
            try:
                session.client, session.server = client, server
                session.record["engine_startup_s"] = None if shared_with else server.startup_s
                if shared_with:
                    session.record["engine_kept_from"] = shared_with
                session.record["engine_version"] = client.get(f"{server.base_url}/version").json().get("version")
                _warm_up(client, server, plan)
                for task in TASKS:
                    task.run(session)
            except BaseException:
                # The engine stops before the client closes: that ends any stream in flight, instead
                # of the client waiting on it.
                server.stop()
                raise
        kept = _KEPT.get()
        if kept is not None:
            kept.server, kept.started_by, server = server, shared_with or plan.run_name, None
    except BaseException as error:
        session.record["interrupted"] = f"{type(error).__name__}: {error}".splitlines()[0]
        raise
    finally:
        if server is not None:
            server.stop()
        _record_session(session, started)


def _record_session(session: Session, started: float) -> None:
    """Append the session's line to segments.jsonl.

    Recorded even when interrupted: the requests that finished are on disk and the next session
    will not run them again, so their energy and time are kept here, and ``requests_counted`` <
    ``requests_run`` tells finalize that their engine counters are lost.
    """
    record, deltas = session.record, session.deltas
    try:  # read only: a torn last line is repaired by the next session, as always
        record["requests_run"] = len(read_records(session.folder.requests_file)) - len(session.records)
    except Exception:  # an unreadable file is reported by the next read; this record must still be written
        record["requests_run"] = None
    record["requests_counted"] = session.counted
    record["energy"] = [{k: d.get(k) for k in ENERGY_KEYS} for d in deltas]
    record["counters"] = {k: sum(d.get(k, 0.0) for d in deltas) for d in deltas for k in d if k.startswith("vllm:")}
    record["wall_s"] = time.monotonic() - started
    append_record(session.folder.segments_file, record)


def _forcing_pending(plan: RunPlan, folder: RunFolder, records: list[dict]) -> bool:
    """Whether some budget-forcing continuation of the requests on disk is not on disk yet."""
    tokenizer = load_tokenizer(plan.source)
    prompts = plan.prompts_by_problem()
    done = {r["request_id"] for r in read_records(folder.path / budget_forcing.FORCED_FILE)}
    return bool(budget_forcing.forced_specs(records, plan.budgets, prompts, plan.model, tokenizer,
                                            plan.force_answer_tokens, done))
