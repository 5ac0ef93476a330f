"""Tables, Pareto frontiers and the paper's claims, re-tested with 95% intervals on a study's results.

Every number in the table carries a bootstrap interval over problems (``intervals``), and dollar
columns when a price is given (``prices``: prices are inputs, not measurements). Every verdict is
decided by an interval against a threshold: ``holds`` (the whole interval on the claim's side),
``does not hold`` (wholly on the other side), ``inconclusive`` (it spans the threshold) or ``not
enough data``; the claims table shows the interval that decided. Used by 04_analysis (which only
reads result files, through store.load_study).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tts_utils.intervals import MIN_PROBLEMS, Interval, configuration_intervals, joint_interval, paired_ratio
from tts_utils.models import get_model
from tts_utils.report.claims import REGISTRY, claim
from tts_utils.report.prices import resolve_price, usd_per_correct_answer, usd_per_million_tokens

HOLDS, FAILS, INCONCLUSIVE, UNKNOWN = "holds", "does not hold", "inconclusive", "not enough data"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, UNKNOWN)
# The compute-only rule looks for the cheapest configuration within this share of the best accuracy.
ACCURACY_TARGET_SHARE = 0.95
# Metrics whose 95% interval the table carries as <metric>_lo / <metric>_hi.
INTERVAL_METRICS = ("accuracy_strict", "accuracy_lenient", "mean_e2e_latency_s", "cost_gpu_s_per_token",
                    "gpu_s_per_request", "gpu_s_per_correct", "energy_j_per_token")


def _keys(frame: pd.DataFrame) -> list[str]:
    """What identifies a configuration; a later ``acceptance`` column (engine or synthetic) splits it."""
    return ["model", "method", "tensor_parallel_size", "budget_tokens"] + (["acceptance"] if "acceptance" in frame else [])


def in_canonical_order(table: pd.DataFrame) -> pd.DataFrame:
    """A table's rows sorted by what they are (model, method, TP, budget, then the rest), so that no
    verdict, evidence line or deciding interval depends on the order rows were read in."""
    if table.empty:
        return table
    keys = [key for key in (*_keys(table), "trace_set", "priced_by", "run_name") if key in table]
    return table.sort_values(keys, kind="stable").reset_index(drop=True)


def configuration_table(rows: pd.DataFrame, summary: pd.DataFrame, gpu_hour_usd: float | None = None) -> pd.DataFrame:
    """One row per model x method x TP x budget: the numbers behind every figure, with 95% intervals.

    ``rows`` are the per-request rows (``StudyResults.rows``), ``summary`` the per-budget summaries.
    ``gpu_hour_usd``: None leaves dollars out; 0 prices each row's hardware from the list-price table
    (ConfigError if it is not there); a positive value is the price of one device-hour.
    """
    if summary.empty:
        return summary
    table = summary.copy()
    table["configuration"] = table["method"] + " TP" + table["tensor_parallel_size"].astype(str)
    table["gpu_s_per_request"] = table["cost_gpu_s_per_token"] * table["mean_output_tokens"]
    table["gpu_s_per_correct"] = table["gpu_s_per_request"] / table["accuracy_strict"].where(table["accuracy_strict"] > 0)
    table["compute_tflop_per_request"] = [
        2.0 * get_model(m).params_billion * 1e9 * tokens / 1e12
        for m, tokens in zip(table["model"], table["mean_output_tokens"])
    ]
    duplicated = table.duplicated(_keys(table), keep=False)
    if duplicated.any():
        print(f"!! {int(duplicated.sum())} rows share model/method/TP/budget (runs with other settings); "
              "keeping the most recent run of each.")
        table = table.drop_duplicates(_keys(table), keep="last")
    by = ["run_name", "budget_tokens"] + (["acceptance"] if "acceptance" in table and "acceptance" in rows else [])
    statistics = [m for m in INTERVAL_METRICS if m != "energy_j_per_token" or ("energy_j" in rows and m in table)]
    table = table.merge(configuration_intervals(rows, statistics, by) if not rows.empty else table[by].head(0),
                        on=by, how="left")
    for metric in statistics:
        for bound in ("lo", "hi"):
            table[f"{metric}_{bound}"] = table.get(f"{metric}_{bound}", math.nan)
    if gpu_hour_usd is not None:
        table = add_dollars(table, gpu_hour_usd)
    columns = ["model", "configuration", "method", "tensor_parallel_size", "acceptance", "budget_tokens",
               "num_requests", "accuracy_strict", "accuracy_lenient", "mean_output_tokens", "mean_e2e_latency_s",
               "p90_e2e_latency_s", "mean_ttft_s", "mean_tpot_ms", "tokens_per_s", "cost_gpu_s_per_token",
               "gpu_s_per_request", "gpu_s_per_correct", "energy_j_per_token", "usd_per_million_output_tokens",
               "usd_per_correct_answer", "usd_per_gpu_hour", "price_source", "compute_tflop_per_request",
               "spec_acceptance_rate", "spec_mean_acceptance_length", "system_only", "weights", "hardware", "run_name"]
    ordered = [name for column in columns for name in (column, f"{column}_lo", f"{column}_hi") if name in table]
    return table[ordered].sort_values(_keys(table)).reset_index(drop=True)


def add_dollars(table: pd.DataFrame, gpu_hour_usd: float) -> pd.DataFrame:
    """Dollars per million output tokens and per strictly correct answer, with their intervals.

    The price is a constant input, so an interval in dollars is the GPU-seconds interval times it.
    """
    prices = {hardware: resolve_price(hardware, gpu_hour_usd) for hardware in table["hardware"].unique()}
    table = table.copy()
    table["usd_per_gpu_hour"] = table["hardware"].map(lambda h: prices[h].usd_per_hour)
    table["price_source"] = table["hardware"].map(lambda h: prices[h].source)
    for suffix in ("", "_lo", "_hi"):
        table[f"usd_per_million_output_tokens{suffix}"] = usd_per_million_tokens(
            table[f"cost_gpu_s_per_token{suffix}"], table["usd_per_gpu_hour"])
    table["usd_per_correct_answer"] = [usd_per_correct_answer(g, a, p) for g, a, p in zip(
        table["gpu_s_per_request"], table["accuracy_strict"], table["usd_per_gpu_hour"])]
    for suffix in ("_lo", "_hi"):
        table[f"usd_per_correct_answer{suffix}"] = table[f"gpu_s_per_correct{suffix}"] * table["usd_per_gpu_hour"] / 3600
    return table


def pareto_front(frame: pd.DataFrame, cost: str, value: str) -> pd.Series:
    """True for points no other point beats on both: lower ``cost`` and higher ``value``."""
    points = frame[[cost, value]].to_numpy(dtype=float)
    mask = []
    for c, v in points:
        if math.isnan(c) or math.isnan(v):
            mask.append(False)
            continue
        dominated = np.any((points[:, 0] <= c) & (points[:, 1] >= v) & ((points[:, 0] < c) | (points[:, 1] > v)))
        mask.append(not dominated)
    return pd.Series(mask, index=frame.index)


def decide(interval: Interval, threshold: float, holds_below: bool) -> str:
    """The verdict rule: the whole interval on the claim's side of ``threshold`` holds, wholly on the
    other side does not hold, an interval that spans it is inconclusive, no interval is not enough data."""
    if not interval.known:
        return UNKNOWN
    if interval.high < threshold:
        return HOLDS if holds_below else FAILS
    if interval.low > threshold:
        return FAILS if holds_below else HOLDS
    return INCONCLUSIVE


@dataclass(frozen=True)
class Check:
    """One interval tested against a threshold: what every verdict is decided from."""

    label: str
    interval: Interval
    threshold: float
    holds_below: bool
    model: str = ""
    series: str = ""  # which evidence within a model (measured or modelled, which method)
    at: str = ""  # where within the series: a budget or a TP size

    @property
    def verdict(self) -> str:
        return decide(self.interval, self.threshold, self.holds_below)

    @property
    def margin(self) -> float:
        """How far the interval clears the threshold on the claim's side (negative if it does not)."""
        return self.threshold - self.interval.high if self.holds_below else self.interval.low - self.threshold

    def describe(self) -> str:
        return f"{self.label} {self.interval} (holds if {'<' if self.holds_below else '>'} {self.threshold:g})"


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict (``key`` in the claims registry), the checks it was decided from, and the
    evidence in words; ``record`` is its row of claims.csv."""

    key: str
    verdict: str
    evidence: str
    interval: str = "none"
    checks: tuple[Check, ...] = ()

    @property
    def claim(self) -> str:
        return claim(self.key).sentence

    def per_model(self) -> str:
        """Each model's answer under the claim's rule, and where it does not hold or cannot tell:
        "7b: holds (1024, 2048); 1.5b: does not hold (does not hold at 1024; holds at 2048)"."""
        if not claim(self.key).per_model:
            return "compared across models"
        groups: dict[str, list[Check]] = {}
        for check in self.checks:
            groups.setdefault(" ".join(part for part in (check.model, check.series) if part), []).append(check)
        lines = []
        for group, checks in groups.items():
            combined = all_must_hold(self.key, checks, "").verdict
            where: dict[str, list[str]] = {}
            for check in checks:
                if check.at:
                    where.setdefault(check.verdict, []).append(check.at)
            if len(where) == 1:
                detail = ", ".join(next(iter(where.values())))
            else:
                detail = "; ".join(f"{verdict} at {', '.join(places)}" for verdict, places in where.items())
            lines.append(f"{group}: {combined}" + (f" ({detail})" if detail else ""))
        return "; ".join(lines) or "no model could be judged"

    def record(self) -> dict:
        return {"key": self.key, "claim": self.claim, "verdict": self.verdict, "per_model": self.per_model(),
                "evidence": self.evidence, "interval": self.interval}


def all_must_hold(key: str, checks: list[Check], evidence: str, missing: bool = False) -> Verdict:
    """A claim made of parts that must all hold: a failing part decides, then an inconclusive one;
    if all hold, the part that holds by the smallest margin is the interval shown."""
    verdicts = [check.verdict for check in checks]
    for decisive in (FAILS, INCONCLUSIVE):
        if decisive in verdicts:
            return Verdict(key, decisive, evidence, checks[verdicts.index(decisive)].describe(), tuple(checks))
    held = [check for check in checks if check.verdict == HOLDS]
    if not held:
        return Verdict(key, UNKNOWN, evidence or "no run covers it", checks[0].describe() if checks else "none",
                       tuple(checks))
    partial = missing or len(held) < len(checks)
    return Verdict(key, HOLDS, evidence + (" (some parts lack data)" if partial else ""),
                   min(held, key=lambda c: c.margin).describe(), tuple(checks))


def any_may_hold(key: str, checks: list[Check], evidence: str) -> Verdict:
    """A claim that holds if any part holds (the clearest one is shown); else inconclusive, else fails."""
    verdicts = [check.verdict for check in checks]
    if HOLDS in verdicts:
        best = max((c for c in checks if c.verdict == HOLDS), key=lambda c: c.margin)
        return Verdict(key, HOLDS, evidence, best.describe(), tuple(checks))
    for decisive in (INCONCLUSIVE, FAILS):
        if decisive in verdicts:
            return Verdict(key, decisive, evidence, checks[verdicts.index(decisive)].describe(), tuple(checks))
    return Verdict(key, UNKNOWN, evidence, checks[0].describe() if checks else "none", tuple(checks))


def rows_of(rows: pd.DataFrame, entry: pd.Series) -> pd.DataFrame:
    """The request rows behind one table row (its run and budget, and acceptance source if any)."""
    mask = (rows["run_name"] == entry["run_name"]) & (rows["budget_tokens"] == entry["budget_tokens"])
    if "acceptance" in rows and "acceptance" in entry:
        value = entry["acceptance"]
        mask &= rows["acceptance"].isna() if pd.isna(value) else rows["acceptance"] == value
    return rows[mask]


def _select(table: pd.DataFrame, method: str, tp: int, model: str | None = None) -> pd.DataFrame:
    """Table rows of one method at one TP size (one per budget), optionally of one model."""
    frame = table[(table["method"] == method) & (table["tensor_parallel_size"] == tp)]
    if model is not None:
        frame = frame[frame["model"] == model].drop_duplicates("budget_tokens", keep="last")
    return frame.sort_values("budget_tokens")


def _has_accuracy(frame: pd.DataFrame) -> str | None:
    """Why accuracy cannot decide anything here, or None if it can."""
    if frame.empty or frame["accuracy_strict"].isna().all():
        return "no accuracy (system-only runs use random weights)"
    if (frame["accuracy_strict"].fillna(0) == 0).all():
        return "no correct answer at any budget"
    return None


def accuracy_curves(frame: pd.DataFrame) -> pd.Series:
    """Each row's accuracy curve: its model, or "model (trace set)" where the model's real traces come
    in several sets. The accuracy claim judges each curve; 04's accuracy figure draws each."""
    names = frame["model"].astype(str)
    if "trace_set" in frame and frame["trace_set"].notna().any():
        several = frame["model"].map(frame.groupby("model")["trace_set"].nunique()) > 1
        names = names.where(~several, names + " (" + frame["trace_set"].astype(str) + ")")
    return names


