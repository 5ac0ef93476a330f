"""Modelled rows: real traces' accuracy joined to measured step costs, one row per problem.

A *modelled* row takes one replayed real trace (written by 03_spec under ``replays/<study>/``),
cuts it at a budget, and prices its steps with the step costs one measured run fitted
(``stepcost``): greedy decoding at each TP size a baseline run measured, n-gram at each TP size an
n-gram run measured (the trace's replayed drafts, steps without a draft included). Its grades are
the trace's own (none for a proxy trace set), its latency a prediction. Step costs come from this
study's runs or from runs IMPORTED from another study (``tp_import``), refused from other hardware
unless ``tp_import_any_hardware``.

Step costs are never extrapolated: a configuration x budget whose traces reach a context beyond the
longest one its run measured for a step kind (with ``CONTEXT_SLACK``) is refused and listed with
the reason. Every row says ``evidence = modelled``, its trace set and the runs that priced it.
Used by 04_analysis (through ``study_modelled``), verdicts.py and pick.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from tts_utils.banners import PLUMBING_MODELS
from tts_utils.errors import ConfigError, CorruptResultError
from tts_utils.paths import study_dir
from tts_utils.report.analysis import configuration_table
from tts_utils.report.left_out import EVERY_CLAIM, IMPORTED, PRICING, REPLAY, LeftOut, left_out_run, run_identity
from tts_utils.speculation.replay import TRACE_KEYS, NgramSettings
from tts_utils.speculation.replay_sets import current_replay_folders, replay_problem
from tts_utils.speculation.stepcost import TOLERANCE, fit_step_costs, non_negative_line, predict_request, validate
from tts_utils.store import REPAIR_ADVICE, RunFolder, read_json, unfinished
from tts_utils.study.metrics import summarise
from tts_utils.study.tp_import import check_import, import_folder

# A trace may reach this share past the longest context its pricing run measured (trace prompts
# are longer than the kit's built-in ones by a few hundred tokens); beyond it, no row.
CONTEXT_SLACK = 0.05
EVIDENCE_MEASURED, EVIDENCE_MODELLED = "measured", "modelled"
SUMMARY_KEYS = ["study", "run_name", "model", "method", "acceptance", "tensor_parallel_size", "system_only",
                "hardware", "budget_tokens"]


@dataclass
class PricedRun:
    """The step costs of one measured run, where they came from, and how far they reach."""

    run_name: str
    study: str
    model: str
    method: str
    tensor_parallel_size: int
    hardware: str
    commit: str
    imported: bool
    source: str                      # "steps.csv" (every step timed) or "results.csv" (budget segments)
    costs: pd.DataFrame              # step, intercept_ms, slope_ms_per_1k_context, max_context_tokens
    ttft_s: float
    mean_power_w: float = math.nan
    validation: dict = field(default_factory=dict)
    ngram_settings: dict | None = None  # an n-gram run's k and look-up range, as a replay records them

    @property
    def speculative(self) -> bool:
        return {"draft", "no-draft"} <= set(self.costs["step"])

    @property
    def kinds(self) -> tuple[str, ...]:
        return ("draft", "no-draft") if self.speculative else ("plain",)

    def reach(self) -> float:
        """The longest context every step kind this configuration needs was measured at."""
        rows = self.costs[self.costs["step"].isin(self.kinds)]
        return float(rows["max_context_tokens"].min()) if len(rows) == len(self.kinds) else 0.0

    def label(self) -> str:
        return f"{self.study}/{self.run_name}" + (" (imported)" if self.imported else "")


def _read_run(folder: Path) -> tuple[dict, pd.DataFrame] | str:
    """A complete run's run.json and results rows, or why it is left out: unfinished, or a file that
    fails the checksum its run recorded (steps.csv included: one byte can move a step cost twofold)."""

    run = RunFolder(folder)
    try:
        if run.status().get("state", "new") != "complete":
            return unfinished(run.status())
        problems = run.mismatches()
        if problems:
            return f"{problems[0]}; {REPAIR_ADVICE}"
        return read_json(run.run_file), pd.read_csv(run.results_file)
    except (CorruptResultError, OSError, pd.errors.ParserError) as error:
        return str(error)


def costs_from_results(rows: pd.DataFrame) -> pd.DataFrame:
    """Plain-step costs of a greedy run that kept no steps.csv, from its one-pass budget rows.

    Between two budgets L0 < L1 of one request, (t1 - t0) / (tokens1 - tokens0) is the mean step
    at the middle context; a + b x context fitted to those points is exact for a linear cost.
    """
    points = []
    for _, request in rows.sort_values("output_tokens").groupby("request_id"):
        tokens = [1] + request["output_tokens"].tolist()
        times = [float(request["ttft_s"].iloc[0])] + request["e2e_latency_s"].tolist()
        prompt = int(request["prompt_tokens"].iloc[0])
        for (n0, t0), (n1, t1) in zip(zip(tokens, times), zip(tokens[1:], times[1:])):
            if n1 > n0:
                points.append((prompt + (n0 + n1) / 2, (t1 - t0) / (n1 - n0)))
    if not points:
        return pd.DataFrame(columns=["step", "intercept_ms", "slope_ms_per_1k_context", "max_context_tokens"])
    x, y = np.array(points).T
    slope, intercept = non_negative_line(x, y)
    reach = float((rows["prompt_tokens"] + rows["output_tokens"]).max())
    return pd.DataFrame([{"step": "plain", "steps": len(points), "intercept_ms": intercept * 1e3,
                          "slope_ms_per_1k_context": slope * 1e6, "mean_ms": y.mean() * 1e3,
                          "max_context_tokens": reach}])


def _validate_from_results(costs: pd.DataFrame, rows: pd.DataFrame) -> dict:
    """Greedy prediction vs measurement at the run's longest budget (every request)."""
    longest = rows[rows["budget_tokens"] == rows["budget_tokens"].max()]
    predicted = [predict_request(costs, int(r.prompt_tokens), float(r.ttft_s), np.zeros(int(r.output_tokens), int),
                                 np.ones(int(r.output_tokens), int), int(r.output_tokens), False)
                 for r in longest.itertuples()]
    error = float(np.mean(predicted) / longest["e2e_latency_s"].mean() - 1.0)
    return {"validated_budget": int(longest["budget_tokens"].iloc[0]), "validation_error": error,
            "within_tolerance": abs(error) <= TOLERANCE, "validation": "fit and check on the same requests"}


