"""The system-optimal pick: which configuration reaches an accuracy fastest or cheapest, and which
is most accurate within a latency limit, with the configurations tied with it.

A configuration is one row of 04_analysis's ``configurations.csv`` (model, method, TP size, budget;
measured and modelled rows, each labelled by ``evidence``). It *reaches* an accuracy target when
its strict accuracy (point estimate) is at least the target, and *fits* a latency limit when its
mean end-to-end latency is at most the limit. The winner is the best on the objective (latency,
dollars per correct answer, or accuracy); every other eligible configuration the data cannot tell
from it is listed as tied. With request rows (04_analysis) that is a paired comparison over the
problems both ran: tied when the 95% interval of its ratio to the winner spans 1 (a configuration
23% faster on the same problems is not tied because two unpaired intervals overlap). Without rows
(the CLI reads configurations.csv only), or with fewer shared problems than an interval needs,
the unpaired rule is used: the two 95% intervals overlap.
Used by 04_analysis (table and figure), the landing page and
``python -m tts_utils pick --study S --accuracy 0.8`` (or ``--latency-s 10``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from tts_utils.cli import OneLineParser, run
from tts_utils.errors import ConfigError, CorruptResultError
from tts_utils.intervals import paired_ratio
from tts_utils.paths import figures_dir
from tts_utils.report.analysis import rows_of
from tts_utils.report.left_out import analysis_file_problem

ACCURACY_TARGETS = (0.5, 0.6, 0.7, 0.8, 0.9)
LATENCY_LIMITS_S = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
OBJECTIVES = {  # objective -> (column, lower is better)
    "fastest": ("mean_e2e_latency_s", True),
    "cheapest": ("usd_per_correct_answer", True),
    "most accurate": ("accuracy_strict", False),
}
# Equal on the objective: the next objective decides, then the name; never the order rows came in.
TIE_BREAKS = {"fastest": ("accuracy_strict", False), "cheapest": ("mean_e2e_latency_s", True),
              "most accurate": ("mean_e2e_latency_s", True)}
# How a configuration reaches an accuracy target: its point estimate, or the lower end of its 95% interval.
RULES = ("point", "lower")
CONFIGURATIONS_FILE = "configurations.csv"


def name(row: pd.Series) -> str:
    """model, method, TP and budget, and whether the row was measured or modelled."""
    method = "greedy" if row["method"] == "baseline" else row["method"]
    evidence = row.get("evidence", "measured")
    trace = f", {row['trace_set']}" if evidence == "modelled" and isinstance(row.get("trace_set"), str) else ""
    priced = row.get("priced_by")
    if evidence == "modelled" and isinstance(priced, str) and "imported" in priced:
        trace += f", {priced.split('/')[0]} step costs"
    return f"{row['model']} {method} TP{int(row['tensor_parallel_size'])} @{int(row['budget_tokens'])} [{evidence}{trace}]"


def _bounds(row: pd.Series, column: str) -> tuple[float, float]:
    low, high = row.get(f"{column}_lo", math.nan), row.get(f"{column}_hi", math.nan)
    value = float(row[column])
    return (value if pd.isna(low) else float(low)), (value if pd.isna(high) else float(high))


# objective -> the per-request statistic its paired ratio compares (dollars: GPU-s per correct answer
# times the row's price per GPU-hour, a constant).
PAIRED_STATISTICS = {"fastest": "mean_e2e_latency_s", "cheapest": "gpu_s_per_correct",
                     "most accurate": "accuracy_strict"}


def _tied(winner: pd.Series, row: pd.Series, objective: str, rows: pd.DataFrame | None) -> bool:
    """Whether the data cannot tell ``row`` from ``winner`` on ``objective``: paired over shared
    problems where ``rows`` has both, else by overlapping 95% intervals."""
    column = OBJECTIVES[objective][0]
    if rows is not None and not rows.empty:
        ratio = paired_ratio(rows_of(rows, row), rows_of(rows, winner), PAIRED_STATISTICS[objective])
        if ratio.known:
            scale = 1.0
            if objective == "cheapest":
                scale = float(row.get("usd_per_gpu_hour", 1.0)) / float(winner.get("usd_per_gpu_hour", 1.0))
            return ratio.low * scale <= 1.0 <= ratio.high * scale
    low, high = _bounds(winner, column)
    other_low, other_high = _bounds(row, column)
    return other_low <= high and other_high >= low


def best(eligible: pd.DataFrame, objective: str, rows: pd.DataFrame | None = None
         ) -> tuple[pd.Series | None, pd.DataFrame]:
    """The winner on one objective and the eligible rows tied with it (``_tied``)."""
    column, lower = OBJECTIVES[objective]
    second, second_lower = TIE_BREAKS[objective]
    eligible = eligible[eligible[column].notna()]
    if eligible.empty:
        return None, eligible
    ranked = eligible.assign(_name=[name(row) for _, row in eligible.iterrows()])
    ranked = ranked.sort_values([column, second, "_name"], ascending=[lower, second_lower, True], kind="stable")
    winner = eligible.loc[ranked.index[0]]
    tied = [index for index in ranked.index[1:] if _tied(winner, eligible.loc[index], objective, rows)]
    return winner, eligible.loc[tied]  # in ranked order: objective, tie break, name


def _entry(goal: str, target: float, objective: str, winner: pd.Series | None, tied: pd.DataFrame) -> dict:
    column = OBJECTIVES[objective][0]
    if winner is None:
        return {"goal": goal, "target": target, "objective": objective, "pick": "none reaches it", "metric": column,
                "value": math.nan, "value_lo": math.nan, "value_hi": math.nan, "evidence": "", "ties": 0,
                "tied_with": ""}
    low, high = _bounds(winner, column)
    return {"goal": goal, "target": target, "objective": objective, "pick": name(winner), "metric": column,
            "value": float(winner[column]), "value_lo": low, "value_hi": high,
            "evidence": winner.get("evidence", "measured"), "ties": len(tied),
            "tied_with": "; ".join(name(row) for _, row in tied.iterrows())}


def once_each(table: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration and trace set: a study's own pricing of a modelled configuration
    wins over an imported pricing of the same one, so that a configuration is never tied with itself."""
    if "priced_by" not in table:
        return table
    keys = [key for key in ("model", "method", "tensor_parallel_size", "budget_tokens", "evidence", "trace_set")
            if key in table]
    imported = table["priced_by"].fillna("").astype(str).str.contains("imported")
    return table.assign(_imported=imported).sort_values("_imported", kind="stable").drop_duplicates(keys).drop(
        columns="_imported").sort_index()