def claim_accuracy_flattens(table: pd.DataFrame, rows: pd.DataFrame) -> Verdict:
    """Accuracy gains flatten with length: the last budget step gains less than the first
    (interval of last gain - first gain, problems resampled jointly across budgets, below 0)."""
    checks, notes, missing = [], [], False
    baseline = _select(table, "baseline", 1)
    # Real traces of one model on two datasets (MATH500, GSM8K) are two curves, each judged apart.
    for label, frame in baseline.groupby(accuracy_curves(baseline)):
        model = frame["model"].iloc[0]
        frame = frame.drop_duplicates("budget_tokens", keep="last")
        reason = _has_accuracy(frame)
        if len(frame) < 3 or reason:
            notes.append(f"{label}: {reason or f'{len(frame)} budgets (need 3)'}")
            missing = True
            continue
        groups = [rows_of(rows, entry) for _, entry in frame.iterrows()]
        change = joint_interval(groups, "accuracy_strict", lambda s: (s[-1] - s[-2]) - (s[1] - s[0]))
        if frame["accuracy_strict"].nunique() == 1 and change.low == change.high == 0:
            # No answer changes between budgets (GSM8K: every trace ends before 1K): nothing to flatten.
            notes.append(f"{label}: strict accuracy {frame['accuracy_strict'].iloc[0]:.3f} at every budget from "
                         f"{frame['budget_tokens'].min():,} tokens, no answer changes: the outputs end before the "
                         "first budget, so no gain can flatten (needs smaller budgets)")
            missing = True
            continue
        check = Check(f"{label} last gain - first gain", change, 0.0, holds_below=True, model=model,
                      series=frame["trace_set"].iloc[0] if label != model else "")
        checks.append(check)
        path = " -> ".join(f"{a:.3f}@{b}" for a, b in zip(frame["accuracy_strict"], frame["budget_tokens"]))
        notes.append(f"{label}: strict accuracy {path}; {check.describe()}")
    return all_must_hold("accuracy_flattens", checks, "; ".join(notes), missing)