def priced_runs(folder: Path, study: str, imported: bool = False, left_out: list[LeftOut] | None = None
                ) -> list[PricedRun]:
    """Step costs of every complete baseline or n-gram run in one study folder.

    Runs with steps.csv are fitted per step kind and validated on held-out requests at their longest
    budget (``stepcost.validate``); greedy runs without it are priced from their budget rows. A
    greedy or n-gram run left out (unfinished, or failing its checksums) is added to ``left_out``."""
    out = []
    for run_dir in sorted(p for p in folder.glob("*") if p.is_dir()):
        read = _read_run(run_dir)
        if isinstance(read, str):
            method = str(run_identity(run_dir).get("method", "baseline"))  # unknown: it may have priced
            if left_out is not None and (method == "baseline" or method.startswith("ngram-spec")):
                left_out.append(left_out_run(run_dir, read, IMPORTED if imported else PRICING))
            continue
        meta, rows = read
        identity = meta["identity"]
        method = identity["method"]
        if method != "baseline" and not method.startswith("ngram-spec"):
            continue
        rows = rows[rows["run_name"] == run_dir.name] if "run_name" in rows else rows
        steps_file = run_dir / "steps.csv"
        if steps_file.exists():
            steps = pd.read_csv(steps_file)
            costs = fit_step_costs(steps)
            reach = steps[steps["step"] != "prefill"].groupby("step")["context_tokens"].max()
            costs["max_context_tokens"] = costs["step"].map(reach).astype(float)
            checked = validate(steps, rows)
            validation = {}
            if not checked.empty:
                last = checked.sort_values("budget_tokens").iloc[-1]
                validation = {"validated_budget": int(last["budget_tokens"]), "validation_error": float(last["error"]),
                              "within_tolerance": bool(last["within_tolerance"]),
                              "validation": f"held-out requests ({int(last['requests'])})"}
            source = "steps.csv"
        elif method == "baseline":
            costs = costs_from_results(rows)
            validation = _validate_from_results(costs, rows) if not costs.empty else {}
            source = "results.csv"
        else:
            continue
        if costs.empty:
            continue
        energy = rows.dropna(subset=["energy_j"]) if "energy_j" in rows else rows.head(0)
        power = float(energy["energy_j"].sum() / energy["e2e_latency_s"].sum()) if len(energy) else math.nan
        git = meta.get("created_by", {}).get("git", {}) or {}
        commit = (git.get("commit") or "unknown")[:12] + (" (uncommitted changes)" if git.get("dirty") else "")
        speculative = identity["engine"].get("speculative") or {}
        keys = [f.name for f in fields(NgramSettings)]
        settings = ({key: speculative[key] for key in keys}
                    if speculative.get("method", "ngram") == "ngram" and all(key in speculative for key in keys) else None)
        out.append(PricedRun(run_dir.name, study, identity["model"], method, int(identity["tensor_parallel_size"]),
                             str(rows["hardware"].iloc[0]), commit, imported, source, costs,
                             float(rows["ttft_s"].mean()), power, validation, settings))
    return out


