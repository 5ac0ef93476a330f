"""Small helpers the notebooks share, so no cell is copied between notebooks.

``banner`` (all notebooks), ``inventory``/``reachability`` (00_setup), ``sweep_results`` and
``check_sweep`` (01-03), ``files_written`` (all).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tts_utils import provenance
from tts_utils.config import StudyConfig
from tts_utils.data import load_problems, resolve_source
from tts_utils.hardware import Hardware
from tts_utils.model_source import load_tokenizer, resolve
from tts_utils.models import get_model
from tts_utils.store import load_study
from tts_utils.sweep import plan_runs
from tts_utils.tiny_model import PLUMBING_WARNING

SYSTEM_ONLY_WARNING = (
    "SYSTEM-ONLY MODE: real architectures with random weights (load_format: dummy). Latency and cost "
    "are those of the architecture on this hardware; accuracy is not computed."
)


def banner(config: StudyConfig) -> None:
    """Say loudly when the numbers cannot be read as science."""
    for flag, text in (("tiny" in config.model_keys, PLUMBING_WARNING), (config.system_only, SYSTEM_ONLY_WARNING)):
        if flag:
            print("!" * 100 + f"\n!! {text}\n" + "!" * 100)


def inventory(hardware: Hardware) -> pd.DataFrame:
    """Hardware and software in one two-column table."""
    versions = provenance.package_versions()
    git = provenance.git_state()
    rows = [("machine", hardware.describe()), ("CPU", hardware.cpu_model),
            ("usable CPU cores", hardware.cpu_cores), ("memory (GiB)", hardware.memory_gib),
            ("GPUs", hardware.gpu_count)]
    rows += [(f"GPU {g.index}", f"{g.name}, {g.memory_gib} GiB") for g in hardware.gpus]
    rows += [("NVIDIA driver", hardware.driver_version), ("CUDA (driver)", hardware.cuda_driver_version)]
    rows += [(name, version) for name, version in versions.items()]
    rows += [("kit commit", f"{git['commit']}{' (uncommitted changes)' if git['dirty'] else ''}")]
    return pd.DataFrame(rows, columns=["item", "value"])


def profile_advice(config: StudyConfig, hardware: Hardware) -> str:
    """Which profile fits this machine, and why."""
    if hardware.accelerator == "cpu":
        return ("No NVIDIA GPU: the embedded default applies (tiny random-weight model on the vLLM CPU build, "
                "PROFILE=smoke). It exercises every step of the study; its numbers are plumbing only.")
    usable, skipped = config.usable_tp_sizes(hardware)
    text = (f"{hardware.gpu_count} GPU(s): the paper profile applies (PROFILE=paper); TP sizes {usable} run here")
    if skipped:
        text += "; " + "; ".join(skipped)
    return text + ". Without weights, PROFILE=h200-system measures latency and cost with random weights."


def reachability(config: StudyConfig) -> pd.DataFrame:
    """Can each model's tokenizer and the dataset be loaded? One row each, with the error if not."""
    rows = []
    for key in config.model_keys:
        model = get_model(key)
        try:
            source = resolve(model, config.load_format)
            load_tokenizer(source)
            rows.append((f"model {key}", source.engine_path, "ok"))
        except Exception as error:  # report every failure in the table rather than stopping at the first
            rows.append((f"model {key}", model.hf_id or "tiny", f"FAILED: {str(error).splitlines()[0]}"))
    try:
        problems = load_problems(config.dataset, config.num_problems, config.seed)
        rows.append(("dataset", problems.source, f"ok, {len(problems.problems)} problems"))
    except Exception as error:  # same: report, do not stop
        rows.append(("dataset", resolve_source(config.dataset), f"FAILED: {str(error).splitlines()[0]}"))
    return pd.DataFrame(rows, columns=["what", "source", "status"])


def sweep_results(config: StudyConfig, notebook: str) -> pd.DataFrame:
    """Summary rows (one per run and budget) of the runs a notebook planned."""
    names = {plan.run_name for plan in plan_runs(config, notebook)[0]}
    summary = load_study(config.study).summary
    if summary.empty:
        return summary
    columns = ["model", "method", "tensor_parallel_size", "budget_tokens", "num_requests", "accuracy_strict",
               "accuracy_lenient", "mean_output_tokens", "mean_e2e_latency_s", "mean_ttft_s", "mean_tpot_ms",
               "cost_gpu_s_per_token", "spec_acceptance_rate", "spec_mean_acceptance_length", "budget_mode"]
    return summary[summary["run_name"].isin(names)][columns].reset_index(drop=True)


def check_sweep(config: StudyConfig, notebook: str) -> None:
    """Sanity checks on a finished sweep; raises AssertionError with what is wrong."""
    frame = sweep_results(config, notebook)
    plans = plan_runs(config, notebook)[0]
    expected_rows = len(plans) * len(set(config.budgets))
    assert len(frame) == expected_rows, f"expected {expected_rows} summary rows, found {len(frame)}"
    assert (frame["mean_output_tokens"] <= frame["budget_tokens"]).all(), "an answer exceeds its budget"
    requests = len(plans[0].problems.problems) * config.samples_per_problem
    assert (frame["num_requests"] == requests).all(), "a budget lacks requests"
    for _, group in frame.groupby(["model", "method", "tensor_parallel_size"]):
        latency = group.sort_values("budget_tokens")["mean_e2e_latency_s"].to_numpy()
        assert (latency[1:] >= latency[:-1] * 0.999).all(), "latency falls as the budget grows"
    print(f"ok: {len(plans)} run(s) x {len(set(config.budgets))} budgets, answers within budget, "
          "latency non-decreasing in budget")


def run_folders(config: StudyConfig, notebook: str) -> list[Path]:
    """The run folders a sweep notebook writes."""
    return [plan.folder().path for plan in plan_runs(config, notebook)[0]]


def files_written(paths: list[Path]) -> pd.DataFrame:
    """The files a notebook wrote (folders expanded one level), with sizes."""
    files = []
    for path in paths:
        files += sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    rows = [(str(p), p.stat().st_size if p.exists() else None) for p in files]
    return pd.DataFrame(rows, columns=["file", "bytes"])