def _speculation_checks(table: pd.DataFrame, rows: pd.DataFrame, modelled: pd.DataFrame | None
                        ) -> tuple[list[tuple[str, str, str, int, Check]], list[str], bool]:
    """Every spec/baseline latency comparison at TP 1: (model, series, evidence, budget, check)
    per budget, the evidence notes, and whether a model lacks one of the two methods."""
    # Every n-gram variant (engine acceptance, synthetic acceptance) is judged on its own.
    spec = table[table["method"].str.contains("-spec") & (table["tensor_parallel_size"] == 1)]
    keys = ["model", "method", "acceptance"] if "acceptance" in table else ["model", "method"]
    parts: list[tuple[str, str, str, int, Check]] = []
    notes = [f"{model}: needs baseline and ngram-spec at TP=1" for model in sorted(set(table["model"]) - set(spec["model"]))]
    missing = bool(notes)
    for key, spec_frame in spec.groupby(keys, dropna=False):
        label = " ".join(str(part) for part in key)
        base = _select(table, "baseline", 1, key[0]).set_index("budget_tokens", drop=False)
        spec_frame = spec_frame.drop_duplicates("budget_tokens", keep="last").set_index("budget_tokens", drop=False)
        shared = [b for b in spec_frame.index if b in base.index]
        if not shared:
            notes.append(f"{label}: needs baseline and ngram-spec at TP=1")
            missing = True
            continue
        acceptance = str(key[2]).split(":")[0] if len(key) > 2 and pd.notna(key[2]) else ""
        series = f"{key[1]}{f' {acceptance}' if acceptance not in key[1] else ''}, measured"
        checks = [Check(f"{label} spec/baseline latency @{b}",
                        paired_ratio(rows_of(rows, spec_frame.loc[b]), rows_of(rows, base.loc[b]), "mean_e2e_latency_s"),
                        1.0, holds_below=True, model=key[0], series=series, at=str(b)) for b in shared]
        parts += [(key[0], f"{key[1]} (measured)", "measured", b, c) for b, c in zip(shared, checks)]
        notes.append(f"{label}: spec/baseline latency " + ", ".join(f"{c.interval}@{b}" for c, b in zip(checks, shared)))
    # Modelled at real-trace acceptance (stepcost.study_predictions): steps without a draft included,
    # which synthetic runs on looping random-weight output never take. Each speculative method
    # against greedy, both at TP 1.
    modelled = modelled[modelled["tensor_parallel_size"] == 1] if modelled is not None and not modelled.empty else None
    frame_sets = modelled.groupby("model")["trace_set"].nunique() if modelled is not None else {}
    for (model, trace_set), frame in (modelled.groupby(["model", "trace_set"]) if modelled is not None else []):
        base_rows = frame[frame["method"] == "baseline"]
        several = frame.loc[frame["method"] != "baseline", "method"].nunique() > 1
        for method, spec_rows in frame[frame["method"] != "baseline"].groupby("method"):
            budgets = sorted(set(spec_rows["budget_tokens"]) & set(base_rows["budget_tokens"]))
            label = f"{model}{f' {method}' if several else ''} modelled at {trace_set} acceptance"
            series = f"{method}, modelled" + (f" ({trace_set})" if frame_sets[model] > 1 else "")
            checks = [Check(f"{label} @{b}",
                            paired_ratio(spec_rows[spec_rows["budget_tokens"] == b],
                                         base_rows[base_rows["budget_tokens"] == b], "mean_e2e_latency_s"),
                            1.0, holds_below=True, model=model, series=series, at=str(b)) for b in budgets]
            parts += [(model, f"{method} at real-trace acceptance (modelled)", "modelled", b, c)
                      for b, c in zip(budgets, checks)]
            notes.append(f"{model}{f' {method}' if several else ''} modelled at real-trace acceptance ({trace_set}): "
                         "spec/baseline latency " + ", ".join(f"{c.interval}@{b}" for c, b in zip(checks, budgets)))
    return parts, notes, missing