def import_tp_runs(sources: tuple[str, ...] | list[str], own_hardware: set[str], models: set[str],
                   any_hardware: bool = False, study: str = "", left_out: list[LeftOut] | None = None
                   ) -> list[PricedRun]:
    """Greedy step costs at every TP size from other studies' runs, with their provenance.

    An import is the baseline runs of the named study (or folder) for the models this study has
    traces of. Refused (ConfigError, study/tp_import.py, which ``pipeline check`` runs before 00):
    ``study`` itself, no such runs, or runs from another GPU unless ``any_hardware``. Greedy runs of
    those models that are unfinished or fail their checksums are added to ``left_out``."""
    out = []
    for source in sources:
        folder, name = import_folder(source, study)
        lost: list[LeftOut] = []
        runs = [r for r in priced_runs(folder, name, imported=True, left_out=lost)
                if r.method == "baseline" and r.model in models]
        lost = [entry for entry in lost if entry.model in models or not entry.model]
        if not runs and lost:
            raise ConfigError(f"tp_import: {source!r} has no greedy run of {', '.join(sorted(models))} that can be "
                              f"read: {len(lost)} left out (first: {lost[0].line()})")
        check_import(source, [r.hardware for r in runs], own_hardware, models, any_hardware)
        out += runs
        if left_out is not None:
            left_out += lost
    return out


def load_replay_sets(study: str, left_out: list[LeftOut] | None = None) -> list[dict]:
    """Each replay of a study: model, trace set, per-trace steps, grades by budget, proxy origin.
    A replay whose files fail their checksums is said so and added to ``left_out``."""
    out = []
    for folder in current_replay_folders(study, quiet=True):
        problem = replay_problem(folder)
        if problem:
            print(f"!! excluded replay {folder.name}: {problem}")
            if left_out is not None:
                left_out.append(damaged_replay(folder, problem))
            continue
        meta = json.loads((folder / "replay.json").read_text())
        rows = pd.read_csv(folder / "rows.csv")
        out.append({"model": meta["identity"]["model"], "trace_set": meta["trace_set_name"], "replay": folder.name,
                    "proxy_of": meta.get("proxy_of"), "random_weights": meta.get("random_weights", False), "rows": rows, "settings": meta["identity"].get("settings"),
                    "steps": json.loads((folder / "steps.json").read_text())})
    return out


def damaged_replay(folder: Path, problem: str) -> LeftOut:
    """A replay that fails its checksums, as left out: its model from replay.json where that still
    reads, and every claim (real traces decide accuracy; priced, they decide the others)."""
    try:
        model = str(json.loads((folder / "replay.json").read_text())["identity"]["model"])
    except (OSError, ValueError, KeyError, TypeError):
        model = ""
    return LeftOut(str(folder), f"{problem}; re-running 03_spec replays it again", REPLAY, model, EVERY_CLAIM)