def reaches(table: pd.DataFrame, target: float, rule: str = "point") -> pd.DataFrame:
    """Configurations whose strict accuracy reaches ``target``: by point estimate, or (rule lower) by
    the lower end of the 95% interval."""
    column = "accuracy_strict_lo" if rule == "lower" and "accuracy_strict_lo" in table else "accuracy_strict"
    return table[table[column] >= target]


def for_accuracy(table: pd.DataFrame, target: float, rule: str = "point", rows: pd.DataFrame | None = None
                 ) -> list[dict]:
    """The fastest and the cheapest (dollars per correct answer) configuration reaching ``target``."""
    eligible = reaches(table, target, rule)
    return [_entry("strict accuracy >=", target, objective, *best(eligible, objective, rows))
            for objective in ("fastest", "cheapest")]


def for_latency(table: pd.DataFrame, limit_s: float, rows: pd.DataFrame | None = None) -> list[dict]:
    """The most accurate configuration whose mean latency per request is within ``limit_s``."""
    eligible = table[(table["mean_e2e_latency_s"] <= limit_s) & table["accuracy_strict"].notna()]
    return [_entry("latency per request <= s", limit_s, "most accurate", *best(eligible, "most accurate", rows))]


def pick_table(table: pd.DataFrame, targets=ACCURACY_TARGETS, limits=LATENCY_LIMITS_S, rule: str = "point",
               rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every accuracy target and latency limit with its picks and ties (only rows with accuracy).
    ``rows``: the request rows behind the table (measured and modelled), for paired ties."""
    table = once_each(table[table["accuracy_strict"].notna()]) if "accuracy_strict" in table else table.head(0)
    if table.empty:
        return pd.DataFrame()
    if "usd_per_correct_answer" not in table:
        table = table.assign(usd_per_correct_answer=math.nan)
    entries = ([e for t in targets for e in for_accuracy(table, t, rule, rows)]
               + [e for s in limits for e in for_latency(table, s, rows)])
    return pd.DataFrame(entries)


def pick_figure(picks: pd.DataFrame, path: Path):
    """Left: latency of the fastest configuration per accuracy target; right: accuracy of the most
    accurate per latency limit; each point names its pick, bars are its 95% interval."""
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, objective, x_label, y_label in ((left, "fastest", "strict accuracy target", "mean latency per request (s)"),
                                            (right, "most accurate", "latency limit per request (s, log)",
                                             "strict accuracy of the pick")):
        frame = picks[(picks["objective"] == objective) & picks["value"].notna()]
        for evidence, marker in (("measured", "o"), ("modelled", "s")):
            part = frame[frame["evidence"] == evidence]
            if part.empty:
                continue
            ax.errorbar(part["target"], part["value"], yerr=[(part["value"] - part["value_lo"]).clip(lower=0),
                                                             (part["value_hi"] - part["value"]).clip(lower=0)],
                        fmt=marker, capsize=3, label=f"{evidence} pick")
        for row in frame.itertuples():
            tie = f" (+{row.ties} tied)" if row.ties else ""
            ax.annotate(row.pick.split(" [")[0] + tie, (row.target, row.value), fontsize=7, rotation=20,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        if objective == "most accurate":
            ax.set_xscale("log")
        if not frame.empty:
            ax.legend(fontsize="small")
    figure.suptitle("The system-optimal pick: fastest configuration per accuracy target, most accurate per "
                    "latency limit\n(bars: 95% bootstrap interval over problems; modelled = real traces priced by "
                    "measured step costs)", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return figure


def pick_section(figures: Path, link) -> str:
    """The landing page's pick: one line per accuracy target and latency limit, ties counted."""
    from html import escape

    path = figures / "pick.csv"
    if not path.exists():
        return "<p>No pick: 04_analysis found no configuration with accuracy.</p>"
    picks = pd.read_csv(path)
    lines = []
    for row in picks.itertuples():
        unit = " s" if "latency" in row.goal else ""
        value = "" if pd.isna(row.value) else f": {row.metric} {row.value:.4g} [{row.value_lo:.4g}, {row.value_hi:.4g}]"
        tie = f" (tied: {escape(str(row.tied_with))})" if row.ties else ""
        lines.append(f"<li>{escape(row.objective)} with {escape(row.goal.replace(' s', ''))} {row.target:g}{unit}: "
                     f"<b>{escape(str(row.pick))}</b>{escape(value)}{tie}</li>")
    image = figures / "pick.png"
    figure = ""
    if image.exists():
        import base64

        figure = f'<figure><img alt="pick" src="data:image/png;base64,{base64.b64encode(image.read_bytes()).decode()}"></figure>'
    return (f"<ul>{''.join(lines)}</ul>{figure}<p class=\"small\">A configuration reaches a target by its point "
            "estimate. Ties: configurations the data cannot tell from the pick (paired over the problems both "
            "ran: the 95% interval of their ratio spans 1; unpaired overlap where too few problems are shared); "
            "equal values go to the next objective, then the name, never to row order. [modelled] = real traces priced by measured step costs. Files: {link(path)}. "
            "Ask it directly: <code>python -m tts_utils pick --study STUDY --accuracy 0.8</code>.</p>")


def load_configurations(study: str) -> pd.DataFrame:
    """04_analysis's configurations.csv for a study, verified against the checksum 04 recorded
    (ConfigError if 04 has not written it, CorruptResultError if it fails its check: never a pick
    from an edited file)."""

    path = figures_dir(study) / CONFIGURATIONS_FILE
    if not path.exists():
        raise ConfigError(f"no {CONFIGURATIONS_FILE} for study {study!r} at {path}: run 04_analysis first")
    problem = analysis_file_problem(study, CONFIGURATIONS_FILE)
    if problem:
        raise CorruptResultError(f"no pick: {problem}")
    return pd.read_csv(path)


def _print(entries: list[dict]) -> None:
    for entry in entries:
        print(f"{entry['objective']} with {entry['goal'].replace(' s', '')} {entry['target']:g}"
              f"{' s' if 'latency' in entry['goal'] else ''}: {entry['pick']}")
        if not math.isnan(entry["value"]):
            print(f"  {entry['metric']} = {entry['value']:.4g} [{entry['value_lo']:.4g}, {entry['value_hi']:.4g}]")
        for tie in filter(None, entry["tied_with"].split("; ")):
            print(f"  tied (95% intervals overlap; 04_analysis pairs them over shared problems): {tie}")


def main(argv: list[str] | None = None) -> int:
    """``python -m tts_utils pick --study S --accuracy 0.8`` or ``--latency-s 10``."""
    parser = OneLineParser(prog="python -m tts_utils pick", description=main.__doc__)
    parser.add_argument("--study", required=True, help="a study 04_analysis has analysed")
    goal = parser.add_mutually_exclusive_group(required=True)
    goal.add_argument("--accuracy", type=float, help="strict accuracy target in (0, 1]")
    goal.add_argument("--latency-s", type=float, help="latency limit per request in seconds (> 0)")
    parser.add_argument("--rule", choices=RULES, default="point",
                        help="a configuration reaches --accuracy by its point estimate, or by its interval's lower end")
    args = parser.parse_args(argv)
    return run(lambda: _pick(args))


def _pick(args) -> None:
    """The pick for ``main``'s arguments, printed; a ConfigError for bad input."""
    if args.accuracy is not None and not 0 < args.accuracy <= 1:
        raise ConfigError(f"--accuracy must be in (0, 1], got {args.accuracy}")
    if args.latency_s is not None and not args.latency_s > 0:
        raise ConfigError(f"--latency-s must be positive, got {args.latency_s}")
    table = once_each(load_configurations(args.study))
    table = table[table["accuracy_strict"].notna()]
    if table.empty:
        raise ConfigError(f"study {args.study!r} has no configuration with accuracy (random weights and no "
                          "trace sets): nothing to pick from")
    if "usd_per_correct_answer" not in table:
        table = table.assign(usd_per_correct_answer=math.nan)
    _print(for_accuracy(table, args.accuracy, args.rule) if args.accuracy is not None
           else for_latency(table, args.latency_s))


if __name__ == "__main__":
    raise SystemExit(main())