def claim_speculation_faster(table: pd.DataFrame, rows: pd.DataFrame, modelled: pd.DataFrame | None = None) -> Verdict:
    """n-gram speculation has lower mean latency than baseline at every budget (both TP=1): the
    interval of spec/baseline latency is below 1 at each budget. Split by method and ``acceptance``."""
    parts, notes, missing = _speculation_checks(table, rows, modelled)
    return all_must_hold("speculation_faster", [check for *_, check in parts], "; ".join(notes), missing)


def speculation_ratios(table: pd.DataFrame, rows: pd.DataFrame, modelled: pd.DataFrame | None = None) -> pd.DataFrame:
    """The intervals the speculation verdict is decided from, one row per model, series and budget
    (04_analysis: ``speculation_ratio.csv`` and the figure under that verdict)."""
    parts = _speculation_checks(table, rows, modelled)[0] if not table.empty else []
    return pd.DataFrame([{"model": model, "series": series, "evidence": evidence, "budget_tokens": budget,
                          "ratio": check.interval.estimate, "ratio_lo": check.interval.low,
                          "ratio_hi": check.interval.high, "problems": check.interval.problems,
                          "verdict": check.verdict} for model, series, evidence, budget, check in parts],
                        columns=["model", "series", "evidence", "budget_tokens", "ratio", "ratio_lo", "ratio_hi",
                                 "problems", "verdict"])


