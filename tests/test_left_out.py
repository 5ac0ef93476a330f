"""Nothing left out quietly: 04's files are sealed and verified where read (the pick, the landing page),
and every run, imported run or replay 04 could not read is named on the console, in left_out.json,
in the verdicts it cost, in chain.log and on the landing page. Run folders are built by hand or
copied from reference_results/: no engine starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tts_utils import pipeline
from tts_utils.errors import ConfigError
from tts_utils.paths import REPO_ROOT, figures_dir, reports_dir, study_dir
from tts_utils.report.landing import write_landing_page
from tts_utils.report.left_out import (
    EVERY_CLAIM,
    IMPORTED,
    REPLAY,
    TP_CLAIMS,
    LeftOut,
    read_left_out,
    study_left_out,
    with_lost_evidence,
    write_left_out,
)
from tts_utils.report.modelled import import_tp_runs, modelled_table, study_modelled
from tts_utils.report.pick import main as pick_main
from tts_utils.report.verdicts import check_all_claims
from tts_utils.speculation.replay_sets import REPLAY_FILES, sealed
from tts_utils.store import file_sha256, load_study, sealed_problem, write_sealed

REFERENCE = REPO_ROOT / "reference_results"
H200 = "1x NVIDIA H200 (driver 1)"
TP2 = "1.5b-baseline-tp2-a57cb2863f"


def _flip_one_byte(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    path.write_bytes(data.replace(old, new, 1))


def _configurations() -> pd.DataFrame:
    """A reaches 0.8 slowly; B reaches 0.82 fast (the 0.8 pick); intervals apart."""
    return pd.DataFrame([{"model": name, "method": "baseline", "tensor_parallel_size": 1, "budget_tokens": 1024,
                          "accuracy_strict": accuracy, "mean_e2e_latency_s": latency,
                          "mean_e2e_latency_s_lo": latency - 0.5, "mean_e2e_latency_s_hi": latency + 0.5,
                          "usd_per_correct_answer": 0.01, "evidence": "measured"}
                         for name, accuracy, latency in (("A", 0.80, 20.0), ("B", 0.82, 7.0))])


def test_a_sealed_file_is_verified_where_read(tmp_path: Path) -> None:
    path = tmp_path / "figures" / "s" / "table.csv"
    write_sealed(path, "model,x\n1.5b,0.82\n")
    assert sealed_problem(path, "run 04") == ""
    _flip_one_byte(path, b"0.82", b"0.72")
    assert sealed_problem(path, "run 04") == f"{path}: checksum does not match status.json (edited or corrupted); run 04"
    (path.parent / "other.csv").write_text("x\n")  # written by an older kit: no checksum recorded
    assert "no checksum recorded in status.json (written by an older kit); run 04" in sealed_problem(
        path.parent / "other.csv", "run 04")
    path.unlink()
    assert sealed_problem(path, "run 04") == f"{path}: missing; run 04"


def test_the_pick_refuses_a_configurations_file_that_fails_its_checksum(outputs_dir: Path, capsys) -> None:
    path = figures_dir("s") / "configurations.csv"
    write_sealed(path, _configurations().to_csv(index=False))  # as 04_analysis writes it
    assert pick_main(["--study", "s", "--accuracy", "0.8"]) == 0
    assert "fastest with strict accuracy >= 0.8: B " in capsys.readouterr().out
    _flip_one_byte(path, b"0.82", b"0.72")  # one byte: B no longer reaches 0.8, A would be picked
    assert pick_main(["--study", "s", "--accuracy", "0.8"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err == (f"error: no pick: {path}: checksum does not match status.json "
                            "(edited or corrupted); re-running 04_analysis (make analysis, or python -m "
                            "tts_utils.pipeline run 04_analysis) writes it again\n")
    (path.parent / "status.json").unlink()  # written before 04 recorded checksums
    assert pick_main(["--study", "s", "--accuracy", "0.8"]) == 2
    assert "configurations.csv: no checksum recorded in status.json" in capsys.readouterr().err


def _imported_tp2_damaged(outputs_dir: Path) -> None:
    shutil.copytree(REFERENCE / "runs" / "h200-system", outputs_dir / "runs" / "h200-system")
    results = outputs_dir / "runs" / "h200-system" / TP2 / "results.csv"
    _flip_one_byte(results, b"1.5b", b"1.6b")


def test_an_imported_tp_run_failing_its_checksum_is_named_in_the_verdicts_it_cost(outputs_dir: Path) -> None:
    """The issue's case: the 1.5B TP2 run of the imported study fails its checksum. Before, it
    vanished from claims.csv with exit 0; now the TP verdicts say what they were decided without."""
    _imported_tp2_damaged(outputs_dir)
    own_rows = pd.DataFrame({"model": ["1.5b"], "hardware": [H200]})
    modelled = study_modelled("own", own_rows, ("h200-system",))
    (lost,) = modelled.left_out
    assert lost.what == IMPORTED and lost.model == "1.5b" and lost.claims == TP_CLAIMS
    assert lost.line().startswith(f"imported run runs/h200-system/{TP2} (1.5b): runs/h200-system/{TP2}/results.csv: "
                                  "checksum does not match status.json (edited or corrupted); re-running the sweep")
    assert TP2 not in set(modelled.sources["run_name"]) and len(modelled.sources) == 2  # TP1 and TP4 priced
    claims = check_all_claims("own", pd.DataFrame(), pd.DataFrame(), modelled, modelled_table(modelled, 3.6), [],
                              host="here")
    claims = with_lost_evidence(claims, study_left_out("own", load_study("own"), modelled.left_out)).set_index("key")
    for key in TP_CLAIMS:
        assert claims.loc[key, "evidence"].startswith(
            f"[evidence left out (1, see left_out.json): imported run runs/h200-system/{TP2} (1.5b): "
            f"runs/h200-system/{TP2}/results.csv: checksum does not match status.json (edited or corrupted)] ")
    assert "evidence left out" not in claims.loc["accuracy_flattens", "evidence"]
    assert "evidence left out" not in claims.loc["speculation_faster", "evidence"]  # imports price TP claims only


def test_an_import_whose_every_greedy_run_is_damaged_is_refused_naming_one(outputs_dir: Path) -> None:
    shutil.copytree(REFERENCE / "runs" / "h200-system", outputs_dir / "runs" / "h200-system")
    for run in (outputs_dir / "runs" / "h200-system").glob("1.5b-baseline-*"):
        (run / "summary.csv").write_text("edited\n")
    with pytest.raises(ConfigError, match=r"has no greedy run of 1.5b that can be read: 3 left out \(first: "
                                          r"imported run runs/h200-system/1.5b-baseline-tp1-\w+ \(1.5b\): .*summary.csv: "
                                          "checksum does not match"):
        import_tp_runs(["h200-system"], {H200}, {"1.5b"})


def _damaged_replay(outputs_dir: Path, study: str = "own") -> Path:
    """The reference 1.5B replay, sealed as 03_spec seals replays today, then one byte of rows.csv changed."""
    source = next((REFERENCE / "replays" / "h200-realistic").glob("1.5b-*"))
    folder = outputs_dir / "replays" / study / source.name
    shutil.copytree(source, folder)
    meta = json.loads((folder / "replay.json").read_text())
    meta["sha256"] = {name: file_sha256(folder / name) for name in REPLAY_FILES}
    (folder / "replay.json").write_text(json.dumps(sealed(meta)))
    _flip_one_byte(folder / "rows.csv", b"1024", b"1025")
    return folder


def test_a_damaged_replay_is_named_on_the_console_and_in_left_out_json(outputs_dir: Path, capsys) -> None:
    folder = _damaged_replay(outputs_dir)
    modelled = study_modelled("own", pd.DataFrame())
    (lost,) = modelled.left_out
    assert lost.what == REPLAY and lost.model == "1.5b" and lost.claims == EVERY_CLAIM
    write_left_out(figures_dir("own"), modelled.left_out)
    out = capsys.readouterr().out
    assert f"!! excluded replay {folder.name}: " in out
    assert (f"!! left out: replay replays/own/{folder.name} (1.5b): replays/own/{folder.name}/rows.csv: checksum "
            "does not match replay.json (edited or corrupted); re-running 03_spec replays it again [verdicts: "
            + ", ".join(EVERY_CLAIM) + "]") in out
    assert read_left_out("own") == ([LeftOut(f"replays/own/{folder.name}", lost.reason.replace(f"{outputs_dir}/", ""),
                                             REPLAY, "1.5b", EVERY_CLAIM)], "")
    _flip_one_byte(figures_dir("own") / "left_out.json", b"rows.csv", b"rows.tsv")  # the list itself, edited
    entries, problem = read_left_out("own")
    assert entries == [] and "left_out.json: checksum does not match status.json" in problem


def _incomplete_run(study: str) -> Path:
    folder = study_dir(study) / "1.5b-ngram-spec-tp1-abc"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"identity": {"model": "1.5b", "method": "ngram-spec",
                                                              "tensor_parallel_size": 1}}))
    (folder / "status.json").write_text(json.dumps({"state": "incomplete"}))
    return folder


def test_the_landing_page_names_what_was_left_out_and_withholds_what_fails_its_check(outputs_dir: Path) -> None:
    """A damaged replay (the page no longer silently drops its model), an unfinished run, an imported
    run from 04's left_out.json; and 04's own files: one byte changed in configurations.csv or in
    claims.csv is a banner and nothing shown of that file."""
    replay = _damaged_replay(outputs_dir)
    _incomplete_run("own")
    imported = LeftOut(f"runs/h200-system/{TP2}", f"runs/h200-system/{TP2}/results.csv: checksum does not match "
                       "status.json (edited or corrupted)", IMPORTED, "1.5b", TP_CLAIMS)
    write_left_out(figures_dir("own"), [imported])
    for name in ("claims.csv", "configurations.csv", "table.csv"):
        write_sealed(figures_dir("own") / name, (REFERENCE / "figures" / "h200-system" / name).read_text())
    page = write_landing_page("own").read_text()
    banner = page.split("Left out of the analysis (3)")[1].split("</div>")[0]
    assert f"imported run runs/h200-system/{TP2} (1.5b): runs/h200-system/{TP2}/results.csv: checksum" in banner
    assert f"replay replays/own/{replay.name} (1.5b): replays/own/{replay.name}/rows.csv: checksum" in banner
    assert "run runs/own/1.5b-ngram-spec-tp1-abc (1.5b): unfinished (incomplete); running its sweep again" in banner
    assert "(verdicts: speculation_faster, compute_not_system_optimal)" in banner
    assert "Not shown: files of 04_analysis" not in page and "<h2>The paper&#x27;s claims" in page
    _flip_one_byte(figures_dir("own") / "configurations.csv", b"baseline", b"basel1ne")
    _flip_one_byte(figures_dir("own") / "claims.csv", b"holds", b"h0lds")
    page = write_landing_page("own").read_text()
    withheld = page.split("Not shown: files of 04_analysis that fail their checks")[1].split("</div>")[0]
    assert "figures/own/configurations.csv: checksum does not match status.json (edited or corrupted)" in withheld
    assert "figures/own/claims.csv: checksum does not match status.json" in withheld
    assert "Not shown: claims.csv fails its check (see the banner above)." in page and "h0lds" not in page


@pytest.fixture
def analysis_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A hand-made notebook run by ``run_notebook`` as 04_analysis: it writes left_out.json as 04 does."""
    path = tmp_path / "04_probe.ipynb"
    cell = ("from tts_utils.paths import figures_dir\n"
            "from tts_utils.report.left_out import IMPORTED, LeftOut, write_left_out\n"
            f"write_left_out(figures_dir('probe'), [LeftOut('runs/h200-system/{TP2}', 'results.csv: checksum does "
            "not match status.json (edited or corrupted)', IMPORTED, '1.5b', ('tp_diminishing',))])")
    notebook = new_notebook(cells=[new_code_cell(cell)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    monkeypatch.setattr(pipeline, "notebook_path", lambda name: path)
    monkeypatch.setattr(pipeline, "declared_parameters", lambda name: {})
    return path


def test_chain_log_names_what_04_left_out(analysis_probe: Path, capsys) -> None:
    log = pipeline.ChainLog("probe")
    pipeline.run_notebook("04_analysis", {}, "probe", log)
    text = (reports_dir("probe") / "chain.log").read_text()
    line = (f"!! left out by 04_analysis: imported run runs/h200-system/{TP2} (1.5b): results.csv: checksum does not "
            "match status.json (edited or corrupted)")
    assert "== 04_analysis: done in" in text and ", 1 file(s) left out -> " in text and line in text
    assert line in capsys.readouterr().out and log.left_out["04_analysis"] == [line[3:]]
    status = json.loads((figures_dir("probe") / "status.json").read_text())
    status["sha256"]["left_out.json"] = "0" * 64  # the list edited after 04 wrote it
    (figures_dir("probe") / "status.json").write_text(json.dumps(status))
    assert pipeline.analysis_left_out("probe") == [
        f"04_analysis's list of left-out files fails its check: {figures_dir('probe')}/left_out.json: checksum does not match "
        "status.json (edited or corrupted); re-running 04_analysis (make analysis, or python -m tts_utils.pipeline "
        "run 04_analysis) writes it again"]
