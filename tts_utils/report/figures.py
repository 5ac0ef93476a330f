"""The figures of 04_analysis, drawn with seaborn from ``analysis.configuration_table``.

Each function returns the figure and saves it as PNG under ``figures_dir(study)``; axes carry
units, titles state the finding (or the verdict that decided it). Every figure draws the table's 95%
bootstrap intervals (``<metric>_lo`` / ``_hi``) as bands or error bars, and says so. Used by 04_analysis.
"""

from __future__ import annotations

import math
from pathlib import Path

# No backend is forced: kernels (JupyterLab, papermill) draw inline, so each figure shows in the
# report; plain scripts without a display fall back to Agg by themselves.
import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np
import pandas as pd
import seaborn as sns

from tts_utils.banners import PLUMBING_MODELS
from tts_utils.models import get_model
from tts_utils.report.analysis import accuracy_curves, pareto_front

sns.set_theme(style="whitegrid", context="notebook")
INTERVAL_NOTE = "shaded: 95% bootstrap interval over problems"


def _bounds(frame: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series]:
    """The interval columns of a metric, or the metric itself where there is none (nothing drawn)."""
    low = frame[f"{metric}_lo"] if f"{metric}_lo" in frame else frame[metric]
    high = frame[f"{metric}_hi"] if f"{metric}_hi" in frame else frame[metric]
    return low.fillna(frame[metric]), high.fillna(frame[metric])


def _line_with_band(x: str, y: str, data: pd.DataFrame, color=None, label=None, linestyle="-", ax=None, **_):
    """One line with markers and its interval as a band (FacetGrid.map_dataframe or direct)."""
    ax = ax or plt.gca()
    frame = data.sort_values(x)
    low, high = _bounds(frame, y)
    ax.plot(frame[x], frame[y], marker="o", color=color, label=label, linestyle=linestyle)
    ax.fill_between(frame[x], low, high, color=color, alpha=0.2, linewidth=0)


def _save(grid_or_fig, path: Path):
    figure = getattr(grid_or_fig, "figure", grid_or_fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return figure


def _log2_budget_axis(axes) -> None:
    for ax in axes:
        ax.set_xscale("log", base=2)


def _no_accuracy(title: str, path: Path):
    """System-only studies have no accuracy: say so in the figure instead of drawing nothing."""
    figure, ax = plt.subplots(figsize=(7.5, 3))
    ax.axis("off")
    ax.text(0.5, 0.5, "No accuracy in this study:\nsystem-only runs use random weights.", ha="center",
            va="center", fontsize=16)
    ax.set_title(title)
    return _save(figure, path)


def accuracy_vs_budget(table: pd.DataFrame, title: str, path: Path):
    """Strict and lenient accuracy of the baseline at TP=1, per model."""
    if table["accuracy_strict"].isna().all():
        return _no_accuracy(title, path)
    frame = table[(table["method"] == "baseline") & (table["tensor_parallel_size"] == 1)]
    frame = frame.assign(curve=accuracy_curves(frame))
    curves = sorted(frame["curve"].unique(), key=lambda key: (get_model(key.split(" ")[0]).params_billion, key))
    figure, ax = plt.subplots(figsize=(7.5, 4.5))
    for curve, color in zip(curves, sns.color_palette(n_colors=max(1, len(curves)))):
        for rule, linestyle in (("strict", "-"), ("lenient", "--")):
            _line_with_band("budget_tokens", f"accuracy_{rule}", frame[frame["curve"] == curve], color=color,
                            label=f"{curve} {rule}", linestyle=linestyle, ax=ax)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("output budget (tokens, log2)")
    ax.set_ylabel("accuracy (fraction correct)")
    ax.set_title(f"{title}\n({INTERVAL_NOTE})", fontsize="medium")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    return _save(figure, path)


def metric_vs_budget(table: pd.DataFrame, metric: str, label: str, title: str, path: Path):
    """A latency or cost metric against budget, one line per configuration, one panel per model."""
    models = sorted(table["model"].unique(), key=lambda key: get_model(key).params_billion)
    grid = sns.FacetGrid(table, col="model", col_order=models, hue="configuration", height=3.6, aspect=1.2,
                         sharey=False)
    grid.map_dataframe(_line_with_band, "budget_tokens", metric)
    grid.add_legend()
    grid.set_axis_labels("output budget (tokens, log2)", label)
    _log2_budget_axis(grid.axes.flat)
    grid.figure.suptitle(f"{title}\n({INTERVAL_NOTE})", y=1.08)
    return _save(grid, path)


def ratio_vs_budget(ratios: pd.DataFrame, title: str, path: Path):
    """The speculation verdict's own numbers (``analysis.speculation_ratios``): spec/greedy latency
    per budget with its interval, one panel per model, measured and modelled series labelled; below
    the line at 1 speculation is faster. Without comparisons it draws nothing and returns None."""
    if ratios.empty:
        return None
    models = sorted(ratios["model"].unique(), key=lambda key: get_model(key).params_billion)
    figure, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.8), squeeze=False)
    series = list(dict.fromkeys(ratios["series"]))
    colors = dict(zip(series, sns.color_palette(n_colors=len(series))))
    for ax, model in zip(axes.flat, models):
        for name, frame in ratios[ratios["model"] == model].groupby("series", sort=False):
            frame = frame.sort_values("budget_tokens")
            low, high = _bounds(frame, "ratio")
            ax.errorbar(frame["budget_tokens"], frame["ratio"], yerr=[frame["ratio"] - low, high - frame["ratio"]],
                        marker="o" if frame["evidence"].iloc[0] == "measured" else "s", capsize=3,
                        color=colors[name], label=name,
                        linestyle="-" if frame["evidence"].iloc[0] == "measured" else "--")
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_title(f"model = {model}", fontsize="medium")
        ax.set_xlabel("output budget (tokens, log2)")
    axes.flat[0].set_ylabel("speculative / greedy latency\n(below 1: speculation faster)")
    _log2_budget_axis(axes.flat)
    legend = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    figure.legend(legend.values(), legend.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.9), fontsize="small")
    figure.suptitle(f"{title}\n(bars: 95% bootstrap interval over problems; a series without bars has one problem)",
                    y=1.06)
    figure.tight_layout()
    return _save(figure, path)