def _tp_interval(table: pd.DataFrame, rows: pd.DataFrame, model: str, sizes: list[int],
                 combine: Callable[[list[np.ndarray]], np.ndarray],
                 statistic: str = "mean_e2e_latency_s") -> Interval | None:
    """Joint interval over the baseline runs of one model at TP ``sizes``, on the budgets they share.

    ``combine`` gets one (budgets x resamples) array of the statistic (mean latency) per TP size.
    """
    frames = [_select(table, "baseline", tp, model).set_index("budget_tokens", drop=False) for tp in sizes]
    budgets = sorted(set.intersection(*(set(frame.index) for frame in frames)))
    if not budgets:
        return None
    groups = [rows_of(rows, frame.loc[budget]) for frame in frames for budget in budgets]
    count = len(budgets)
    return joint_interval(groups, statistic,
                          lambda s: combine([s[i * count:(i + 1) * count] for i in range(len(sizes))]))


def _tp_sizes(table: pd.DataFrame, model: str) -> list[int]:
    sizes = table.loc[(table["model"] == model) & (table["method"] == "baseline"), "tensor_parallel_size"]
    return sorted(int(tp) for tp in sizes.unique() if tp != 1)


def _speedup(latency: list[np.ndarray]) -> np.ndarray:
    """Mean over budgets of latency(TP=1) / latency(TP=n)."""
    return (latency[0] / latency[1]).mean(axis=0)