def _configuration_name(run: PricedRun) -> str:
    return "greedy" if run.method == "baseline" else run.method


def price_replay(replay: dict, run: PricedRun, budgets: list[int]) -> tuple[pd.DataFrame, list[dict]]:
    """Modelled rows of one replayed trace set priced by one run, and the budgets refused."""
    graded = replay["rows"]
    # Replays written before samples were told apart have no sample_index: one sample per problem.
    grades = (graded if "sample_index" in graded else graded.assign(sample_index=0)).set_index(TRACE_KEYS)
    limit = run.reach() * (1 + CONTEXT_SLACK)
    label = f"modelled: {replay['trace_set']} traces" + (f", priced by {run.study}" if run.imported else "")
    rows, refused = [], []
    replayed = replay.get("settings")
    if run.speculative and run.ngram_settings and replayed and run.ngram_settings != replayed:
        # The trace's drafts were replayed with other settings than the run speculated with.
        return pd.DataFrame(), [{"model": replay["model"], "method": run.method,
                                 "tensor_parallel_size": run.tensor_parallel_size, "trace_set": replay["trace_set"],
                                 "budget_tokens": budget, "priced_by": run.label(),
                                 "reason": f"replayed with n-gram {NgramSettings(**replayed).label()}, the run "
                                           f"speculated with {NgramSettings(**run.ngram_settings).label()}"}
                                for budget in budgets]
    for budget in budgets:
        needed = max(t["prompt_tokens"] + min(budget, t["output_tokens"]) for t in replay["steps"])
        if needed > limit:
            refused.append({"model": replay["model"], "method": run.method, "tensor_parallel_size": run.tensor_parallel_size,
                            "trace_set": replay["trace_set"], "budget_tokens": budget, "priced_by": run.label(),
                            "context_needed": needed, "context_measured": run.reach(),
                            "reason": "beyond the longest context measured for "
                                      + "/".join(run.kinds) + " steps: not extrapolated"})
            continue
        for trace in replay["steps"]:
            drafts, emitted = np.asarray(trace["draft_tokens"]), np.asarray(trace["emitted"])
            if not run.speculative:
                emitted = np.ones(int(trace["output_tokens"]), int)
                drafts = np.zeros(len(emitted), int)
            latency = predict_request(run.costs, trace["prompt_tokens"], run.ttft_s, drafts, emitted, budget,
                                      run.speculative)
            tokens = min(budget, trace["output_tokens"])
            sample = trace.get("sample_index", 0)
            key = (trace["problem_id"], sample, budget)
            strict = grades.loc[key, "strict_correct"] if key in grades.index and "strict_correct" in grades else math.nan
            lenient = grades.loc[key, "lenient_correct"] if key in grades.index and "lenient_correct" in grades else math.nan
            rows.append({"request_id": f"{trace['problem_id']}#s{sample}", "problem_id": trace["problem_id"],
                         "sample_index": sample,
                         "budget_tokens": budget, "prompt_tokens": trace["prompt_tokens"], "output_tokens": tokens,
                         "hit_budget": trace["output_tokens"] >= budget, "e2e_latency_s": latency,
                         "ttft_s": run.ttft_s, "tpot_s": (latency - run.ttft_s) / (tokens - 1) if tokens > 1 else math.nan,
                         "num_gpus": run.tensor_parallel_size, "energy_j": run.mean_power_w * latency,
                         "strict_correct": float(strict), "lenient_correct": float(lenient),
                         "grade_status": "not graded" if math.isnan(float(strict)) else "ok"})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame.insert(0, "priced_by", run.label())
        frame.insert(0, "trace_set", replay["trace_set"])
        frame.insert(0, "evidence", EVIDENCE_MODELLED)
        frame.insert(0, "system_only", True)
        frame.insert(0, "hardware", run.hardware)
        frame.insert(0, "tensor_parallel_size", run.tensor_parallel_size)
        frame.insert(0, "acceptance", label)
        frame.insert(0, "method", run.method)
        frame.insert(0, "model", replay["model"])
        frame.insert(0, "run_name", f"modelled-{replay['replay']}-{run.study}-{run.run_name}")
        frame.insert(0, "study", run.study)
    return frame, refused


