"""The five verdicts from every kind of evidence a study holds, each saying which kind decided it.

``analysis.check_claims`` judges measured rows. Where they cannot decide (system-only runs have
no accuracy; a one-GPU machine has no TP sizes), the claim is judged on:
- accuracy flattens: the real traces' grades by budget (03_spec's replays; no latency involved);
- speculation: measured runs and modelled rows at TP 1 priced by this study's own runs;
- the two TP claims: modelled greedy rows at several TP sizes, priced by this study's runs or
  imported ones (``modelled.import_tp_runs``), one pricing study per model;
- compute- vs system-optimal: the existing rule on the modelled table.
``claims.csv`` gains ``decided_by`` (measured / modelled / real traces) and evidence that starts with
it, so a modelled verdict never reads as a measured one. Used by 04_analysis.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from tts_utils.banners import PLUMBING_MODELS, real_weight_rows
from tts_utils.intervals import configuration_intervals
from tts_utils.report.analysis import (
    UNKNOWN,
    Verdict,
    claim_accuracy_flattens,
    claim_compute_not_system_optimal,
    claim_small_model_slower_with_tp,
    claim_speculation_faster,
    claim_tp_diminishing,
    in_canonical_order,
)
from tts_utils.report.claims import REGISTRY
from tts_utils.report.modelled import EVIDENCE_MEASURED, Modelled

REAL_TRACES, MEASURED, MODELLED = "real traces", "measured", "modelled"


def trace_accuracy(replay_sets: list[dict], real_only: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy by budget of every graded replay, shaped like a table and its rows (method
    ``baseline`` at TP 1, so the accuracy claim reads it); proxy trace sets carry no grades.
    ``real_only`` leaves out replays of random-weight models (the kit's own, or own runs of a random
    weights folder or of system-only mode)."""
    tables, rows = [], []
    for replay in replay_sets:
        graded = replay["rows"]
        plumbing = replay["model"] in PLUMBING_MODELS or replay.get("random_weights")
        if "strict_correct" not in graded or replay.get("proxy_of") or (real_only and plumbing):
            continue
        if "sample_index" not in graded:  # written before samples were told apart: one per problem
            graded = graded.assign(sample_index=0)
        frame = graded[["problem_id", "sample_index", "budget_tokens", "strict_correct", "lenient_correct"]].copy()
        frame["run_name"] = replay["replay"]
        rows.append(frame)
        summary = frame.groupby("budget_tokens").agg(accuracy_strict=("strict_correct", "mean"),
                                                     accuracy_lenient=("lenient_correct", "mean")).reset_index()
        bounds = configuration_intervals(frame, ("accuracy_strict", "accuracy_lenient"), ("budget_tokens",))
        summary = summary.merge(bounds, on="budget_tokens", how="left")
        summary = summary.assign(model=replay["model"], method="baseline", tensor_parallel_size=1,
                                 trace_set=replay["trace_set"], run_name=replay["replay"],
                                 configuration="greedy TP1 (real traces)")
        tables.append(summary)
    if not tables:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(tables, ignore_index=True), pd.concat(rows, ignore_index=True)


def accuracy_figure_rows(table: pd.DataFrame, replay_sets: list[dict]) -> tuple[pd.DataFrame, str]:
    """The rows 04's accuracy-by-budget figure draws, and what they are, in claim 1's order:
    measured accuracy of real models, else the real traces' grades, else what was measured (the
    tiny model's plumbing, or nothing with random weights)."""
    real_models = real_weight_rows(table)
    if not real_models.empty and real_models["accuracy_strict"].notna().any():
        return real_models, "measured"
    accuracy, _ = trace_accuracy(replay_sets, real_only=True)
    if not accuracy.empty:
        return accuracy, "real traces, graded by budget"
    return table, "measured" + (", plumbing" if not table.empty and real_models.empty else "")


def speculation_rows(modelled: Modelled, study: str) -> pd.DataFrame:
    """Modelled rows at TP 1 priced by this study's own runs, at budgets where greedy and a
    speculative method were both priced (the speculation claim compares the two)."""
    if modelled.empty:
        return pd.DataFrame()
    rows = modelled.rows
    rows = rows[(rows["tensor_parallel_size"] == 1) & (rows["study"] == study)]
    keep = []
    for _, frame in rows.groupby(["model", "trace_set", "budget_tokens"]):
        if (frame["method"] == "baseline").any() and (frame["method"] != "baseline").any():
            keep.append(frame)
    return pd.concat(keep, ignore_index=True) if keep else pd.DataFrame()


def tp_table(table: pd.DataFrame) -> pd.DataFrame:
    """Greedy modelled rows, per model from one pricing study with several TP sizes (this study's
    first, else the first import), so every TP ratio compares runs of one study."""
    greedy = table[table["method"] == "baseline"]
    keep = []
    for _, frame in greedy.groupby("model"):
        studies = frame.assign(study=frame["priced_by"].str.split("/").str[0])
        sizes = studies.groupby("study")["tensor_parallel_size"].nunique()
        several = [s for s in studies["study"].unique() if sizes[s] > 1]
        if several:
            own = [s for s in several if not studies[studies["study"] == s]["priced_by"].str.contains("imported").any()]
            chosen = (own or several)[0]
            keep.append(frame[studies["study"] == chosen])
    return pd.concat(keep, ignore_index=True) if keep else table.head(0)


