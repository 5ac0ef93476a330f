"""What a sweep notebook's runs show, in a few plain sentences computed from their summary rows.

``greedy_findings`` (01_greedy): per model, strict accuracy and mean latency from the smallest to the
largest budget, and whether the accuracy gained per budget step shrinks; ``tp_findings`` (02_tp): each
TP size's latency and cost per token over TP 1's; ``spec_findings`` (03_spec): speculative over greedy
latency at each budget, the engine's acceptance, and the real traces replayed. A sentence about a model
that is no real checkpoint says so in banners.py's words, and shows no accuracy. All are point
estimates of one notebook's runs; 04_analysis re-tests the paper's claims with intervals.
Used by notebook.py (``what_results_show``, the last section of 01-03).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from tts_utils.banners import (
    PLUMBING_MODELS,
    PLUMBING_NOTE,
    RANDOM_WEIGHTS,
    RANDOM_WEIGHTS_NOTE,
    SYSTEM_ONLY_NOTE,
)
from tts_utils.report.claims import claim
from tts_utils.report.html import by_model_size
from tts_utils.study.plan import BATCHED_METHOD, NOTEBOOK_METHODS

GREEDY = NOTEBOOK_METHODS["01_greedy"]
# The claims each sweep notebook's runs bear on (report/claims.py), named in its closing sentence.
NOTEBOOK_CLAIMS = {"01_greedy": ("accuracy_flattens",), "02_tp": ("tp_diminishing", "small_model_slower_with_tp"),
                   "03_spec": ("speculation_faster",)}
# With random weights greedy output loops, so n-gram drafts are almost always accepted.
LOOPING_NOTE = "random weights: greedy output loops, so drafts are almost always accepted: a best case"


def evidence_note(rows: pd.DataFrame) -> str:
    """banners.py's words for what a model's rows are: plumbing (the kit's tiny model), system-only,
    random weights, or "" for a real checkpoint."""
    if rows["model"].isin(PLUMBING_MODELS).any():
        return PLUMBING_NOTE
    if "system_only" in rows and rows["system_only"].astype(str).str.lower().eq("true").any():
        return SYSTEM_ONLY_NOTE
    if "weights" in rows and rows["weights"].eq(RANDOM_WEIGHTS).any():
        return RANDOM_WEIGHTS_NOTE
    return ""


def _label(model: str, what: str, note: str) -> str:
    return f"{model} {what}" + (f" [{note}]" if note else "")


def _by_budget(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values("budget_tokens").reset_index(drop=True)


def _accuracy(rows: pd.DataFrame) -> bool:
    """Whether ``rows`` (one configuration, a real checkpoint) carry a strict accuracy."""
    return not rows.empty and "accuracy_strict" in rows and rows["accuracy_strict"].notna().any()


def _span(rows: pd.DataFrame, column: str, number: str, unit: str = "") -> str:
    """``column`` at the smallest and the largest budget: "0.50 at 1,024 -> 0.80 at 16,384 tokens"."""
    rows = rows[rows[column].notna()]
    first, last = rows.iloc[0], rows.iloc[-1]
    text = f"{first[column]:{number}}{unit} at {int(first['budget_tokens']):,}"
    if len(rows) > 1:
        text += f" -> {last[column]:{number}}{unit} at {int(last['budget_tokens']):,}"
    return text + " tokens"


def _ends(rows: pd.DataFrame, column: str, number: str) -> str:
    """``column`` at the smallest and the largest budget, without the budgets: "1,024 -> 16,384"."""
    values = rows[column].dropna()
    return f"{values.iloc[0]:{number}}" + (f" -> {values.iloc[-1]:{number}}" if len(values) > 1 else "")


def _where_measured(summary: pd.DataFrame) -> str:
    """Where and on how many requests the rows were measured."""
    hardware = ", ".join(sorted(summary["hardware"].dropna().astype(str).unique())) or "unknown hardware"
    requests = ", ".join(str(n) for n in sorted(summary["num_requests"].dropna().astype(int).unique()))
    return f"Measured on {hardware}; {requests} requests per budget."


def closing(notebook: str) -> str:
    """The last sentence: these are point estimates; which claims 04_analysis re-tests."""
    sentences = "; ".join(f'"{claim(key).sentence}"' for key in NOTEBOOK_CLAIMS[notebook])
    return f"Point estimates of these runs; 04_analysis re-tests {sentences} with 95% intervals."


def _flattening(model: str, rows: pd.DataFrame) -> str:
    """How much strict accuracy the first and the last budget step gained (claim accuracy_flattens)."""
    rows = rows[rows["accuracy_strict"].notna()]
    if len(rows) < 3:
        return ""
    budgets, accuracy = rows["budget_tokens"].astype(int).tolist(), rows["accuracy_strict"].tolist()
    first, last = accuracy[1] - accuracy[0], accuracy[-1] - accuracy[-2]
    return (f"{model}: strict accuracy gained {first:+.2f} over the first budget step ({budgets[0]:,} -> {budgets[1]:,}) "
            f"and {last:+.2f} over the last ({budgets[-2]:,} -> {budgets[-1]:,}): gains "
            + ("flatten." if last < first else "do not flatten."))


def greedy_findings(summary: pd.DataFrame) -> list[str]:
    """01_greedy: per model, accuracy, latency, output length and cost from the smallest budget to the largest."""
    if summary.empty:
        return []
    lines = [_where_measured(summary)]
    for model in by_model_size(summary["model"]):
        rows = summary[summary["model"] == model]
        note = evidence_note(rows)
        latency = _by_budget(rows[(rows["method"] == GREEDY) & (rows["tensor_parallel_size"] == 1)])
        batched = _by_budget(rows[rows["method"] == BATCHED_METHOD])
        graded = latency if _accuracy(latency) else batched
        parts = []
        if not note and _accuracy(graded):
            parts.append(f"strict accuracy {_span(graded, 'accuracy_strict', '.2f')}"
                         + (" (batched accuracy pass)" if graded is batched else ""))
        if latency.empty:
            parts.append("no batch-1 latency (only the batched pass ran; its latency is batched)")
        else:
            growth = latency["mean_e2e_latency_s"].iloc[-1] / latency["mean_e2e_latency_s"].iloc[0]
            budgets = latency["budget_tokens"].iloc[-1] / latency["budget_tokens"].iloc[0]
            parts.append(f"mean latency {_span(latency, 'mean_e2e_latency_s', '.3g', ' s')}"
                         + (f" ({growth:.1f}x for {budgets:.0f}x the budget)" if len(latency) > 1 else ""))
            parts.append(f"mean output {_ends(latency, 'mean_output_tokens', ',.0f')} tokens")
            parts.append(f"cost {_ends(latency, 'cost_gpu_s_per_token', '.3g')} GPU-s per token")
        lines.append(f"{_label(model, 'greedy, TP 1', note)}: " + "; ".join(parts) + ".")
        if not note and _accuracy(graded):
            lines.append(_flattening(model, graded))
    return [line for line in lines if line] + [closing("01_greedy")]


def _per_size(values: list[float], sizes: list[int], unit: str = "") -> str:
    return ", ".join(f"{value:.2f}{unit} at TP {size}" for value, size in zip(values, sizes))


def tp_findings(summary: pd.DataFrame, skipped: Iterable[str] = ()) -> list[str]:
    """02_tp: per model, each TP size's mean latency and cost per token over TP 1's (averaged over
    budgets) and its efficiency (TP 1 latency / TP n latency / n: 1 is n GPUs n times faster)."""
    lines = [_where_measured(summary)] if not summary.empty else []
    for model in by_model_size(summary["model"]) if not summary.empty else []:
        rows = summary[(summary["model"] == model) & (summary["method"] == GREEDY)]
        note = evidence_note(rows)
        label = _label(model, "greedy", note)
        base = _by_budget(rows[rows["tensor_parallel_size"] == 1])
        sizes = sorted(int(n) for n in rows["tensor_parallel_size"].unique() if n > 1)
        if base.empty or not sizes:
            ran = ", ".join(str(int(n)) for n in sorted(rows["tensor_parallel_size"].unique()))
            lines.append(f"{label}: only TP {ran} ran, so there is nothing to compare"
                         + (" (no TP 1 run)." if base.empty else "."))
            continue
        latency, cost, accuracy_gap = [], [], []
        for size in sizes:
            pair = base.merge(rows[rows["tensor_parallel_size"] == size], on="budget_tokens", suffixes=("_1", "_n"))
            latency.append((pair["mean_e2e_latency_s_n"] / pair["mean_e2e_latency_s_1"]).mean())
            cost.append((pair["cost_gpu_s_per_token_n"] / pair["cost_gpu_s_per_token_1"]).mean())
            if not note and _accuracy(base):
                accuracy_gap.append((pair["accuracy_strict_n"] - pair["accuracy_strict_1"]).abs().max())
        efficiency = [1 / (ratio * size) for ratio, size in zip(latency, sizes)]
        slower = [size for ratio, size in zip(latency, sizes) if ratio > 1]
        verdict = (f"more GPUs are slower (TP {', '.join(map(str, slower))})" if slower
                   else "more GPUs are faster, by less than their number" if max(efficiency) < 1
                   else "more GPUs are faster")
        text = (f"{label}: mean latency over TP 1's {_per_size(latency, sizes, 'x')} (averaged over budgets): "
                f"{verdict}; efficiency {_per_size(efficiency, sizes)} (1 = n GPUs n times faster); "
                f"cost per token {_per_size(cost, sizes, 'x')}")
        if accuracy_gap:
            text += f"; strict accuracy within {max(accuracy_gap):.2f} of TP 1's at every budget"
        lines.append(text + ".")
    lines += [f"Skipped: {reason}." for reason in skipped]
    return lines + [closing("02_tp")] if lines else []


def _speculation(model: str, method: str, spec: pd.DataFrame, greedy: pd.DataFrame, note: str) -> str:
    label = _label(model, method, note)
    if greedy.empty:
        return (f"{label}: no greedy TP 1 run of {model} with these settings in this study (01_greedy makes it), "
                "so there is nothing to compare with.")
    pair = spec.merge(greedy, on="budget_tokens", suffixes=("", "_greedy"))
    if pair.empty:
        return f"{label}: the greedy TP 1 run shares no budget with it, so there is nothing to compare with."
    ratios = pair["mean_e2e_latency_s"] / pair["mean_e2e_latency_s_greedy"]
    each = ", ".join(f"{r:.2f}x at {int(b):,}" for r, b in zip(ratios, pair["budget_tokens"]))
    verdict = ("speculation is faster at every budget" if (ratios < 1).all()
               else "speculation is slower at every budget" if (ratios >= 1).all()
               else f"speculation is faster at {int((ratios < 1).sum())} of {len(ratios)} budgets")
    text = f"{label}: {method} / greedy mean latency {each} tokens: {verdict}"
    last = spec.iloc[-1]
    if pd.notna(last.get("spec_acceptance_rate")):
        text += (f"; the engine accepted {last['spec_acceptance_rate']:.2f} of drafted tokens, "
                 f"{last['spec_mean_acceptance_length']:.2f} tokens per verification step")
    acceptance = last.get("acceptance")
    if isinstance(acceptance, str) and acceptance != "engine":
        text += f" (acceptance {acceptance})"
    elif note in (PLUMBING_NOTE, SYSTEM_ONLY_NOTE):
        text += f" ({LOOPING_NOTE})"
    if not note and _accuracy(spec) and _accuracy(greedy):
        gap = (pair["accuracy_strict"] - pair["accuracy_strict_greedy"]).abs().max()
        text += f"; strict accuracy within {gap:.2f} of greedy's at every budget"
    return text + "."


def _replay(model: str, trace_set: str, rows: pd.DataFrame) -> str:
    rows = _by_budget(rows)
    plumbing = model in PLUMBING_MODELS
    random = "random_weights" in rows and rows["random_weights"].fillna(False).astype(bool).any()
    note = PLUMBING_NOTE if plumbing else RANDOM_WEIGHTS_NOTE if random else ""
    proxy = "proxy_of" in rows and rows["proxy_of"].notna().any()
    traces = int(rows["traces"].max()) if "traces" in rows and rows["traces"].notna().any() else None
    parts = []
    if not note and not proxy and _accuracy(rows):
        parts.append(f"strict accuracy {_span(rows, 'accuracy_strict', '.2f')}")
    if "acceptance_rate" in rows and rows["acceptance_rate"].notna().any():
        parts.append(f"n-gram acceptance rate {_span(rows, 'acceptance_rate', '.2f')}")
    if "tokens_per_step" in rows and rows["tokens_per_step"].notna().any():
        parts.append(f"{rows['tokens_per_step'].dropna().iloc[-1]:.2f} tokens per step at the largest budget")
    count = [f"{traces} traces"] if traces else []
    count += ["a proxy, so no grades"] if proxy else []
    what = f"traces {trace_set}" + (f" ({'; '.join(count)})" if count else "")
    return f"{_label(model, what, note)}, replayed: " + "; ".join(parts) + " (a replay measures acceptance, not time)."


def spec_findings(spec: pd.DataFrame, greedy: pd.DataFrame, replays: pd.DataFrame | None = None) -> list[str]:
    """03_spec: per model and speculative method, its mean latency over greedy's (TP 1, same
    budgets) at each budget and the engine's acceptance; then each replayed trace set's accuracy
    and n-gram acceptance by budget."""
    lines = [_where_measured(spec)] if not spec.empty else []
    for model in by_model_size(spec["model"]) if not spec.empty else []:
        rows = spec[(spec["model"] == model) & (spec["tensor_parallel_size"] == 1)]
        base = greedy[(greedy["model"] == model) & (greedy["method"] == GREEDY)
                      & (greedy["tensor_parallel_size"] == 1)] if not greedy.empty else greedy
        for method in sorted(rows["method"].unique()):
            lines.append(_speculation(model, method, _by_budget(rows[rows["method"] == method]), _by_budget(base),
                                      evidence_note(rows)))
    if replays is not None and not replays.empty:
        for (model, trace_set), rows in replays.groupby(["model", "trace_set"], sort=False):
            lines.append(_replay(model, trace_set, rows))
    return lines + [closing("03_spec")] if lines else []
