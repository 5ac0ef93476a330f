"""Plan and run the sweeps of 01_greedy, 02_tp and 03_spec; resume instead of starting over.

``run_sweep`` executes the plans of plan.py under the study lock: a complete run
is skipped, a partial one runs only its missing requests, a failed one leaves ``failure.json`` and
the sweep goes on; at the end, failures raise ``SweepError`` naming them.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import replace

import pandas as pd

from tts_utils import provenance
from tts_utils.cli import run, study_config, study_parser
from tts_utils.config import StudyConfig
from tts_utils.engine import vllm_compat
from tts_utils.errors import ConfigError, CorruptResultError, SweepError
from tts_utils.hardware import detect
from tts_utils.speculation.replay_sets import run_replays
from tts_utils.store import (
    atomic_write_json,
    read_json,
    read_records,
    study_lock,
)
from tts_utils.study.estimate import estimate_plans
from tts_utils.study.placement import cluster, run_placed
from tts_utils.study.plan import NOTEBOOK_METHODS, RunPlan, plan_runs
from tts_utils.study.preflight import check_inputs
from tts_utils.study.results import finalize, run_hardware
from tts_utils.study.session import engine_session, engines_kept


def execute(plan: RunPlan) -> str:
    """Run one plan to completion, resuming what is on disk. Returns what happened."""
    folder = plan.folder()
    if folder.is_complete():
        return "skipped (complete)"
    changed = folder.mismatches() if folder.status().get("state") == "complete" else []
    if changed:
        print(f"!! {plan.run_name}: {'; '.join(changed)}; deriving its results again")
    folder.path.mkdir(parents=True, exist_ok=True)
    if not folder.run_file.exists():
        atomic_write_json(folder.run_file, {"identity": plan.identity(), "run_name": plan.run_name,
                                            "created_by": provenance.collect()})
    status = folder.status()
    try:
        budget_mode = engine_session(plan, folder, status.get("budget_mode"))
    except CorruptResultError as error:
        raise CorruptResultError(f"{error}; finished requests cannot be trusted past it: move the run folder "
                                 f"{folder.path} away to measure the run again") from None
    finalize(plan, folder, budget_mode)
    folder.failure_file.unlink(missing_ok=True)
    if changed:
        return "re-derived (files did not match their checksums)"
    return "resumed and completed" if status.get("state") in {"running", "incomplete"} else "completed"


def check_resumable(plans: list[RunPlan]) -> None:
    """Refuse, before any engine starts, to resume a run on another kind of machine than the one
    that measured its first requests: its latencies would be pooled across GPUs without a word.
    A started run that measured nothing yet (its engine never came up) starts over here, and its
    ``run.json`` then names this machine."""
    here = detect()
    for plan in plans:
        folder = plan.folder()
        if not folder.run_file.exists() or folder.status().get("state") == "complete":
            continue
        recorded = run_hardware(folder)
        if recorded.timing_class() == here.timing_class():
            continue
        if any(path.exists() and path.stat().st_size for path in (folder.requests_file, folder.probe_file)):
            raise ConfigError(f"run {plan.run_name} measured its first requests on {recorded.timing_class()}, and "
                              f"this machine has {here.timing_class()}: resume it there, or give this machine its "
                              "own study (--set study=NAME)")
        meta = read_json(folder.run_file)
        atomic_write_json(folder.run_file, {**meta, "created_by": provenance.collect()})


def rederive(plans: list[RunPlan]) -> pd.DataFrame:
    """Derive the results of complete runs again from their records (requests, probe, sessions),
    with this kit's code and without an engine: for a run derived by an older kit. The run keeps
    its hardware (``results.run_hardware``); runs not complete are left to a sweep."""
    rows = []
    for plan in plans:
        folder = plan.folder()
        status = folder.status()
        if status.get("state") != "complete":
            outcome = "not complete: a sweep finishes it"
        else:
            finalize(plan, folder, status.get("budget_mode") or "one-pass")
            outcome = "derived again"
        rows.append({"run_name": plan.run_name, "outcome": outcome})
        print(f"{plan.run_name}: {outcome}")
    return pd.DataFrame(rows)


def _record_failure(plan: RunPlan, error: BaseException) -> None:
    folder = plan.folder()
    folder.path.mkdir(parents=True, exist_ok=True)
    try:
        done = len(read_records(folder.requests_file)) if folder.requests_file.exists() else 0
    except CorruptResultError:  # the failure may be this very file: record it, do not fail again
        done = None
    folder.set_status("incomplete", done=done, error=f"{type(error).__name__}: {error}".splitlines()[0])
    tail = folder.engine_log.read_text(errors="replace").splitlines()[-60:] if folder.engine_log.exists() else []
    atomic_write_json(folder.failure_file, {"error": str(error), "type": type(error).__name__,
                                            "traceback": traceback.format_exc(), "engine_log_tail": tail,
                                            "requests_on_disk": done})


def run_sweep(config: StudyConfig, notebook: str, only: str = "", derive_again: bool = False) -> pd.DataFrame:
    """Plan and run a notebook's sweep; returns one row per run (name, outcome, seconds).
    ``only``: run just the plans whose run name contains it (the CLI's ``--only``);
    ``derive_again``: start nothing, derive complete runs again (``rederive``, the CLI's ``--rederive``)."""
    if not (config.dry_run or derive_again):
        vllm_compat.require(config)  # a vLLM without what this study uses stops here, not an hour in
    check_inputs(config, deep=False)  # trace sets and dataset: the chain's later steps fail now, not there
    # Deriving again starts no engine either: plan as a dry run does, on any machine.
    plans, skipped = plan_runs(replace(config, dry_run=True) if derive_again else config, notebook)
    if only:
        plans = [plan for plan in plans if only in plan.run_name]
        if not plans:
            raise ConfigError(f"--only {only!r} matches none of this sweep's runs")
    for reason in skipped:
        print(f"-- skipped: {reason}")
    if config.dry_run:
        print("dry run: nothing is started.")
        return estimate_plans(plans, detect().accelerator)
    if derive_again:
        with study_lock(config.study):
            return rederive(plans)
    if config.placement != "ray":  # under Ray the runs measure on worker nodes, not on this one
        check_resumable(plans)
    outcomes, failures = [], []
    if config.placement == "ray":  # side by side on disjoint GPUs (placement.py); same files, same lock

        def report(row: dict) -> None:
            where = f" [{row['node']} GPU {row['gpu_ids']}, attempt {row['attempts']}]" if row["node"] else ""
            print(f"{row['run_name']}: {row['outcome']}{where}")

        # A latency run predicts from its model's batched pass, so the batched passes go first.
        waves = [wave for wave in ([p for p in plans if p.batched], [p for p in plans if not p.batched]) if wave]
        with study_lock(config.study), cluster(config.ray_address):  # one cluster for both waves
            outcomes = [row for wave in waves for row in
                        run_placed(wave, execute, ray_address=config.ray_address, on_failure=_record_failure,
                                   on_outcome=report)]
        failures = [f"{row['run_name']}: {row['error']}" for row in outcomes if row["error"] is not None]
        if failures:
            raise SweepError(f"{len(failures)} of {len(plans)} runs failed: " + "; ".join(failures))
        return pd.DataFrame(outcomes)
    with study_lock(config.study), engines_kept():
        for plan in plans:
            started = time.monotonic()
            try:
                outcome = execute(plan)
            except KeyboardInterrupt as interrupt:
                _record_failure(plan, interrupt)
                raise
            except Exception as error:
                _record_failure(plan, error)
                failures.append(f"{plan.run_name}: {str(error).splitlines()[0]}")
                outcome = "failed (see failure.json)"
            outcomes.append({"run_name": plan.run_name, "outcome": outcome,
                             "seconds": round(time.monotonic() - started, 1)})
            print(f"{plan.run_name}: {outcome}")
    if failures:
        raise SweepError(f"{len(failures)} of {len(plans)} runs failed: " + "; ".join(failures))
    return pd.DataFrame(outcomes)


def main(argv: list[str] | None = None) -> int:
    """``python -m tts_utils sweep 01_greedy [--profile P] [--set k=v]``: a sweep without Jupyter."""
    parser = study_parser("python -m tts_utils sweep", main.__doc__)
    parser.add_argument("notebook", choices=sorted(NOTEBOOK_METHODS))
    parser.add_argument("--only", default="", metavar="TEXT", help="run only the runs whose name contains TEXT")
    parser.add_argument("--rederive", action="store_true",
                        help="start no engine: derive the results of complete runs again from their records")
    args = parser.parse_args(argv)

    def command() -> int:
        config = study_config(args)
        if args.notebook == "03_spec" and config.spec_acceptance == "replay" and not args.rederive:
            # What 03_spec does before its runs: their synthetic acceptance comes from these replays.
            print(run_replays(config).to_string(index=False))
        try:
            print(run_sweep(config, args.notebook, args.only, args.rederive).to_string(index=False))
        except SweepError as error:  # some runs failed: finished ones are kept (not bad input)
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0

    return run(command)


if __name__ == "__main__":
    raise SystemExit(main())
