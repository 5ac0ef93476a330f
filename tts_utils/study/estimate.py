"""What a study will cost before it runs, and afterwards how close that was.

``estimate_study`` (00_setup) lists every run of 01-03 (the batched accuracy pass, each latency
configuration), the seconds each is expected to take, and places them on the machine's GPUs
(``placement: ray``: list scheduling, longest first, a TP-k run holding k GPUs) or one after
another: wall time, GPU-hours and the plan as a table. On a machine without GPUs, a profile of real
models is estimated for the reference node, 4x H200, and the estimate says so.
``write_estimate`` keeps it in the study folder (report/estimate_check.py compares it with what the
runs took, in 04_analysis). ``estimate_plans`` prices planned runs (dry runs). The constants and
the pricing of one run are run_costs.py's.

A run's seconds = engine start + requests x expected tokens x ms/token (concurrency 1), or for a
batched pass its tokens / batched throughput (never less than its longest request alone), plus
grading. Every constant in run_costs.py names its source (the batched throughputs: h200-grid); the counts
of the sweep's checks and probes are plan.py's, so the estimate prices what the sweep does.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tts_utils.cli import run, study_config, study_parser
from tts_utils.paths import study_dir

if TYPE_CHECKING:
    from tts_utils.config import StudyConfig
    from tts_utils.hardware import Hardware
    from tts_utils.study.plan import RunPlan
from tts_utils.store import atomic_write_json, atomic_write_text
from tts_utils.study.run_costs import (
    ESTIMATE_CSV,
    ESTIMATE_JSON,
    EXPECTED_OUTPUT_TOKENS,
    NOTEBOOK_ORDER,
    EstimatedRun,
    Node,
    decode_seconds,
    engine_start_s,
    expected_tokens,
    length_stand_in,
    ngram_latency_factor,
    node_for,
    place,
    study_runs,
)


@dataclass
class StudyEstimate:
    """The whole study's expected cost on one node, and its plan."""

    study: str
    node: Node
    placement: str
    tokens: str  # expected (trace lengths) or upper bound (every request to the largest budget)
    runs: list[EstimatedRun]
    skipped: list[str]
    plan: pd.DataFrame  # one row per run in start order: minutes, GPUs, and all_problems_min = the
    # run if its subset's prediction misses (latency measured on all problems)
    wall_s: float  # of the chosen placement
    sequential_wall_s: float
    parallel_wall_s: float
    device_hours: float  # device-seconds the runs hold / 3600 (GPUs; the CPU engine counts 1)
    node_device_hours: float  # wall x the node's devices / 3600: what a rented node bills
    fallback_extra_s: float  # added to the sequential wall if every latency subset had to run on all problems

    def describe(self) -> str:
        """The lines 00_setup prints above the plan table."""
        lines = []
        if self.node.reference:
            lines.append("!" * 100 + f"\n!! NOT THIS MACHINE: estimated for the reference node, {self.node.label}"
                         "\n" + "!" * 100)
        unit = "GPU" if self.node.accelerator == "gpu" else "device"
        accuracy = [r for r in self.runs if r.role == "accuracy"]
        subset = [r for r in self.runs if r.role == "latency" and r.fallback_s > r.engine_s]
        lines += [
            f"{self.study}: {len(self.runs)} engine runs on {self.node.label}, placement {self.placement}; "
            f"tokens per request: {self.tokens}",
            f"wall time {self.wall_s / 3600:.2f} h (one after another {self.sequential_wall_s / 3600:.2f} h"
            + (f", side by side on {self.node.gpus} GPUs {self.parallel_wall_s / 3600:.2f} h" if unit == "GPU" else "")
            + f"); {self.device_hours:.2f} {unit}-hours held by runs, {self.node_device_hours:.2f} for the whole node",
        ]
        if accuracy:
            lines.append(f"accuracy: one batched pass per model at TP 1, concurrency {accuracy[0].concurrency}, "
                         f"{accuracy[0].problems} problems (batched throughput: measured on one H200, h200-grid)")
        if subset:
            lines.append(f"latency: concurrency 1 on a subset of {subset[0].problems} problems per configuration, "
                         f"predicted for all; a miss beyond the tolerance re-measures on all problems "
                         f"(if every one missed: +{self.fallback_extra_s / 3600:.2f} h of runs)")
        if unit == "GPU" and "H200" not in self.node.label:
            lines.append("!! per-token times and engine starts are H200 measurements; this GPU will differ")
        lines += [f"skipped: {reason}" for reason in self.skipped]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"study": self.study, "node": asdict(self.node), "placement": self.placement, "tokens": self.tokens,
                "wall_s": self.wall_s, "sequential_wall_s": self.sequential_wall_s,
                "parallel_wall_s": self.parallel_wall_s, "device_hours": self.device_hours,
                "node_device_hours": self.node_device_hours, "fallback_extra_s": self.fallback_extra_s,
                "skipped": self.skipped, "batched_throughput_measured": True,
                "estimated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "runs": [{"key": run.key, **asdict(run)} for run in self.runs],
                "plan": self.plan.to_dict(orient="records")}


