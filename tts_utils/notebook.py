"""Small helpers the notebooks share, so no cell is copied between notebooks.

``banner`` (all notebooks), ``inventory``/``reachability`` (00_setup), ``sweep_results``,
``check_sweep`` and ``what_results_show`` (01-03), ``show_and_write`` (04), ``files_written`` (all). Importing this module turns off the Hugging Face
libraries' text progress bars in headless runs (progress.py), so reports carry no stderr noise.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from IPython.display import display

from tts_utils import provenance
from tts_utils.banners import PLUMBING_WARNING, SYSTEM_ONLY_WARNING, random_weights_warning, shout
from tts_utils.config import StudyConfig
from tts_utils.data import load_problems, resolve_source
from tts_utils.engine.model_source import load_tokenizer, resolve
from tts_utils.hardware import Hardware
from tts_utils.models import get_model
from tts_utils.paths import NOTEBOOKS_DIR, outputs_dir, replays_dir
from tts_utils.progress import quiet_library_bars
from tts_utils.report.findings import greedy_findings, spec_findings, tp_findings
from tts_utils.speculation.replay_sets import load_replays
from tts_utils.store import atomic_write_text, load_study, read_json
from tts_utils.study.plan import RunPlan, plan_runs

quiet_library_bars()

# Set by the pipeline for the notebooks it runs: the folder of the rendered report, so that links to
# result files resolve there; without it (JupyterLab) links resolve from the notebooks folder.
REPORT_DIR_VARIABLE = "TTS_REPORT_DIR"
# What a reader of 01-03 needs from a summary; every column stays in the linked summary.csv files.
READER_COLUMNS = ["model", "method", "acceptance", "tensor_parallel_size", "budget_tokens", "accuracy_strict",
                  "accuracy_lenient", "mean_output_tokens", "mean_e2e_latency_s", "mean_ttft_s", "mean_tpot_ms",
                  "cost_gpu_s_per_token", "energy_j_per_token", "spec_acceptance_rate", "spec_mean_acceptance_length",
                  "budget_mode"]



def banner(config: StudyConfig) -> None:
    """Say loudly when the numbers cannot be read as science."""
    for flag, text in (("tiny" in config.model_keys, PLUMBING_WARNING), (config.system_only, SYSTEM_ONLY_WARNING),
                       (config.random_weight_models, random_weights_warning(config))):
        if flag:
            print(shout(text))


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
            source = resolve(model, config.load_format, config.local_model_dirs)
            load_tokenizer(source)
            rows.append((f"model {key}", source.engine_path, "ok"))
        except Exception as error:  # report every failure in the table rather than stopping at the first
            rows.append((f"model {key}", model.hf_id or model.key, f"FAILED: {str(error).splitlines()[0]}"))
    try:
        problems = load_problems(config.dataset, config.num_problems, config.seed)
        rows.append(("dataset", problems.source, f"ok, {len(problems.problems)} problems"))
    except Exception as error:  # same: report, do not stop
        rows.append(("dataset", resolve_source(config.dataset), f"FAILED: {str(error).splitlines()[0]}"))
    return pd.DataFrame(rows, columns=["what", "source", "status"])


def _planned_summary(config: StudyConfig, notebook: str, plans: list[RunPlan] | None = None) -> pd.DataFrame:
    """Every summary column, one row per run and budget, of the runs a notebook planned."""
    names = {plan.run_name for plan in (plans if plans is not None else plan_runs(config, notebook)[0])}
    results = load_study(config.study)
    # The batched accuracy pass (01_greedy) is kept out of the study's summary (its latency is
    # batched), but it is one of the runs this notebook planned.
    frames = [frame for frame in (results.batched, results.summary) if not frame.empty]
    if not frames:
        return pd.DataFrame()
    summary = pd.concat(frames, ignore_index=True)
    return summary[summary["run_name"].isin(names)].reset_index(drop=True)


def report_link(path: Path) -> str:
    """``path`` as a relative link from where the notebook is read (rendered report or JupyterLab)."""
    return os.path.relpath(path, os.environ.get(REPORT_DIR_VARIABLE) or NOTEBOOKS_DIR)


class LinkedTable(pd.DataFrame):
    """A results table that shows readably (wrapping headers, 4 significant digits, no index) with
    links to the CSV files that hold every column, and optionally one column whose cells link to
    files (``file_links``: column name, one path per row). Anything derived from it is a plain
    DataFrame."""

    _metadata = ["note", "full_tables", "file_links"]

    @property
    def _constructor(self):
        return pd.DataFrame

    def _repr_html_(self) -> str:
        frame = pd.DataFrame(self).copy()
        column, paths = getattr(self, "file_links", None) or (None, [])
        for name in frame.columns:  # cells are escaped here, so that link cells can carry HTML
            if not pd.api.types.is_numeric_dtype(frame[name]):
                frame[name] = frame[name].map(lambda v: html.escape(v) if isinstance(v, str) else v)
        if column is not None:
            frame[column] = [f'<a href="{html.escape(report_link(path))}">{text}</a>'
                             for text, path in zip(frame[column], paths)]
        table = frame.to_html(index=False, float_format=lambda value: f"{value:.4g}", na_rep="-", border=0,
                              escape=False)
        for name in self.columns:  # let long snake_case headers wrap at their underscores
            escaped = html.escape(str(name))
            table = table.replace(f"<th>{escaped}</th>", f"<th>{escaped.replace('_', '_<wbr>')}</th>")
        links = ", ".join(f'<a href="{html.escape(report_link(path))}">{html.escape(path.parent.name)}/'
                          f"{html.escape(path.name)}</a>" for path in getattr(self, "full_tables", None) or [])
        note = html.escape(getattr(self, "note", None) or "")
        files = f" Every column: {links}." if links else ""
        return f'<div style="overflow-x:auto">{table}<p style="font-size:smaller">{note}{files}</p></div>'


def linked_table(frame: pd.DataFrame, columns: list[str], full_tables: list[Path], note: str = "") -> pd.DataFrame:
    """``frame`` in those of ``columns`` it has (and that are not all empty), shown with links to
    the CSV files that hold every column (e.g. 04_analysis's table.csv)."""
    table = LinkedTable(frame[[c for c in columns if c in frame and not frame[c].isna().all()]])
    table.note, table.full_tables = note, [p for p in full_tables if p.exists()]
    return table


def sweep_results(config: StudyConfig, notebook: str) -> pd.DataFrame:
    """Summary rows (one per run and budget) of the runs a notebook planned, in the columns a reader
    needs, with links to each run's ``summary.csv`` (all columns)."""
    summary = _planned_summary(config, notebook)
    if summary.empty:
        return summary
    one_pass = (summary["budget_mode"] == "one-pass").all()
    engine_acceptance = "acceptance" not in summary or set(summary["acceptance"].dropna()) <= {"engine"}
    columns = [c for c in READER_COLUMNS
               if not (one_pass and c == "budget_mode") and not (engine_acceptance and c == "acceptance")]
    mode = ("every budget read from one pass per request" if one_pass
            else "budget_mode says which runs ran each budget separately")
    requests = ", ".join(str(n) for n in sorted(summary["num_requests"].unique()))
    return linked_table(summary, columns, [p / "summary.csv" for p in run_folders(config, notebook)],
                        f"{requests} requests per budget; {mode}; times in s unless the name says ms.")


def check_sweep(config: StudyConfig, notebook: str) -> None:
    """Sanity checks on a finished sweep; raises AssertionError with what is wrong."""
    if config.dry_run:
        print("dry run: nothing ran, so there is nothing to check")
        return
    frame = _planned_summary(config, notebook)
    plans = plan_runs(config, notebook)[0]
    expected_rows = len(plans) * len(set(config.budgets))
    assert len(frame) == expected_rows, f"expected {expected_rows} summary rows, found {len(frame)}"
    assert (frame["mean_output_tokens"] <= frame["budget_tokens"]).all(), "an answer exceeds its budget"
    requests = len(plans[0].problems.problems) * config.samples_per_problem
    assert (frame["num_requests"] == requests).all(), "a budget lacks requests"
    for plan in plans:  # a latency subset: its problems measured, the others predicted (or all measured)
        if plan.latency_subset:
            fractions = frame.loc[frame["run_name"] == plan.run_name, "measured_fraction"]
            subset = len(plan.latency_subset) / len(plan.problems.problems)
            assert all(math.isclose(f, subset) or f == 1.0 for f in fractions), (
                f"{plan.run_name}: latency measured on shares {list(fractions)} of the problems, planned "
                f"{len(plan.latency_subset)} of {len(plan.problems.problems)}")
    for _, group in frame.groupby(["model", "method", "tensor_parallel_size"]):
        latency = group.sort_values("budget_tokens")["mean_e2e_latency_s"].to_numpy()
        assert (latency[1:] >= latency[:-1] * 0.999).all(), "latency falls as the budget grows"
    print(f"ok: {len(plans)} run(s) x {len(set(config.budgets))} budgets, answers within budget, "
          "latency non-decreasing in budget")


class Findings(list):
    """Sentences that show as a bulleted list in a notebook and one per line as text."""

    def __repr__(self) -> str:
        return "\n".join(f"- {line}" for line in self)

    def _repr_html_(self) -> str:
        return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in self) + "</ul>"


