"""The landing page of a study, and the check that a rendered report carries no stray stderr.

``write_landing_page(study)`` writes ``outputs/reports/<study>/index.html``: the banner when the
numbers are plumbing (embedded default) or system-only, the paper's claims with verdicts and
evidence, the figures that answer its question, the key numbers, what ran (profile, models,
configurations, budgets, problems, repetitions) and on what (hardware, engine, kit versions,
commit), and links to each notebook's report and to the result files. Like 04_analysis it reads
result files only: the run folders (``store.load_study``, each ``run.json`` and ``segments.jsonl``),
00_setup's ``inventory.json``, 04_analysis's ``claims.csv``, ``table.csv`` and PNGs, the executed
notebooks, and the pipeline's ``chain.json``. One self-contained file: figures embedded, everything
else linked relatively. 04's files are verified against the checksums it recorded: one that fails is
named in a banner and not shown; so is every file the analysis left out (report/left_out.py).

``unexpected_stderr(notebook)`` lists the stderr stream outputs of an executed notebook; a clean
report has none (errors are error outputs, not stderr). Used by pipeline.py (after every run) and
the notebook tests; ``python -m tts_utils.report.landing STUDY`` rewrites a landing page by hand.
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import pandas as pd

from tts_utils.banners import PLUMBING_MODELS, PLUMBING_WARNING, RANDOM_WEIGHTS_WARNING, SYSTEM_ONLY_WARNING
from tts_utils.paths import figures_dir, reports_dir, study_dir
from tts_utils.report.claims import CLAIMS
from tts_utils.report.html import CSS, by_model_size, esc, html_fixed, html_number, html_table, link, read_csv_or_none
from tts_utils.report.left_out import LeftOut, analysis_file_problem, left_out_run, read_left_out, short
from tts_utils.report.modelled import damaged_replay, real_trace_sets
from tts_utils.report.pick import CONFIGURATIONS_FILE, pick_section
from tts_utils.report.what_ran import (
    RunInfo,
    at_a_glance_section,
    executed_notebooks,
    files_section,
    notebooks_section,
    on_what_section,
    run_infos,
    what_ran_section,
)
from tts_utils.speculation.replay_sets import current_replay_folders, replay_problem
from tts_utils.store import load_study, read_json
from tts_utils.study.plan import BATCHED_METHOD

# The figures that answer "are we scaling the right thing?", in reading order, with what each shows.
FIGURES = (
    ("accuracy_vs_budget", "Accuracy against output budget: what longer reasoning buys."),
    ("latency_vs_budget", "Latency against budget for each method and TP size: what it costs in time."),
    ("speculation_ratio", "Speculative over greedy latency at each budget, measured and modelled: the intervals "
                          "that decided the speculation verdict (below 1: speculation is faster)."),
    ("cost_vs_budget", "Cost per token against budget: what it costs in GPU-seconds."),
    ("accuracy_vs_latency", "Accuracy against latency, with the Pareto frontier: the configurations worth running."),
)
ACCURACY_FIGURES = {"accuracy_vs_budget", "accuracy_vs_latency", "accuracy_vs_cost"}
# Key numbers shown on the page (when present); table.csv holds every column.
KEY_COLUMNS = (
    ("model", "model"), ("weights", "weights"), ("configuration", "configuration"), ("budget_tokens", "budget (tokens)"),
    ("accuracy_strict", "strict accuracy"), ("mean_e2e_latency_s", "mean latency (s)"),
    ("mean_tpot_ms", "ms / token"), ("cost_gpu_s_per_token", "GPU-s / token"),
    ("usd_per_million_output_tokens", "$ / M tokens"), ("spec_acceptance_rate", "spec. acceptance"),
)
VERDICT_CLASSES = {"holds": "holds", "does not hold": "fails", "inconclusive": "open", "not enough data": "none"}



























def _banners(runs: list[RunInfo], notebooks: list[dict], claims_stale: bool, chain: dict,
             real_traces: list[str] = ()) -> list[str]:
    banners = []
    plumbing = any(run.identity.get("model") in PLUMBING_MODELS for run in runs)
    if plumbing and real_traces:
        banners.append('<div class="banner">EMBEDDED DEFAULT: a random-weight tiny model on CPU. Plumbing, not '
                       "science: every timing of the tiny model (latency, time to first token, time per token, cost, "
                       "step costs), its own accuracy and acceptance, and every verdict decided by them measure the "
                       "kit's plumbing, not reasoning or any real hardware's serving speed.</div>")
        banners.append('<div class="banner note">Real: accuracy by budget and n-gram acceptance of real model '
                       f"outputs ({esc(', '.join(real_traces))}), replayed by 03_spec: see \u201cReal reasoning "
                       "traces\u201d below; a verdict they decide says \u201creal traces\u201d. No timing on this "
                       "page is real.</div>")
    elif plumbing:
        banners.append(f'<div class="banner">{esc(PLUMBING_WARNING)} The verdicts below are about the '
                       "kit's plumbing, not the paper. No real traces were replayed (offline without a local "
                       "copy: set TTS_TRACES_DIR and TTS_TRACE_TOKENIZER, see the README).</div>")
    elif real_traces:
        banners.append('<div class="banner note">Real numbers here: accuracy by budget and n-gram acceptance of '
                       f"real model outputs ({esc(', '.join(real_traces))}), from 03_spec's replays. Timings are "
                       "this study's runs; rows marked modelled join the two.</div>")
    if any(run.identity.get("system_only") for run in runs):
        # With real traces the page does show accuracy: theirs, never the random-weight runs'.
        where = (" Accuracy on this page is the real traces' only." if real_traces else "")
        banners.append(f'<div class="banner">{esc(SYSTEM_ONLY_WARNING)}{esc(where)}</div>')
    random = by_model_size({run.identity.get("model", "?") for run in runs if run.identity.get("random_weights")})
    if random:
        banners.append(f'<div class="banner">{esc(RANDOM_WEIGHTS_WARNING.format(models=", ".join(random)))}</div>')
    failed = [nb["name"] for nb in notebooks if nb["failed"]]
    if failed:
        banners.append(f'<div class="banner">{esc(", ".join(failed))} failed: see its report below and '
                       "chain.log. Results shown are those on disk.</div>")
    if chain.get("outcome", "ok") != "ok" and not failed:
        banners.append(f'<div class="banner">The last chain did not finish: {esc(chain["outcome"])}</div>')
    if claims_stale:
        banners.append('<div class="banner note">A run finished after 04_analysis last ran: the verdicts and '
                       "figures may leave it out. Run <code>make analysis</code> again.</div>")
    return banners


def _checked_csv(study: str, name: str, problems: dict[str, str]) -> pd.DataFrame | None:
    """One of 04_analysis's sealed files (report/left_out.py), or None where it is absent or fails
    its check; then why goes to ``problems`` (the banner), and the page shows nothing of it."""
    if not (figures_dir(study) / name).exists():
        return None
    problem = analysis_file_problem(study, name)
    if problem:
        problems[name] = problem
        return None
    return read_csv_or_none(figures_dir(study) / name)


def _withheld(name: str) -> str:
    return f"<p>Not shown: {esc(name)} fails its check (see the banner above).</p>"


def _left_out_banners(study: str, results, problems: dict[str, str]) -> list[str]:
    """What the analysis left out (04's left_out.json, and what this page finds itself: runs that are
    unfinished or fail their checksums, damaged replays), and 04's files that fail their checks."""
    entries, problem = read_left_out(study)
    problems = [*problems.values(), *([problem] if problem else [])]
    entries = entries + [left_out_run(Path(path), reason) for path, reason in results.excluded]
    for folder in current_replay_folders(study, quiet=True):
        damage = replay_problem(folder)
        if damage:
            entries.append(damaged_replay(folder, damage))
    seen: set[str] = set()
    unique: list[LeftOut] = []
    for entry in entries:
        if short(entry.path) not in seen:
            seen.add(short(entry.path))
            unique.append(entry)
    banners = []
    if unique:
        items = "".join(f"<li>{esc(entry.line())}"
                        + (f' <span class="small">(verdicts: {esc(", ".join(entry.claims))})</span>' if entry.claims
                           else "") + "</li>" for entry in unique)
        banners.append(f'<div class="banner">Left out of the analysis ({len(unique)}): the verdicts, figures and '
                       "numbers on this page are decided without these files, and claims.csv's evidence says which "
                       f"verdicts lost them.<ul>{items}</ul></div>")
    if problems:
        items = "".join(f"<li>{esc(problem)}</li>" for problem in problems)
        banners.append('<div class="banner">Not shown: files of 04_analysis that fail their checks (no number is '
                       f"better than a wrong one).<ul>{items}</ul></div>")
    return banners


