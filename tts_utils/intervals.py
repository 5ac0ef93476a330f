"""95% bootstrap intervals over problems, repetitions nested, and the widths a study will give.

Which problems were drawn is the main source of uncertainty, so every resample draws problems with
replacement and keeps all repetitions (``sample_index``) of each drawn problem: a cluster bootstrap.
Every statistic is a ratio of totals, as ``metrics.summarise`` computes it (accuracy = correct /
graded requests, cost = GPUs x latency / tokens), so one resample is a weighted sum: how often each
problem was drawn, times its totals. Comparisons (speedups, cost ratios) resample the problems two
configurations share jointly, so they are paired. Seeded and numpy-only, so a report is reproducible.
Used by analysis.py (04_analysis: table intervals and claim verdicts) and 00_setup (planned widths).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
# Below this many problems a bootstrap over problems has too few distinct resamples to mean anything.
MIN_PROBLEMS = 5
Z_95 = 1.959964

# statistic -> (numerator column, denominator column or None for the number of requests, x num_gpus)
STATISTICS: dict[str, tuple[str, str | None, bool]] = {
    "accuracy_strict": ("strict_correct", None, False),
    "accuracy_lenient": ("lenient_correct", None, False),
    "mean_e2e_latency_s": ("e2e_latency_s", None, False),
    "gpu_s_per_request": ("e2e_latency_s", None, True),
    "cost_gpu_s_per_token": ("e2e_latency_s", "output_tokens", True),
    "energy_j_per_token": ("energy_j", "output_tokens", False),
    "gpu_s_per_correct": ("e2e_latency_s", "strict_correct", True),
}


@dataclass(frozen=True)
class Interval:
    """A point estimate (ratio of totals on the data) and its bootstrap interval."""

    estimate: float
    low: float
    high: float
    problems: int

    @property
    def known(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def __str__(self) -> str:
        if not self.known:
            return f"{self.estimate:.3g} [no interval: {self.problems} problem(s)]"
        return f"{_short(self.estimate)} [{_short(self.low)}, {_short(self.high)}]"


def _short(value: float) -> str:
    """Three significant digits, with rounding noise shown as 0 (a bound of 1.11e-16 is 0)."""
    return f"{0.0 if abs(value) < 1e-9 else value:.3g}"


def problem_totals(rows: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """Numerator and denominator of a statistic summed per problem (its repetitions pooled).

    Rows where either is missing or not finite (ungraded, no energy reading) are left out.
    """
    numerator_column, denominator_column, per_gpu = STATISTICS[statistic]
    if numerator_column not in rows or rows.empty:
        return pd.DataFrame(columns=["numerator", "denominator"], dtype=float)
    numerator = rows[numerator_column].astype(float)
    if per_gpu:
        numerator = numerator * rows["num_gpus"].astype(float)
    denominator = rows[denominator_column].astype(float) if denominator_column else pd.Series(1.0, index=rows.index)
    keep = np.isfinite(numerator) & np.isfinite(denominator)
    frame = pd.DataFrame({"problem_id": rows["problem_id"], "numerator": numerator, "denominator": denominator})
    return frame[keep].groupby("problem_id").sum()


@lru_cache(maxsize=16)
def bootstrap_weights(problems: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """How often each problem is drawn in each resample: a (resamples x problems) count matrix."""
    weights = np.random.default_rng(seed).multinomial(problems, np.full(problems, 1.0 / problems), size=resamples)
    weights.setflags(write=False)
    return weights


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` share of resampled values (an infinite cost stays infinite)."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    method = "linear" if np.isfinite(values).all() else "inverted_cdf"
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], method=method)
    return float(low), float(high)


def joint_interval(groups: Sequence[pd.DataFrame], statistic: str, combine: Callable[[np.ndarray], np.ndarray],
                   resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Interval:
    """Interval of ``combine`` applied to a statistic of several groups, resampling shared problems jointly.

    ``combine`` maps an array (groups x resamples) of the statistic to one value per resample, e.g.
    ``lambda s: s[0] / s[1]`` for a speedup. Only problems every group has count. Used by the claims
    of 04_analysis (speedups, gains across budgets) through ``paired_ratio`` and directly.
    """
    totals = [problem_totals(group, statistic) for group in groups]
    shared = sorted(set.intersection(*(set(t.index) for t in totals))) if totals else []
    numerators = np.array([t.loc[shared, "numerator"].to_numpy() for t in totals])
    denominators = np.array([t.loc[shared, "denominator"].to_numpy() for t in totals])
    with np.errstate(divide="ignore", invalid="ignore"):
        point = numerators.sum(axis=1) / denominators.sum(axis=1) if shared else np.full(len(groups), math.nan)
        estimate = float(combine(point[:, None])[0])
        if len(shared) < MIN_PROBLEMS:
            return Interval(estimate, math.nan, math.nan, len(shared))
        weights = bootstrap_weights(len(shared), resamples, seed)
        resampled = (numerators @ weights.T) / (denominators @ weights.T)
        low, high = percentile_interval(np.asarray(combine(resampled), dtype=float), level)
    return Interval(estimate, low, high, len(shared))


def interval(rows: pd.DataFrame, statistic: str, **options) -> Interval:
    """Interval of one statistic of one configuration (its request rows at one budget). Used by 04."""
    return joint_interval([rows], statistic, lambda s: s[0], **options)


def paired_ratio(rows_a: pd.DataFrame, rows_b: pd.DataFrame, statistic: str, **options) -> Interval:
    """Interval of statistic(A) / statistic(B) over their shared problems, e.g. a speedup
    (latency A / latency B) or a cost ratio. Used by the claims of 04_analysis."""
    return joint_interval([rows_a, rows_b], statistic, lambda s: s[0] / s[1], **options)


def configuration_intervals(rows: pd.DataFrame, statistics: Sequence[str] = tuple(STATISTICS),
                            by: Sequence[str] = ("run_name", "budget_tokens")) -> pd.DataFrame:
    """``<statistic>_lo`` / ``_hi`` per run and budget, for the statistics the rows can give.

    Used by ``analysis.configuration_table`` (04_analysis).
    """
    records = []
    for key, group in rows.groupby(list(by), sort=True):
        record = dict(zip(by, key))
        for statistic in statistics:
            if STATISTICS[statistic][0] in group:
                result = interval(group, statistic)
                record[f"{statistic}_lo"], record[f"{statistic}_hi"] = result.low, result.high
        records.append(record)
    return pd.DataFrame(records) if records else pd.DataFrame(columns=list(by))


@dataclass(frozen=True)
class SpreadAssumptions:
    """What the planned widths rest on: accuracy, and latency's spread between and within problems."""

    accuracy: float = 0.5  # the widest case for a proportion
    latency_cv_between: float = 0.5  # spread of per-problem mean latency / mean; reasoning lengths vary a lot
    latency_cv_within: float = 0.03  # repetition noise / mean; about 3% on the H200 reference runs
    source: str = "assumed (no runs yet): accuracy 0.5, latency CV 0.5 between problems, 0.03 within"