def _with_replay_flags(study: str, replays: pd.DataFrame) -> pd.DataFrame:
    """``replays`` with each replay's ``random_weights`` and ``proxy_of`` (from its replay.json)."""
    if replays.empty or "replay" not in replays:
        return replays
    metas = {name: read_json(replays_dir(study) / name / "replay.json") for name in replays["replay"].unique()}
    return replays.assign(random_weights=replays["replay"].map(lambda n: bool(metas[n].get("random_weights"))),
                          proxy_of=replays["replay"].map(lambda n: metas[n].get("proxy_of")))


def what_results_show(config: StudyConfig, notebook: str, replays: pd.DataFrame | None = None) -> Findings:
    """What a sweep notebook's finished runs show, in a few sentences computed from their summaries
    (report/findings.py), saying which planned runs have no results yet. 03_spec passes the trace
    sets it replayed (``run_replays``); by default the study's current replays of its models."""
    plans, skipped = plan_runs(config, notebook)
    summary = _planned_summary(config, notebook, plans)
    finished = set(summary["run_name"]) if not summary.empty else set()
    missing = [plan.run_name for plan in plans if plan.run_name not in finished]
    if notebook == "01_greedy":
        lines = greedy_findings(summary)
    elif notebook == "02_tp":
        lines = tp_findings(summary, skipped)
    else:
        if replays is None:
            replays = load_replays(config.study)
            replays = replays[replays["model"].isin(config.model_keys)] if not replays.empty else replays
        lines = spec_findings(summary, _planned_summary(config, "01_greedy"), _with_replay_flags(config.study, replays))
    why = "dry run: nothing ran here" if config.dry_run else "the sweep above stopped or has not run"
    if missing:
        lines.insert(0, f"{len(missing)} of the {len(plans)} planned run(s) have no results in study "
                        f"{config.study!r} ({why}): {', '.join(missing)}.")
    return Findings(lines)