def accuracy_vs_cost(table: pd.DataFrame, cost: str, label: str, title: str, path: Path):
    """Accuracy against a system cost for every configuration; the Pareto frontier as a line."""
    if table["accuracy_strict"].isna().all():
        return _no_accuracy(title, path)
    frame = table.copy()
    frame["pareto"] = pareto_front(frame, cost, "accuracy_strict")
    figure, ax = plt.subplots(figsize=(7.5, 4.5))
    cost_low, cost_high = _bounds(frame, cost)
    accuracy_low, accuracy_high = _bounds(frame, "accuracy_strict")
    ax.errorbar(frame[cost], frame["accuracy_strict"], fmt="none", ecolor="grey", alpha=0.6, linewidth=1, zorder=1,
                xerr=[(frame[cost] - cost_low).clip(lower=0), (cost_high - frame[cost]).clip(lower=0)],
                yerr=[(frame["accuracy_strict"] - accuracy_low).clip(lower=0),
                      (accuracy_high - frame["accuracy_strict"]).clip(lower=0)])
    sns.scatterplot(data=frame, x=cost, y="accuracy_strict", hue="model", style="configuration",
                    size="budget_tokens", sizes=(30, 160), ax=ax)
    front = frame[frame["pareto"]].sort_values(cost)
    if not front.empty:
        ax.plot(front[cost], front["accuracy_strict"], color="black", linewidth=1, label="Pareto frontier")
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("strict accuracy (fraction correct)")
    ax.set_title(f"{title}\n(bars: 95% bootstrap interval over problems)", fontsize="medium")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    return _save(figure, path)


def replay_figures(replays: pd.DataFrame, out: Path) -> None:
    """Real-trace figures: accuracy by budget and n-gram acceptance per draft position (the tiny
    model's own replayed runs are left out when real models' traces are there: plumbing)."""
    real = replays[~replays["model"].isin(PLUMBING_MODELS)]
    replays = real if not real.empty else replays
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    sets_per_model = replays.groupby("model")["trace_set"].nunique()
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, ((model, trace_set), frame) in enumerate(replays.groupby(["model", "trace_set"])):
        label = model if sets_per_model[model] == 1 else f"{model} ({trace_set})"
        color = palette[index % len(palette)]  # one colour per trace set in both panels
        frame = frame.sort_values("budget_tokens")
        if "accuracy_strict" in frame and frame["accuracy_strict"].notna().any():  # a proxy set has no grades
            left.plot(frame["budget_tokens"], frame["accuracy_strict"], marker="o", label=label, color=color)
        last = frame.iloc[-1]
        rates = [last[c] for c in sorted(c for c in frame if c.startswith("acceptance_pos_"))]
        right.plot(range(1, len(rates) + 1), rates, marker="o", label=f"{label} @ {int(last['budget_tokens'])}",
                   color=color)
    left.set_xscale("log", base=2)
    left.set_xlabel("output budget (tokens, log2)")
    left.set_ylabel("strict accuracy (fraction correct)")
    left.set_title("Real traces: accuracy by budget")
    right.set_xlabel("draft position")
    right.set_ylabel("accepted (fraction of drafts)")
    right.set_title("Real traces: n-gram acceptance per position")
    for ax in (left, right):
        ax.legend(fontsize="small")
    _save(figure, out / "real_traces.png")


