"""The figures of 04_analysis, drawn with seaborn from ``analysis.configuration_table``.

Each function returns the figure and saves it as PNG under ``figures_dir(study)``; axes carry
units, titles state the finding (or the verdict that decided it). Used by 04_analysis.
"""

from __future__ import annotations

from pathlib import Path

# No backend is forced: kernels (JupyterLab, papermill) draw inline, so each figure shows in the
# report; plain scripts without a display fall back to Agg by themselves.
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tts_utils.analysis import pareto_front
from tts_utils.models import get_model

sns.set_theme(style="whitegrid", context="notebook")


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
    long = frame.melt(id_vars=["model", "budget_tokens"], value_vars=["accuracy_strict", "accuracy_lenient"],
                      var_name="rule", value_name="accuracy")
    long["rule"] = long["rule"].str.replace("accuracy_", "", regex=False)
    grid = sns.relplot(data=long, x="budget_tokens", y="accuracy", hue="model", style="rule", kind="line",
                       marker="o", height=4, aspect=1.5)
    grid.set_axis_labels("output budget (tokens, log2)", "accuracy (fraction correct)")
    _log2_budget_axis(grid.axes.flat)
    grid.figure.suptitle(title, y=1.03)
    return _save(grid, path)


def metric_vs_budget(table: pd.DataFrame, metric: str, label: str, title: str, path: Path):
    """A latency or cost metric against budget, one line per configuration, one panel per model."""
    models = sorted(table["model"].unique(), key=lambda key: get_model(key).params_billion)
    grid = sns.relplot(data=table, x="budget_tokens", y=metric, hue="configuration", col="model", col_order=models,
                       kind="line", marker="o", height=3.6, aspect=1.2, facet_kws={"sharey": False})
    grid.set_axis_labels("output budget (tokens, log2)", label)
    _log2_budget_axis(grid.axes.flat)
    grid.figure.suptitle(title, y=1.04)
    return _save(grid, path)


def accuracy_vs_cost(table: pd.DataFrame, cost: str, label: str, title: str, path: Path):
    """Accuracy against a system cost for every configuration; the Pareto frontier as a line."""
    if table["accuracy_strict"].isna().all():
        return _no_accuracy(title, path)
    frame = table.copy()
    frame["pareto"] = pareto_front(frame, cost, "accuracy_strict")
    figure, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.scatterplot(data=frame, x=cost, y="accuracy_strict", hue="model", style="configuration",
                    size="budget_tokens", sizes=(30, 160), ax=ax)
    front = frame[frame["pareto"]].sort_values(cost)
    if not front.empty:
        ax.plot(front[cost], front["accuracy_strict"], color="black", linewidth=1, label="Pareto frontier")
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("strict accuracy (fraction correct)")
    ax.set_title(title)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    return _save(figure, path)