def show_and_write(frame: pd.DataFrame, path: Path | None, empty: str = "", *, columns: list[str] | None = None,
                   note: str = "", write: Callable[[Path, str], None] = atomic_write_text) -> None:
    """Write ``frame`` to ``path`` as CSV with ``write`` (every column; None writes nothing) and show
    it (in ``columns``, if given) linked to that file; when it has no rows, print ``empty`` and write
    nothing. 04_analysis's tables; ``write=store.write_sealed`` for the files others verify."""
    if frame.empty:
        if empty:
            print(empty)
        return
    if path is not None:
        write(path, frame.to_csv(index=False))
    display(linked_table(frame, columns or list(frame.columns), [path] if path is not None else [], note))


def run_folders(config: StudyConfig, notebook: str) -> list[Path]:
    """The run folders a sweep notebook writes."""
    return [plan.folder().path for plan in plan_runs(config, notebook)[0]]


def files_written(paths: list[Path]) -> pd.DataFrame:
    """The files a notebook wrote (folders expanded one level), with sizes; shown with each path
    relative to the outputs folder, linked to the file."""
    files = []
    for path in paths:
        files += sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    root = outputs_dir()
    names = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in files]
    table = LinkedTable(pd.DataFrame({"file": names, "bytes": [p.stat().st_size if p.exists() else None
                                                                for p in files]}))
    table.note, table.full_tables, table.file_links = f"Paths under {root}.", [], ("file", files)
    return table