def estimate_study(config: StudyConfig, hardware: Hardware | None = None, reference: bool = False,
                   upper_bound: bool = False) -> StudyEstimate:
    """The study's runs, their expected seconds, and where they go on this machine (or the
    reference node: when ``reference``, or real models on a machine without GPUs)."""
    node = node_for(config, hardware, reference)
    runs, skipped = study_runs(config, node, upper_bound)
    placed = place(runs, node.gpus)
    sequential = sum(r.seconds for r in runs)
    parallel = max((p["end_s"] for p in placed), default=0.0)
    placement = config.placement if node.accelerator == "gpu" else "sequential"
    if placement != "ray":
        clock, placed = 0.0, []
        for notebook in NOTEBOOK_ORDER:
            for run in (r for r in runs if r.notebook == notebook):
                size = min(run.tensor_parallel_size, node.gpus)
                placed.append({"run": run, "gpus": list(range(size)), "start_s": clock, "end_s": clock + run.seconds})
                clock += run.seconds
    wall = parallel if placement == "ray" else sequential
    plan = pd.DataFrame([{
        "notebook": p["run"].notebook, "run": p["run"].key, "problems": p["run"].problems,
        "concurrency": p["run"].concurrency, "tokens_per_request": p["run"].tokens_per_request,
        "engine_min": round(p["run"].engine_s / 60, 1), "grading_min": round(p["run"].grading_s / 60, 1),
        "all_problems_min": round(p["run"].fallback_s / 60, 1), "gpus": ",".join(map(str, p["gpus"])),
        "start_min": round(p["start_s"] / 60, 1), "end_min": round(p["end_s"] / 60, 1),
    } for p in placed]).sort_values(["start_min", "gpus"], ignore_index=True) if placed else pd.DataFrame()
    return StudyEstimate(
        study=config.study, node=node, placement=placement,
        tokens=_tokens_source(config, upper_bound), runs=runs, skipped=skipped, plan=plan, wall_s=wall,
        sequential_wall_s=sequential, parallel_wall_s=parallel,
        device_hours=sum(r.seconds * min(r.tensor_parallel_size, node.gpus) for r in runs) / 3600.0,
        node_device_hours=wall * node.gpus / 3600.0,
        fallback_extra_s=sum(r.fallback_s - r.engine_s for r in runs),
    )


def _tokens_source(config: StudyConfig, upper_bound: bool) -> str:
    if upper_bound or config.system_only:
        return "upper bound, every request runs to the largest budget"
    sources = []
    for key in config.model_keys:
        table = length_stand_in(key)
        sources.append(f"{key}: the largest budget" if table not in EXPECTED_OUTPUT_TOKENS
                       else f"{key}: {table} traces' mean" + ("" if table == key else " (stand-in)"))
    return "; ".join(sources)


def write_estimate(estimate: StudyEstimate) -> list[Path]:
    """``estimate.json`` (totals and plan, read by ``estimate_vs_actual``) and ``estimate.csv``
    (the plan table) in the study folder."""

    folder = study_dir(estimate.study)
    atomic_write_json(folder / ESTIMATE_JSON, estimate.to_dict())
    atomic_write_text(folder / ESTIMATE_CSV, estimate.plan.to_csv(index=False))
    return [folder / ESTIMATE_JSON, folder / ESTIMATE_CSV]


def estimate_plans(plans: list[RunPlan], accelerator: str = "gpu") -> pd.DataFrame:
    """One row per planned run (dry runs): requests, the token upper bound, and expected hours and
    device-hours at the expected output lengths (``EXPECTED_OUTPUT_TOKENS``)."""
    rows = []
    for plan in plans:
        requests = len(plan.request_specs("one-pass"))
        budget = max(plan.budgets)
        tokens = expected_tokens(plan.model.key, budget, upper_bound=plan.system_only)
        factor = ngram_latency_factor(plan.model.key, plan.method)
        seconds = engine_start_s(plan.tensor_parallel_size, accelerator) + factor * decode_seconds(
            plan.model.key, plan.tensor_parallel_size, requests, tokens, plan.concurrency, budget)
        rows.append({
            "run_name": plan.run_name, "model": plan.model.key, "method": plan.method,
            "tensor_parallel_size": plan.tensor_parallel_size, "requests": requests,
            "max_output_tokens": requests * budget, "expected_output_tokens": round(requests * tokens),
            "expected_hours": seconds / 3600.0,
            "expected_device_hours": seconds * plan.tensor_parallel_size / 3600.0,
            "already_complete": plan.folder().is_complete(),
        })
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m tts_utils estimate [--profile P] [--set k=v] [--reference] [--upper-bound] [--write]``:
    the study estimate and its plan, without Jupyter (written to the study folder with --write)."""
    parser = study_parser("python -m tts_utils estimate", main.__doc__)
    parser.add_argument("--reference", action="store_true", help="estimate for the reference node, 4x H200")
    parser.add_argument("--upper-bound", action="store_true", help="every request runs to the largest budget")
    parser.add_argument("--write", action="store_true",
                        help="also write estimate.json/.csv to the study folder, as 00_setup does")
    args = parser.parse_args(argv)

    def command() -> None:
        estimate = estimate_study(study_config(args), reference=args.reference, upper_bound=args.upper_bound)
        print(estimate.describe())
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(estimate.plan.to_string(index=False))
        if args.write:
            for path in write_estimate(estimate):
                print(f"wrote {path}")

    return run(command)


if __name__ == "__main__":
    raise SystemExit(main())
