"""One engine session of a run: start the engine, run the missing requests, then the one-pass,
batch-invariance and prediction checks, the no-draft probe and budget forcing; record the session.
Used by sweep.execute (01-03).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

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


def engine_session(plan: RunPlan, folder: RunFolder, budget_mode: str | None) -> str:
    """Start an engine, run what is missing (and the one-pass, batch and prediction checks),
    record the session."""
    records = read_records(folder.requests_file, repair=True)
    done = {r["request_id"] for r in records}
    every_problem, scope = latency_scope(plan, folder)
    missing = [s for s in plan.request_specs(budget_mode or "one-pass", every_problem) if s.request_id not in done]
    needs_check = budget_mode is None and len(plan.budgets) > 1 and not plan.batched
    needs_batch_check = plan.batched and "batch_check" not in folder.status()
    needs_gate = not every_problem and "prediction_check" not in folder.status()
    needs_probe = len(read_records(folder.probe_file)) < plan.probe_requests
    needs_force = bool(plan.force_answer_tokens) and (bool(missing) or _forcing_pending(plan, folder, records))
    if not (missing or needs_check or needs_batch_check or needs_gate or needs_probe or needs_force):
        return budget_mode or "one-pass"
    folder.set_status("running", budget_mode=budget_mode, done=len(done), latency_scope=scope)
    session = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "provenance": provenance.collect()}
    started = time.monotonic()
    deltas: list[dict] = []
    counted = 0  # requests whose engine counters are in ``deltas``

    def measure(specs: list[RequestSpec]) -> None:
        nonlocal counted
        deltas.append(_measure(client, server, plan, folder.requests_file, specs))
        counted += len(specs)

    server = VLLMServer(plan.engine, folder.engine_log, startup_timeout_s=plan.startup_timeout_s)
    try:
        # The client is entered first so that it closes last: on an interrupt the engine stops first,
        # which ends any stream in flight, instead of the client waiting on that stream.
        with make_client(server.headers) as client, server:
            session["engine_startup_s"] = server.startup_s
            session["engine_version"] = client.get(f"{server.base_url}/version").json().get("version")
            _warm_up(client, server, plan)
            if missing:
                measure(missing)
            if needs_check:
                check = verify_one_pass(client, server, plan, read_records(folder.requests_file))
                budget_mode = "one-pass" if check["consistent"] else "separate"
                folder.set_status("running", budget_mode=budget_mode, one_pass_check=check)
                if budget_mode == "separate":
                    print(f"!! {plan.run_name}: runs at max_tokens={check['budget_tokens']} differ from the long "
                          f"run's prefix ({len(check['mismatches'])} of {len(check['checked'])} checked); "
                          "falling back to a separate run per budget for this configuration.")
                    done = {r["request_id"] for r in read_records(folder.requests_file)}
                    measure([s for s in plan.request_specs("separate", every_problem) if s.request_id not in done])
            if needs_batch_check:
                check = verify_batch_invariance(client, server, plan, read_records(folder.requests_file))
                folder.set_status("running", batch_check=check)
                if not check["consistent"]:
                    print(f"!! {plan.run_name}: the batched pass's greedy tokens differ from batch-1 tokens on "
                          f"{len(check['mismatches'])} of {len(check['checked'])} problems checked; latency runs of "
                          f"{plan.model.key} fall back to measuring every problem at concurrency 1.")
            probed = {r["request_id"] for r in read_records(folder.probe_file)}
            probes = [s for s in plan.probe_specs() if s.request_id not in probed]
            if probes:
                probe_sampling = replace(plan.sampling, temperature=0.0, presence_penalty=PROBE_PRESENCE_PENALTY)
                session["probe_sampling"] = probe_sampling.identity()
                session["probe"] = _measure(client, server, plan, folder.probe_file, probes, probe_sampling)
            if needs_gate:
                gate = prediction_check(plan, folder)
                folder.set_status("running", prediction_check=gate)
                if not gate["passed"]:
                    scope = (f"every problem measured: the step-cost prediction missed by {gate['worst_error']:+.1%} "
                             f"(tolerance {plan.prediction_tolerance:.0%})")
                    print(f"!! {plan.run_name}: {scope}; measuring the other problems now.")
                    folder.set_status("running", latency_scope=scope)
                    done = {r["request_id"] for r in read_records(folder.requests_file)}
                    measure([s for s in plan.request_specs(budget_mode or "one-pass") if s.request_id not in done])
            if plan.force_answer_tokens:  # after every budget's tokens are final (one-pass or separate)
                forced_file = folder.path / budget_forcing.FORCED_FILE
                session["forced_requests_run"] = budget_forcing.run_forcing(
                    client, server.base_url, plan, read_records(folder.requests_file), forced_file,
                    {r["request_id"] for r in read_records(forced_file)})
    except BaseException as error:
        session["interrupted"] = f"{type(error).__name__}: {error}".splitlines()[0]
        raise
    finally:
        # Recorded even when interrupted: the requests that finished are on disk and the next
        # session will not run them again, so their energy and time are kept here, and
        # ``requests_counted`` < ``requests_run`` tells finalize that their engine counters are lost.
        try:  # read only: a torn last line is repaired by the next session, as always
            session["requests_run"] = len(read_records(folder.requests_file)) - len(records)
        except Exception:  # an unreadable file is reported by the next read; this record must still be written
            session["requests_run"] = None
        session["requests_counted"] = counted
        session["energy"] = [{k: d.get(k) for k in ENERGY_KEYS} for d in deltas]
        session["counters"] = {k: sum(d.get(k, 0.0) for d in deltas) for d in deltas for k in d
                               if k.startswith("vllm:")}
        session["wall_s"] = time.monotonic() - started
        append_record(folder.segments_file, session)
    return budget_mode or "one-pass"


def _forcing_pending(plan: RunPlan, folder: RunFolder, records: list[dict]) -> bool:
    """Whether some budget-forcing continuation of the requests on disk is not on disk yet."""
    tokenizer = load_tokenizer(plan.source)
    prompts = plan.prompts_by_problem()
    done = {r["request_id"] for r in read_records(folder.path / budget_forcing.FORCED_FILE)}
    return bool(budget_forcing.forced_specs(records, plan.budgets, prompts, plan.model, tokenizer,
                                            plan.force_answer_tokens, done))