def figure_rows(table: pd.DataFrame, modelled_table: pd.DataFrame, study: str, claim: str) -> pd.DataFrame:
    """The rows the figure under a claim draws: the measured ones and the modelled ones that
    decided it (``speculation``: TP 1 priced by this study; ``tp``: ``tp_table``; ``all``)."""
    measured = table.assign(evidence=EVIDENCE_MEASURED) if not table.empty else table
    if modelled_table.empty:
        return measured
    if claim == "speculation":
        own = ~modelled_table["priced_by"].str.contains("imported")
        extra = modelled_table[(modelled_table["tensor_parallel_size"] == 1) & own]
    elif claim == "tp":
        extra = tp_table(modelled_table)
    else:
        extra = modelled_table
    return pd.concat([measured, extra], ignore_index=True)


def _relabel(verdict: Verdict, kind: str, note: str = "") -> Verdict:
    return replace(verdict, evidence=f"[{kind}{note}] {verdict.evidence}")


def _decided_by(verdict: Verdict, kind: str) -> str:
    """The evidence that decided: of a claim judged on measured and modelled series, only the kinds
    whose checks had an interval (a measured run of one problem decides nothing)."""
    if verdict.verdict == UNKNOWN:
        return "none"
    if " and " not in kind:  # one kind of evidence (a series may then name a trace set instead)
        return kind
    kinds = {MODELLED if "modelled" in check.series else MEASURED
             for check in verdict.checks if check.series and check.interval.known}
    return " and ".join(k for k in (MEASURED, MODELLED) if k in kinds) or kind


def check_all_claims(study: str, table: pd.DataFrame, rows: pd.DataFrame, modelled: Modelled,
                     modelled_table: pd.DataFrame, replay_sets: list[dict], *, host: str) -> pd.DataFrame:
    """Every claim of the registry; each from measured rows where they decide it, else from
    modelled rows or the real traces' grades. Returns claims.csv's frame: the claim's key and
    sentence, verdict, ``decided_by``, the answer per model, evidence, the deciding interval and
    ``host`` (``what_ran.measured_on``: where the timings were measured)."""
    decided: dict[str, tuple[Verdict | None, str]] = {}
    table, modelled_table = in_canonical_order(table), in_canonical_order(modelled_table)
    # 1. accuracy flattens. The tiny model's accuracy (random weights) is plumbing: real traces,
    # where the study replayed any, decide before it (the embedded default with public traces).
    real_models = real_weight_rows(table)
    verdict = claim_accuracy_flattens(real_models, rows) if not real_models.empty else None
    kind = MEASURED
    if verdict is None or verdict.verdict == UNKNOWN:
        accuracy, accuracy_rows = trace_accuracy(replay_sets, real_only=True)
        if not accuracy.empty:
            verdict, kind = claim_accuracy_flattens(accuracy, accuracy_rows), REAL_TRACES
            verdict = _relabel(verdict, REAL_TRACES, ": replayed traces graded at each budget")
        elif real_models.empty and not table.empty:
            verdict = claim_accuracy_flattens(table, rows)
    decided["accuracy_flattens"] = verdict, kind
    # 2. speculation: measured runs and, beside them, modelled rows at real-trace acceptance
    spec = speculation_rows(modelled, study)
    verdict = claim_speculation_faster(table, rows, spec) if not table.empty else None
    kind = MEASURED + (" and " + MODELLED if not spec.empty else "")
    if verdict is not None and not spec.empty:
        verdict = _relabel(verdict, kind, ": modelled = real traces priced by this study's step costs")
    decided["speculation_faster"] = verdict, kind
    # 3, 4. TP claims
    tp = tp_table(modelled_table) if not modelled_table.empty else pd.DataFrame()
    for key, claim in (("tp_diminishing", claim_tp_diminishing),
                       ("small_model_slower_with_tp", claim_small_model_slower_with_tp)):
        verdict = claim(table, rows) if not table.empty else None
        kind = MEASURED
        if (verdict is None or verdict.verdict == UNKNOWN) and not tp.empty:
            priced = ", ".join(sorted(tp["priced_by"].str.split("/").str[0].unique()))
            verdict, kind = claim(tp, modelled.rows), MODELLED
            verdict = _relabel(verdict, MODELLED, f": greedy step costs at several TP sizes from {priced}")
        decided[key] = verdict, kind
    # 5. compute-optimal vs system-optimal
    verdict = claim_compute_not_system_optimal(table, rows) if not table.empty else None
    kind = MEASURED
    if (verdict is None or verdict.verdict == UNKNOWN) and not modelled_table.empty:
        verdict, kind = claim_compute_not_system_optimal(modelled_table, modelled.rows), MODELLED
        plumbing = modelled_table["model"].isin(PLUMBING_MODELS).all()
        verdict = _relabel(verdict, MODELLED, ": the tiny model's own replayed runs (plumbing), latency from step costs"
                           if plumbing else ": real traces' accuracy, latency from step costs")
    decided["compute_not_system_optimal"] = verdict, kind
    records = []
    for entry in REGISTRY:
        verdict, kind = decided.get(entry.key, (None, "none"))
        verdict = verdict or Verdict(entry.key, UNKNOWN, "no complete runs")
        records.append({**verdict.record(), "decided_by": _decided_by(verdict, kind)})
    frame = pd.DataFrame(records, columns=["key", "claim", "verdict", "decided_by", "per_model", "evidence", "interval"])
    return frame.assign(measured_on=host)