def claim_tp_diminishing(table: pd.DataFrame, rows: pd.DataFrame) -> Verdict:
    """TP has diminishing returns: efficiency (speedup / TP) below 1 at every TP>1 and falling with TP.
    The evidence also gives the cost-per-token ratio to TP=1, with its interval."""
    checks, notes, missing = [], [], False
    for model in sorted(table["model"].unique()):
        parts, text, sizes = [], [], []
        for tp in _tp_sizes(table, model):
            speedup = _tp_interval(table, rows, model, [1, tp], _speedup)
            if speedup is None:
                continue
            efficiency = Interval(speedup.estimate / tp, speedup.low / tp, speedup.high / tp, speedup.problems)
            cost = _tp_interval(table, rows, model, [1, tp], lambda c: (c[1] / c[0]).mean(axis=0), "cost_gpu_s_per_token")
            parts.append(Check(f"{model} TP{tp} efficiency", efficiency, 1.0, holds_below=True, model=model,
                               at=f"TP{tp}"))
            text.append(f"TP{tp}: speedup {speedup}x, efficiency {efficiency}, cost per token {cost}x TP1")
            sizes.append(tp)
        for small, large in zip(sizes, sizes[1:]):
            falling = _tp_interval(table, rows, model, [1, small, large], lambda s, a=small, b=large: (
                (s[0] / s[1]).mean(axis=0) / a - (s[0] / s[2]).mean(axis=0) / b))
            if falling is not None:
                parts.append(Check(f"{model} efficiency TP{small} - TP{large}", falling, 0.0, holds_below=False,
                                   model=model, at=f"TP{small} vs TP{large}"))
                text.append(f"efficiency TP{small} - TP{large} {falling}")
        if not parts:
            notes.append(f"{model}: needs baseline at TP=1 and a larger TP")
            missing = True
            continue
        checks += parts
        notes.append(f"{model}: " + ", ".join(text))
    return all_must_hold("tp_diminishing", checks, "; ".join(notes), missing)


def claim_small_model_slower_with_tp(table: pd.DataFrame, rows: pd.DataFrame) -> Verdict:
    """For the smallest model with several TP sizes, every TP>1 is slower than TP=1: the interval of
    latency(TP=n) / latency(TP=1), averaged over budgets, is above 1."""
    models = sorted(table["model"].unique(), key=lambda m: get_model(m).params_billion)
    for model in models:
        parts, text = [], []
        for tp in _tp_sizes(table, model):
            ratio = _tp_interval(table, rows, model, [1, tp], lambda s: (s[1] / s[0]).mean(axis=0))
            if ratio is not None:
                parts.append(Check(f"{model} TP{tp}/TP1 latency", ratio, 1.0, holds_below=False, model=model,
                                   at=f"TP{tp}"))
                text.append(f"TP{tp} latency = {ratio}x TP1")
        if parts:
            return all_must_hold("small_model_slower_with_tp", parts, f"{model}: " + ", ".join(text))
    return Verdict("small_model_slower_with_tp", UNKNOWN, "no model has runs at several TP sizes")


COMPUTE = "compute_not_system_optimal"


