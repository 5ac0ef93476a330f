"""What a reader sees: the landing page, clean reports (no stray stderr), readable tables, one warning."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tts_utils import data, progress
from tts_utils.notebook import REPORT_DIR_VARIABLE, LinkedTable
from tts_utils.paths import REPO_ROOT, reports_dir
from tts_utils.report.landing import write_landing_page
from tts_utils.report.what_ran import executed_notebooks, unexpected_stderr
from tts_utils.store import write_sealed

REFERENCE = REPO_ROOT / "reference_results"


def _notebook_with_outputs() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("# title"),
        new_code_cell("print(1)", outputs=[new_output("stream", name="stdout", text="1\n")]),
        new_code_cell("import warnings", outputs=[
            new_output("stream", name="stderr", text="/x/tqdm/auto.py:21: TqdmWarning: IProgress not found.\n"),
            new_output("display_data", data={"text/plain": "table"}),
        ]),
        new_code_cell("bar", outputs=[new_output("stream", name="stderr", text="\n")]),
        new_code_cell("1/0", outputs=[new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                                 traceback=["Traceback ..."])]),
    ])


def test_unexpected_stderr_lists_each_stderr_stream_and_nothing_else() -> None:
    notebook = _notebook_with_outputs()
    assert unexpected_stderr(notebook) == ["cell 2: /x/tqdm/auto.py:21: TqdmWarning: IProgress not found.",
                                           "cell 3: (blank line)"]
    assert unexpected_stderr(notebook, expected=[r"TqdmWarning", r"^\s*$"]) == []
    clean = new_notebook(cells=[new_code_cell("x", outputs=[new_output("stream", name="stdout", text="ok\n")])])
    assert unexpected_stderr(clean) == []


@pytest.fixture
def reference_study(outputs_dir: Path) -> str:
    """The H200 system-only reference results, copied into this test's outputs folder."""
    for part in ("runs", "figures"):
        shutil.copytree(REFERENCE / part, outputs_dir / part)
    return "h200-system"


def test_landing_page_answers_from_result_files(reference_study: str, outputs_dir: Path) -> None:
    notebook = _notebook_with_outputs()
    notebook.metadata["papermill"] = {"duration": 12.5, "end_time": "2026-11-28T17:00:00", "exception": None}
    reports_dir(reference_study).mkdir(parents=True)
    nbformat.write(notebook, reports_dir(reference_study) / "04_analysis.ipynb")

    page = write_landing_page(reference_study).read_text()

    assert "SYSTEM-ONLY MODE" in page and "EMBEDDED DEFAULT" not in page
    claims = pd.read_csv(REFERENCE / "figures" / reference_study / "claims.csv")
    for claim, verdict in zip(claims["claim"], claims["verdict"]):
        assert re.search(rf"{re.escape(claim)}</td><td><span class=\"verdict \w+\">{verdict}</span>", page)
    # Latency and cost figures embedded; the accuracy ones left out (no accuracy with random weights).
    assert page.count("data:image/png;base64,") == 2 and 'alt="latency_vs_budget"' in page
    assert 'alt="accuracy_vs_budget"' not in page
    for fact in ("1.5b, 7b, 14b", "baseline TP1, baseline TP2, baseline TP4, ngram-spec TP1",
                 "1,024, 4,096, 16,384 tokens", "1 from builtin", "2 per problem", "vllm 0.26.0",
                 "NVIDIA H200", "12 complete"):
        assert fact in page, fact
    # Relative links that resolve from the page's folder, to notebooks and result files.
    links = re.findall(r'href="([^"]+)"', page)
    assert "04_analysis.ipynb" in links and "../../figures/h200-system/table.csv" in links
    assert all((reports_dir(reference_study) / href).exists() for href in links)
    assert "2 stderr output(s)" in page  # the hand-made notebook above has two


def test_landing_page_says_when_analysis_is_missing_or_behind(reference_study: str, outputs_dir: Path) -> None:
    table = outputs_dir / "figures" / reference_study / "table.csv"
    frame = pd.read_csv(table)
    write_sealed(table, frame[frame["model"] != "7b"].to_csv(index=False))  # as 04 writes it
    assert "A run finished after 04_analysis last ran" in write_landing_page(reference_study).read_text()
    shutil.rmtree(outputs_dir / "figures")
    page = write_landing_page(reference_study).read_text()
    assert "04_analysis has not run for this study yet" in page and "No figures yet" in page
    assert executed_notebooks(reference_study) == []


def test_an_empty_study_still_gets_a_page(outputs_dir: Path) -> None:
    page = write_landing_page("nothing-yet").read_text()
    assert "No executed notebooks" in page and "Not recorded yet" in page