def _claims_section(claims: pd.DataFrame | None, figures: Path, base: Path) -> str:
    """Verdict, each model's answer and the deciding interval; the rule and the long evidence folded."""
    if claims is None or claims.empty:
        return "<p>04_analysis has not run for this study yet: no verdicts.</p>"
    headers = ["claim of the paper", "verdict", "per model", "deciding interval", "rule and evidence"]
    rows = []
    for row in claims.to_dict("records"):
        verdict = str(row.get("verdict", ""))
        entry = CLAIMS.get(str(row.get("key")))
        badge = f'<span class="verdict {VERDICT_CLASSES.get(verdict, "none")}">{esc(verdict)}</span>'
        decided = f' <span class="small">({esc(row["decided_by"])})</span>' if pd.notna(row.get("decided_by")) \
            and row.get("decided_by") != "none" else ""
        folded = (f"<details><summary>rule and evidence</summary><p>Rule: {esc(entry.rule if entry else 'not recorded')}"
                  f'</p><p class="evidence">{esc(row.get("evidence"))}</p></details>')
        rows.append([esc(row.get("claim")), badge + decided, f'<span class="evidence">{esc(_text(row, "per_model"))}</span>',
                     f'<span class="evidence">{esc(_text(row, "interval"))}</span>', folded])
    host = claims["measured_on"].dropna().iloc[0] if "measured_on" in claims and claims["measured_on"].notna().any() \
        else "not recorded (04_analysis ran before verdicts named their host)"
    return (html_table(headers, rows) + f'<p class="small">Timings measured on: {esc(host)}. A step without a '
            "draft is launch-bound on the host CPU, so the speculation verdict can differ on another host with the "
            "same GPU. Each verdict is decided by the numbers beside it "
            f"(rules in <code>tts_utils/report/claims.py</code>). File: {link(figures / 'claims.csv', base)}.</p>")