def break_even_figure(frame: pd.DataFrame, out: Path):
    """Per model: ms per token against mean tokens per verified step, with plain decoding, the
    break-even point and the real traces' n-gram point."""
    models = sorted(frame["model"].unique(), key=lambda key: get_model(key).params_billion)
    figure, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    lengths = np.linspace(1.0, 6.0, 60)  # up to k + 1 for the paper's k = 5
    for ax, model in zip(axes[0], models):
        for row in frame[frame["model"] == model].itertuples():
            ax.plot(lengths, row.draft_step_ms / lengths, label=f"{row.method} (every step drafted)")
            ax.axvline(row.break_even_tokens_per_step, color="grey", linestyle=":",
                       label=f"break-even {row.break_even_tokens_per_step:.2f} tokens/step")
            if not math.isnan(getattr(row, "real_ms_per_token", math.nan)):
                ax.scatter([row.real_tokens_per_step], [row.real_ms_per_token], color="red", zorder=3,
                           label=f"real traces ({row.real_no_draft_fraction:.0%} steps without a draft)")
        ax.axhline(frame[frame["model"] == model]["plain_step_ms"].iloc[0], color="black", label="plain decoding")
        ax.set_xlabel("mean tokens per step (accepted + 1)")
        ax.set_ylabel("ms per output token")
        ax.set_title(model)
        ax.legend(fontsize="x-small")
    figure.suptitle("How good must speculation be? Below the black line it pays off", y=1.03)
    return _save(figure, out / "break_even.png")


def break_even_curves(frame: pd.DataFrame, table: pd.DataFrame, out: Path):
    """The break-even sweep (``acceptance_sweep.curves``), one panel per model: ms per token against
    the measured mean acceptance length per method (band: 95% interval over requests), plain
    decoding as a black line, each break-even as a dotted line, the real traces' n-gram point."""
    models = sorted(frame["model"].unique(), key=lambda key: get_model(key).params_billion)
    methods = sorted(frame["method"].unique())
    colors = dict(zip(methods, sns.color_palette(n_colors=max(1, len(methods)))))
    figure, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 6.0), squeeze=False)
    findings = []
    for ax, model in zip(axes[0], models):
        entries = table[table["model"] == model] if not table.empty else table
        for method in methods:
            points = frame[(frame["model"] == model) & (frame["method"] == method)]
            if points.empty:
                continue
            _line_with_band("measured_acceptance_length", "ms_per_token", points, color=colors[method],
                            label=f"{method} ({len(points)} points)", ax=ax)
            entry = entries[entries["method"] == method]
            if entry.empty:
                continue
            entry = entry.iloc[0]
            if not math.isnan(entry["break_even_length"]):
                ax.axvline(entry["break_even_length"], color=colors[method], linestyle=":")
                ax.annotate(f"break-even {entry['break_even_length']:.2f}", (entry["break_even_length"], 0.03),
                            xycoords=("data", "axes fraction"), xytext=(3, 0), textcoords="offset points",
                            rotation=90, va="bottom", fontsize="x-small", color=colors[method])
                findings.append(f"{model} {method.split('-')[0]} {entry['break_even_length']:.2f}")
            real_ms = entry.get("real_trace_ms_per_token", math.nan)
            if not pd.isna(real_ms):
                ax.scatter([entry["real_trace_length"]], [real_ms], marker="*", s=220, color="red", zorder=4,
                           edgecolor="black", label=f"real traces @{entry['real_trace_budget_tokens']:.0f}: "
                           f"{entry['real_trace_length']:.2f} tokens/step\n({entry['real_trace_no_draft_fraction']:.0%} "
                           "of steps without a draft, counted as 1)")
            elif method.startswith("ngram"):
                ax.plot([], [], marker="*", color="red", linestyle="none", label="no real traces of this model")
        plain = entries["plain_ms_per_token"].dropna() if not entries.empty else entries
        if len(plain):
            ax.axhline(plain.iloc[0], color="black", linewidth=1.2, label=f"plain decoding {plain.iloc[0]:.2f} ms/token")
        else:
            ax.plot([], [], color="black", label="no plain decoding run")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 3.0, 5.0)))
        ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize="x-small")
        ax.set_xlabel("measured mean acceptance length\n(tokens per drafted step)")
        ax.set_ylabel("ms per output token (log)")
        ax.set_title(model)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2))
    finding = f": break-even at {', '.join(findings)}" if findings else ""
    figure.suptitle(f"Below the black line speculation pays{finding}\n(synthetic acceptance; band: 95% interval "
                    "over requests, none with one request per point)", y=1.0, fontsize="medium")
    return _save(figure, out / "break_even_curves.png")