def test_results_table_shows_wrapping_headers_and_links_to_the_full_csv(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(REPORT_DIR_VARIABLE, str(tmp_path / "reports" / "smoke"))
    table = LinkedTable(pd.DataFrame({"model": ["tiny"], "mean_e2e_latency_s": [1.23456789]}))
    table.note = "8 requests per budget."
    table.full_tables = [tmp_path / "runs" / "smoke" / "tiny-baseline-tp1-abc" / "summary.csv"]
    shown = table._repr_html_()
    assert "<th>mean_<wbr>e2e_<wbr>latency_<wbr>s</th>" in shown and "<td>1.235</td>" in shown
    assert '<a href="../../runs/smoke/tiny-baseline-tp1-abc/summary.csv">' in shown
    assert "<th></th>" not in shown  # no index column
    assert "<td>&lt;b&gt;</td>" in LinkedTable(pd.DataFrame({"model": ["<b>"]}))._repr_html_()
    assert type(table.head()) is pd.DataFrame


def test_headless_progress_is_one_final_line(capsys) -> None:
    assert progress.display_mode() == "line"  # pytest: no kernel, stderr captured
    with progress.progress(3, "tiny-baseline-tp1-abc") as advance:
        for _ in range(3):
            advance()
    out, err = capsys.readouterr()
    assert re.fullmatch(r"tiny-baseline-tp1-abc: 3/3 req in \d+\.\d s\n", out) and err == ""
    with pytest.raises(RuntimeError), progress.progress(3, "run") as advance:
        advance()
        raise RuntimeError("engine died")
    assert capsys.readouterr().out.endswith("run: 1/3 req in 0.0 s (stopped)\n")


def test_the_hub_fallback_is_decided_and_said_once_per_process(monkeypatch, capsys) -> None:
    monkeypatch.setattr(data, "_auto_choice", {})
    monkeypatch.setattr(data, "_warned", set())
    calls = []
    monkeypatch.setattr(data, "hub_reachable", lambda: calls.append(1) or False)
    first, second = data.load_problems("auto", 4, 0), data.load_problems("auto", 4, 0)
    assert first == second and first.source == "builtin" and len(calls) == 1
    assert capsys.readouterr().out.count("unreachable from here") == 1

    # A hub that answers the check but fails to load: built-in problems, one warning, no retry.
    monkeypatch.setattr(data, "_auto_choice", {})
    monkeypatch.setattr(data, "_warned", set())
    monkeypatch.setattr(data, "hub_reachable", lambda: True)
    loads = []
    monkeypatch.setattr(data, "_records_from_hub", lambda: loads.append(1) or (_ for _ in ()).throw(OSError()))
    assert {data.load_problems("auto", 4, 0).source for _ in range(3)} == {"builtin"} and len(loads) == 1
    assert capsys.readouterr().out.count("failed to load (OSError)") == 1


def test_files_written_links_each_file_from_the_report(outputs_dir: Path, monkeypatch) -> None:
    from tts_utils.notebook import files_written

    folder = outputs_dir / "figures" / "smoke"
    folder.mkdir(parents=True)
    (folder / "table.csv").write_text("a\n1\n")
    monkeypatch.setenv(REPORT_DIR_VARIABLE, str(reports_dir("smoke")))
    table = files_written([folder])
    assert list(table["file"]) == ["figures/smoke/table.csv"] and list(table["bytes"]) == [4]
    assert '<a href="../../figures/smoke/table.csv">figures/smoke/table.csv</a>' in table._repr_html_()


def test_sweep_results_show_what_a_reader_needs(monkeypatch, tmp_path) -> None:
    from tts_utils import notebook

    summary = pd.DataFrame({
        "study": "smoke", "run_name": "tiny-baseline-tp1-abc", "model": "tiny", "method": "baseline",
        "acceptance": "engine", "tensor_parallel_size": 1, "budget_tokens": [64, 128], "num_requests": 8,
        "accuracy_strict": 0.25, "accuracy_lenient": 0.5, "mean_output_tokens": [64.0, 100.0],
        "mean_e2e_latency_s": [0.8, 1.2], "mean_ttft_s": 0.1, "mean_tpot_ms": 11.0, "cost_gpu_s_per_token": 0.01,
        "spec_acceptance_rate": float("nan"), "spec_mean_acceptance_length": float("nan"), "budget_mode": "one-pass",
        "p90_e2e_latency_s": 1.0, "engine_version": "0.32.0", "harness_overhead_pct": 0.1,
    })
    folder = tmp_path / "tiny-baseline-tp1-abc"
    folder.mkdir()
    (folder / "summary.csv").write_text(summary.to_csv(index=False))
    monkeypatch.setattr(notebook, "_planned_summary", lambda config, name: summary)
    monkeypatch.setattr(notebook, "run_folders", lambda config, name: [folder])
    table = notebook.sweep_results(None, "01_greedy")
    assert list(table.columns) == ["model", "method", "tensor_parallel_size", "budget_tokens", "accuracy_strict",
                                   "accuracy_lenient", "mean_output_tokens", "mean_e2e_latency_s", "mean_ttft_s",
                                   "mean_tpot_ms", "cost_gpu_s_per_token"]
    assert table.full_tables == [folder / "summary.csv"] and table.note.startswith("8 requests per budget")
    mixed = summary.assign(budget_mode=["one-pass", "separate"], acceptance=["engine", "synthetic"])
    monkeypatch.setattr(notebook, "_planned_summary", lambda config, name: mixed)
    shown = notebook.sweep_results(None, "01_greedy")
    assert {"budget_mode", "acceptance"} <= set(shown.columns)


def test_the_landing_page_shows_replayed_real_traces(outputs_dir: Path) -> None:
    """Real accuracy by budget and n-gram acceptance, per trace set, right after the claims."""
    shutil.copytree(REFERENCE / "replays" / "h200-realistic", outputs_dir / "replays" / "traces-only")
    page = write_landing_page("traces-only").read_text()
    assert "Real numbers here: accuracy by budget and n-gram acceptance" in page
    section = page.split("<h2>Real reasoning traces</h2>")[1].split("<h2>")[0]
    assert "<strong>1.5b</strong>: r1-distill-qwen-1.5b.math500-first100.t0.6.jsonl (100 traces)" in section
    assert re.search(r"<td>1.5b</td><td class=\"num\">16,384</td><td class=\"num\">0.80</td>", section)
    assert "r1-distill-qwen-7b.math500-first20.t0.6.jsonl (20 traces)" in section
    assert re.search(r"<td>7b</td><td class=\"num\">1,024</td><td class=\"num\">0.10</td>", section)
    assert page.index("Real reasoning traces</h2>") > page.index("re-tested here</h2>")