def _text(row: dict, column: str) -> str:
    """A claims.csv cell as text; empty where an older file lacks the column."""
    value = row.get(column)
    return "" if value is None or pd.isna(value) else str(value)


def _figures_section(figures: Path, base: Path, has_accuracy: bool) -> str:
    shown = []
    for name, caption in FIGURES:
        if name in ACCURACY_FIGURES and not has_accuracy:
            continue
        path = figures / f"{name}.png"
        if path.exists():
            data = base64.b64encode(path.read_bytes()).decode()
            shown.append(f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{esc(caption)} {link(path, base, 'PNG')}</figcaption></figure>")
    if not shown:
        return "<p>No figures yet: 04_analysis writes them.</p>"
    note = "" if has_accuracy else ("<p>No accuracy was measured (random weights), so only the latency and "
                                    "cost figures are shown.</p>")
    others = sorted(p for p in figures.glob("*.png") if p.stem not in {n for n, _ in FIGURES})
    more = f'<p class="small">More figures: {", ".join(link(p, base) for p in others)}.</p>' if others else ""
    return f'{note}<div class="figures">{"".join(shown)}</div>{more}'


def _real_traces_section(study: str, figures: Path, base: Path) -> str:
    """Real model outputs replayed by 03_spec: accuracy by budget and n-gram acceptance, per trace set."""
    rows, sets = [], []
    for folder in current_replay_folders(study, quiet=True):
        if replay_problem(folder):  # 04 says why it left it out
            continue
        meta = read_json(folder / "replay.json")
        model = meta["identity"]["model"]
        if model in PLUMBING_MODELS or meta.get("random_weights"):
            continue
        limit = meta["identity"].get("trace_limit")
        sets.append(f"<strong>{esc(model)}</strong>: {esc(meta['trace_set_name'])} ({meta['identity'].get('traces', '?')} "
                    f"traces{', the first ' + str(limit) + ' (trace_limit)' if limit else ''})")
        for entry in meta["summary"]:
            rows.append([esc(model), f"{entry['budget_tokens']:,}"] + [
                html_fixed(entry.get(key), spec) for key, spec in (
                    ("accuracy_strict", ".2f"), ("accuracy_lenient", ".2f"), ("acceptance_rate", ".3f"),
                    ("mean_acceptance_length", ".2f"), ("no_draft_step_fraction", ".1%"))])
    if not rows:
        return ""
    headers = ["model", "budget (tokens)", "strict accuracy", "lenient accuracy", "n-gram acceptance rate",
               "mean acceptance length", "steps without a draft"]
    picture = figures / "real_traces.png"
    figure = ""
    if picture.exists():
        data = base64.b64encode(picture.read_bytes()).decode()
        figure = (f'<figure><img alt="real_traces" src="data:image/png;base64,{data}"><figcaption>Real traces: strict '
                  f"accuracy by budget and n-gram acceptance per draft position. {link(picture, base, 'PNG')}"
                  "</figcaption></figure>")
    return (f"<p>Trace sets: {'; '.join(sets)}.</p>" + html_table(headers, rows, set(range(1, len(headers))))
            + '<p class="small">Each real output is cut at each budget and graded (strict: only an answer after '
            "the reasoning ended); the installed vLLM's own n-gram proposer is replayed on it with greedy "
            "verification (acceptance = accepted / proposed draft tokens). These measure real text, not time.</p>"
            + figure)




def _numbers_section(table: pd.DataFrame | None, figures: Path, base: Path) -> str:
    if table is None or table.empty:
        return "<p>No table yet: 04_analysis writes it.</p>"
    if "model" in table:
        order = {key: rank for rank, key in enumerate(by_model_size(table["model"].astype(str)))}
        table = table.sort_values("model", key=lambda keys: keys.astype(str).map(order), kind="stable")
    columns = [(c, label) for c, label in KEY_COLUMNS if c in table and not table[c].isna().all()]
    numeric = {i for i, (c, _) in enumerate(columns) if pd.api.types.is_numeric_dtype(table[c])}
    rows = []
    for record in table.to_dict("records"):
        cells = []
        for column, _ in columns:
            value = html_number(record[column])
            low, high = record.get(f"{column}_lo"), record.get(f"{column}_hi")
            if low is not None and high is not None and pd.notna(low) and pd.notna(high) and low != high:
                value += f' <span class="small">[{html_number(low)}, {html_number(high)}]</span>'
            cells.append(value)
        rows.append(cells)
    intervals = any(f"{c}_lo" in table for c, _ in columns)
    note = " Brackets: 95% interval." if intervals else ""
    return (html_table([esc(label) for _, label in columns], rows, numeric)
            + f'<p class="small">One row per model, configuration and budget.{note} Every column '
            f"({len(table.columns)}): {link(figures / 'table.csv', base)}.</p>")














def write_landing_page(study: str) -> Path:
    """Write ``reports/<study>/index.html`` from the study's result files; return its path."""
    base = reports_dir(study)
    base.mkdir(parents=True, exist_ok=True)
    results = load_study(study)
    runs = run_infos(study, results)
    figures = figures_dir(study)
    problems: dict[str, str] = {}  # 04's files that fail their checks: named in a banner, never shown
    claims, table = _checked_csv(study, "claims.csv", problems), _checked_csv(study, "table.csv", problems)
    inventory = read_json(study_dir(study) / "inventory.json") if (study_dir(study) / "inventory.json").exists() else {}
    chain = read_json(base / "chain.json") if (base / "chain.json").exists() else {}
    notebooks = executed_notebooks(study)
    # 04 names the runs behind its table; a complete run missing there came after it (or 04 failed).
    analysed = set(table["run_name"]) if table is not None and "run_name" in table else set()
    # Batched accuracy passes are never rows of the table (their latency is batched): not stale.
    claims_stale = bool(analysed) and any(run.name not in analysed for run in runs
                                          if run.identity.get("method") != BATCHED_METHOD)
    shown = _checked_csv(study, CONFIGURATIONS_FILE, problems)  # measured and modelled rows (04 §3a)
    pick_ok = not (figures / "pick.csv").exists() or _checked_csv(study, "pick.csv", problems) is not None
    shown = shown if shown is not None else table
    has_accuracy = shown is not None and "accuracy_strict" in shown and not shown["accuracy_strict"].isna().all()
    sections = [
        ("The paper's claims, re-tested here", _withheld("claims.csv") if "claims.csv" in problems
         else _claims_section(claims, figures, base)),
        ("Real reasoning traces", _real_traces_section(study, figures, base)),
        ("The system-optimal pick", pick_section(figures, lambda path: link(path, base)) if pick_ok
         else _withheld("pick.csv")),
        ("The figures that answer it", _figures_section(figures, base, has_accuracy)),
        ("Key numbers", _withheld("table.csv") if "table.csv" in problems else _numbers_section(table, figures, base)),
        ("What ran", what_ran_section(runs, results, chain)),
        ("On what", on_what_section(runs, inventory)),
        ("Notebook reports", notebooks_section(notebooks, base, chain)),
        ("Result files", files_section(study, base, runs, results)),
    ]
    body = "".join(f"<h2>{esc(title)}</h2>{content}" for title, content in sections if content)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Test-time scaling study: {esc(study)}</title><style>{CSS}</style></head>
<body><main>
<h1>Test-time scaling study: {esc(study)}</h1>
<p class="sub">Are We Scaling the Right Thing? A System Perspective on Test-Time Scaling (arXiv 2509.19645),
re-tested with this kit. Page written {esc(time.strftime("%Y-%m-%d %H:%M:%S %Z"))} from the study's result files.</p>
{"".join(_banners(runs, notebooks, claims_stale, chain, real_trace_sets(study)))}
{"".join(_left_out_banners(study, results, problems))}
{at_a_glance_section(runs)}
{body}
</main></body></html>
"""
    index = base / "index.html"
    index.write_text(page, encoding="utf-8")
    return index




def main(argv: list[str] | None = None) -> int:
    """``python -m tts_utils.report.landing STUDY``: rewrite a study's landing page."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tts_utils.report.landing STUDY", file=sys.stderr)
        return 2
    print(write_landing_page(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