@dataclass
class Modelled:
    """Everything the modelled half of 04_analysis needs: rows, their summary, what priced them."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    sources: pd.DataFrame
    refused: pd.DataFrame
    # Runs and replays that could not be read (report/left_out.py): 04 names them and the verdicts they cost.
    left_out: list[LeftOut] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.rows.empty


def build_modelled(replay_sets: list[dict], runs: list[PricedRun]) -> Modelled:
    """Price every replayed trace set with every run of its model (a proxy prices as its own model)."""
    frames, refused, used = [], [], set()
    for replay in replay_sets:
        budgets = sorted(int(b) for b in replay["rows"]["budget_tokens"].unique())
        for run in runs:
            if run.model != replay["model"]:
                continue
            frame, no = price_replay(replay, run, budgets)
            refused += no
            if not frame.empty:
                frames.append(frame)
                used.add(run.label())
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    summary = summarise(rows, SUMMARY_KEYS + ["evidence", "trace_set", "priced_by"]) if frames else pd.DataFrame()
    sources = pd.DataFrame([{"priced_by": r.label(), "study": r.study, "run_name": r.run_name, "model": r.model,
                             "method": r.method, "tensor_parallel_size": r.tensor_parallel_size,
                             "hardware": r.hardware, "commit": r.commit, "imported": r.imported, "source": r.source,
                             "measured_context_tokens": r.reach(), "used": r.label() in used, **r.validation}
                            for r in runs])
    return Modelled(rows, summary, sources, pd.DataFrame(refused))


def study_modelled(study: str, own_rows: pd.DataFrame, tp_import: tuple[str, ...] = (),
                   tp_import_any_hardware: bool = False) -> Modelled:
    """04_analysis: the modelled rows of a study, priced by its own runs and any imported ones;
    ``left_out`` names the replays and runs that could not be read."""
    left_out: list[LeftOut] = []
    replay_sets = load_replay_sets(study, left_out)
    runs = priced_runs(study_dir(study), study, left_out=left_out) if study_dir(study).is_dir() else []
    if tp_import:
        hardware = set(own_rows["hardware"].dropna().astype(str)) if "hardware" in own_rows else set()
        models = {r["model"] for r in replay_sets} or set(own_rows.get("model", pd.Series(dtype=str)))
        runs += import_tp_runs(tp_import, hardware, models, tp_import_any_hardware, study, left_out)
    modelled = build_modelled(replay_sets, runs)
    modelled.left_out = left_out
    return modelled


def modelled_table(modelled: Modelled, gpu_hour_usd: float | None) -> pd.DataFrame:
    """The configuration table of the modelled rows (intervals over problems), labelled modelled."""

    if modelled.empty:
        return pd.DataFrame()
    table = configuration_table(modelled.rows, modelled.summary, gpu_hour_usd)
    labels = modelled.summary.drop_duplicates("run_name").set_index("run_name")[["trace_set", "priced_by"]]
    table = table.join(labels, on="run_name")
    table["evidence"] = EVIDENCE_MODELLED
    imported = table["priced_by"].str.contains("imported")
    table["configuration"] = table["configuration"] + [
        f" (modelled, {by.split('/')[0]} costs)" if other else " (modelled)" for by, other in zip(table["priced_by"], imported)]
    return table


def real_trace_sets(study: str) -> list[str]:
    """Trace sets of real models this study replayed and graded (the landing page's banner)."""
    names = []
    for folder in current_replay_folders(study, quiet=True):
        if replay_problem(folder):  # 04 says why it left it out
            continue
        meta = json.loads((folder / "replay.json").read_text())
        if meta["identity"]["model"] not in PLUMBING_MODELS and not meta.get("proxy_of") and not meta.get("random_weights"):
            names.append(f"{meta['identity']['model']}: {meta['trace_set_name']}")
    return names