def observed_spread(rows: pd.DataFrame) -> SpreadAssumptions:
    """Spread measured on a study's existing request rows (median over runs and budgets).

    Falls back to the assumption for any part the rows cannot give (no rows, no correct answer,
    one repetition). Used by 00_setup.
    """
    default = SpreadAssumptions()
    if rows.empty:
        return default
    between, within = [], []
    for _, group in rows.groupby(["run_name", "budget_tokens"]):
        per_problem = group.groupby("problem_id")["e2e_latency_s"]
        mean = group["e2e_latency_s"].mean()
        if per_problem.ngroups >= 2 and mean > 0:
            between.append(per_problem.mean().std() / mean)
        if per_problem.size().max() >= 2 and mean > 0:
            within.append(math.sqrt(per_problem.var().mean()) / mean)
    accuracy = float(rows["strict_correct"].astype(float).mean()) if "strict_correct" in rows else math.nan
    measured = [name for name, ok in (("accuracy", 0 < accuracy < 1), ("latency CV between problems", bool(between)),
                                      ("latency CV within problems", bool(within))) if ok]
    return SpreadAssumptions(
        accuracy=accuracy if 0 < accuracy < 1 else default.accuracy,
        latency_cv_between=float(np.median(between)) if between else default.latency_cv_between,
        latency_cv_within=float(np.median(within)) if within else default.latency_cv_within,
        source=f"measured on this study's {len(rows)} request rows: {', '.join(measured) or 'nothing usable'}"
               + ("" if len(measured) == 3 else "; the rest as assumed (accuracy 0.5, latency CV 0.5 between "
                                                 "problems, 0.03 within)"),
    )


def planned_widths(problem_counts: Sequence[int], samples_per_problem: int,
                   spread: SpreadAssumptions = SpreadAssumptions()) -> pd.DataFrame:
    """Half-widths of the 95% intervals a study of each size will give, by the normal approximation.

    Accuracy: 1.96 x sqrt(p(1-p)/n) (repetitions of one problem are not independent draws, so they
    do not narrow it). Mean latency, relative: 1.96 x sqrt(cv_between^2 + cv_within^2/m) / sqrt(n),
    for n problems and m repetitions. Paired comparisons are usually narrower. Used by 00_setup.
    """
    records = []
    for n in problem_counts:
        latency = Z_95 * math.sqrt(spread.latency_cv_between ** 2
                                   + spread.latency_cv_within ** 2 / samples_per_problem) / math.sqrt(n)
        records.append({
            "problems": n, "samples_per_problem": samples_per_problem,
            "requests_per_configuration": n * samples_per_problem,
            "accuracy_half_width": Z_95 * math.sqrt(spread.accuracy * (1 - spread.accuracy) / n),
            "latency_half_width_pct": 100 * latency,
        })
    return pd.DataFrame(records)