def claim_compute_not_system_optimal(table: pd.DataFrame, rows: pd.DataFrame) -> Verdict:
    """Among configurations within 95% of the best accuracy (point estimates: the paper's "comparable
    accuracy"), compare the pick of a compute-only rule (fewest FLOPs per request: 2 x params x tokens)
    with the fastest and the cheapest per request; it holds if the compute-only pick is slower or
    costlier, its paired interval above 1x.

    FLOPs cannot tell apart configurations that emit the same tokens (greedy and n-gram of one model
    and budget): a compute-only planner could pick any of them, so each comparison takes the tied one
    best at what it compares. Row order decides nothing (remaining ties fall to the name). With one
    model and method eligible, the comparison is only between budgets: not enough data."""
    reason = _has_accuracy(table)
    if reason:
        return Verdict(COMPUTE, UNKNOWN, reason)
    target = ACCURACY_TARGET_SHARE * table["accuracy_strict"].max()
    eligible = table[table["accuracy_strict"] >= target]
    if len(eligible) < 2:
        return Verdict(COMPUTE, UNKNOWN, f"only {len(eligible)} configuration reaches {target:.3f} strict accuracy")
    if rows["problem_id"].nunique() < MIN_PROBLEMS:
        return Verdict(COMPUTE, UNKNOWN, f"{rows['problem_id'].nunique()} problems: too few to rank configurations "
                                           f"(at least {MIN_PROBLEMS})")
    if len(eligible[["model", "configuration"]].drop_duplicates()) < 2:
        only = eligible.iloc[0]
        return Verdict(COMPUTE, UNKNOWN, f"only {only['model']} {only['configuration']} reaches {target:.3f} strict "
                                           "accuracy: its budgets alone cannot set compute against the system")

    def name(row: pd.Series) -> str:
        return f"{row['model']} {row['configuration']} @{row['budget_tokens']}"

    eligible = eligible.assign(_name=eligible.apply(name, axis=1))

    def best(frame: pd.DataFrame, column: str) -> pd.Series:
        return frame.sort_values([column, "_name"], kind="stable").iloc[0]

    flops = eligible["compute_tflop_per_request"]
    tied = eligible[np.isclose(flops, flops.min(), rtol=1e-9, atol=0.0)]
    fastest, cheapest = best(eligible, "mean_e2e_latency_s"), best(eligible, "gpu_s_per_request")
    tie_note = (f"; FLOPs tie between {', '.join(sorted(tied['_name']))}: each comparison takes the better of them"
                if len(tied) > 1 else "")
    compute = best(tied, "mean_e2e_latency_s")
    evidence = (f"accuracy target {target:.3f} = {ACCURACY_TARGET_SHARE:.2f} x the best strict accuracy (point "
                f"estimates); compute-only pick {compute['_name']} ({compute['compute_tflop_per_request']:.1f} TFLOP, "
                f"{compute['mean_e2e_latency_s']:.2f} s, {compute['gpu_s_per_request']:.2f} GPU-s){tie_note}; fastest "
                f"{fastest['_name']} ({fastest['mean_e2e_latency_s']:.2f} s); cheapest {cheapest['_name']} "
                f"({cheapest['gpu_s_per_request']:.2f} GPU-s per request)")
    checks = []
    for other, statistic, what in ((fastest, "mean_e2e_latency_s", "latency"),
                                   (cheapest, "gpu_s_per_request", "GPU-s per request")):
        pick = best(tied, statistic)
        if pick["_name"] != other["_name"]:
            checks.append(Check(f"{what} of compute-only pick {pick['_name']} / {other['_name']}",
                                paired_ratio(rows_of(rows, pick), rows_of(rows, other), statistic), 1.0,
                                holds_below=False))
    if not checks:
        return Verdict(COMPUTE, FAILS, evidence, "the compute-only pick is also the fastest and the cheapest")
    return any_may_hold(COMPUTE, checks, evidence + "; " + ", ".join(c.describe() for c in checks))


def check_claims(table: pd.DataFrame, rows: pd.DataFrame, modelled: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's claims, one row each: verdict, evidence, and the interval that decided.

    ``modelled``: per-trace latency predicted at real-trace acceptance (stepcost), which the
    speculation claim also judges."""
    table = in_canonical_order(table)
    if table.empty:
        verdicts = [Verdict(entry.key, UNKNOWN, "no complete runs") for entry in REGISTRY]
    else:
        verdicts = [claim_accuracy_flattens(table, rows), claim_speculation_faster(table, rows, modelled),
                    claim_tp_diminishing(table, rows), claim_small_model_slower_with_tp(table, rows),
                    claim_compute_not_system_optimal(table, rows)]
    return pd.DataFrame([v.record() for v in verdicts])
