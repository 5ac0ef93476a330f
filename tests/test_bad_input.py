"""Bad input, without the engine: trace sets checked against what they claim, result files checked
against their checksums, and every command-line mistake one line with exit code 2, before the
expensive part. (The engine-side cases, re-derivation and a corrupt run among good ones, are in
test_faults.py.)"""

from __future__ import annotations

import gzip
import json
import shutil
import time
import tracemalloc
from pathlib import Path

import pytest

from tts_utils import data, pipeline
from tts_utils.config import StudyConfig, read_profile
from tts_utils.engine.model_source import ModelSource, resolve
from tts_utils.errors import ConfigError
from tts_utils.models import get_model
from tts_utils.speculation import replay, replay_sets, traces
from tts_utils.speculation.traces import load_trace_set
from tts_utils.store import RunFolder, atomic_write_text, file_sha256, load_study, no_runs_reason, study_lock
from tts_utils.study import preflight, sweep

R15 = "r1-distill-qwen-1.5b.math500-first100.t0.6.jsonl"
R7 = "r1-distill-qwen-7b.math500-first100.t0.6.jsonl"
R7_20 = "r1-distill-qwen-7b.math500-first20.t0.6.jsonl"
HUB_ID_1P5B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"


def _source(key: str, tokenizer: str | Path) -> ModelSource:
    """The model as the replay CLI resolves it (hub id, no local context), read with ``tokenizer``."""
    source = resolve(get_model(key), "auto")
    return ModelSource(source.engine_path, str(tokenizer), source.identity, source.max_context)


def _lines(path: Path, count: int) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(next(handle)) for _ in range(count)]


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _one_line_error(call) -> str:
    with pytest.raises(ConfigError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    return message


# --- trace sets against what they claim -------------------------------------------------------------

@pytest.mark.parametrize(("name", "key", "exceptions"), [
    (R15, "1.5b", {"line 50 (test/prealgebra/1388.json)": 1, "line 97 (test/intermediate_algebra/662.json)": 1,
                   "line 100 (test/precalculus/1300.json)": 6}),
    (R7, "7b", {"line 56 (test/algebra/187.json)": 2, "line 95 (test/prealgebra/1646.json)": 2,
                "line 100 (test/precalculus/1300.json)": 2}),
    (R7_20, "7b", {}),
])
def test_shipped_traces_load_with_their_known_token_count_exceptions_reported(
        traces_dir, math500_path, r1_tokenizer_path, name, key, exceptions) -> None:
    """The traces README lists them: 1.5B lines 50 and 100 (+2, +7 against the text, i.e. +1, +6
    beyond the end-of-sequence token) and one trace cut at the length cap that counted one more
    token; 7B's three +3 (+2 beyond the end-of-sequence token)."""
    trace_set = load_trace_set(traces_dir / name, get_model(key), _source(key, r1_tokenizer_path), str(math500_path))
    assert len(trace_set.traces) == (20 if name == R7_20 else 100)
    found = {note.split(": ")[0]: int(note.split("count ")[1].split(" ")[0]) for note in trace_set.notes}
    assert found == exceptions


def test_the_7b_file_replayed_as_1p5b_is_refused_by_its_name(traces_dir, math500_path, r1_tokenizer_path) -> None:
    message = _one_line_error(lambda: load_trace_set(traces_dir / R7, get_model("1.5b"),
                                                     _source("1.5b", r1_tokenizer_path), str(math500_path)))
    assert "the file name says 7b, not model '1.5b'" in message


def test_a_file_without_model_evidence_is_accepted_with_a_loud_note(tmp_path, traces_dir, math500_path,
                                                                    r1_tokenizer_path) -> None:
    path = _write(tmp_path / "my-traces.jsonl", _lines(traces_dir / R7, 3))
    trace_set = load_trace_set(path, get_model("1.5b"), _source("1.5b", r1_tokenizer_path), str(math500_path))
    assert any("no model field and no size in the file name: taken as 1.5b on your word" in n for n in trace_set.notes)
    # A model field decides where the name is silent.
    declared = [{**r, "model": HUB_ID_1P5B} for r in _lines(traces_dir / R7, 3)]
    trace_set = load_trace_set(_write(tmp_path / "declared.jsonl", declared), get_model("1.5b"),
                               _source("1.5b", r1_tokenizer_path), str(math500_path))
    assert trace_set.notes == ()


def test_a_wrong_tokenizer_is_refused_naming_the_flag(traces_dir, math500_path, tiny_model_path) -> None:
    message = _one_line_error(lambda: load_trace_set(traces_dir / R7_20, get_model("7b"),
                                                     _source("7b", tiny_model_path), str(math500_path)))
    assert "recorded token count is" in message and "off the re-tokenized output (tolerance ±8)" in message
    assert "--tokenizer" in message and "trace_tokenizer" in message and "line 1" in message


def test_a_systematic_small_offset_is_refused(tmp_path, traces_dir, math500_path, r1_tokenizer_path) -> None:
    """Each trace within the per-trace tolerance, but all of them off: not the tokenizer that wrote them."""
    shifted = [{**r, "total_generated_tokens": r["total_generated_tokens"] + 3} for r in _lines(traces_dir / R7_20, 20)]
    path = _write(tmp_path / "r1-distill-qwen-7b.shifted.jsonl", shifted)
    message = _one_line_error(lambda: load_trace_set(path, get_model("7b"), _source("7b", r1_tokenizer_path),
                                                     str(math500_path)))
    assert "20 of 20 traces re-tokenize to another token count than recorded (at most 1 may" in message


def test_an_output_beyond_the_context_is_refused_without_a_local_shape(tmp_path, math500_path,
                                                                       r1_tokenizer_path) -> None:
    """The CLI's source has no context of its own (a hub id): the model's shipped shape gives it."""
    record = {"unique_id": "test/algebra/1349.json", "output_ids": [1] * 200_000}
    path = _write(tmp_path / "long.jsonl", [record])
    message = _one_line_error(lambda: load_trace_set(path, get_model("1.5b"), _source("1.5b", r1_tokenizer_path),
                                                     str(math500_path)))
    assert "longer than 1.5b's 131072-token context" in message


def test_a_problem_twice_is_refused_unless_a_repetition_field_says_so(tmp_path, traces_dir, math500_path,
                                                                     r1_tokenizer_path) -> None:
    first = _lines(traces_dir / R7, 2)
    path = _write(tmp_path / "r1-distill-qwen-7b.dup.jsonl", [first[0], first[1], first[0]])
    message = _one_line_error(lambda: load_trace_set(path, get_model("7b"), _source("7b", r1_tokenizer_path),
                                                     str(math500_path)))
    assert "line 3: problem 'test/precalculus/807.json' appears again (first at line 1)" in message
    repeated = [{**first[0], "sample_index": 0}, {**first[0], "sample_index": 1}]
    trace_set = load_trace_set(_write(tmp_path / "r1-distill-qwen-7b.rep.jsonl", repeated), get_model("7b"),
                               _source("7b", r1_tokenizer_path), str(math500_path))
    assert len(trace_set.traces) == 2


@pytest.mark.parametrize("samples", [2, 3])
def test_repetitions_are_counted_once_each_and_graded_by_sample(tmp_path, traces_dir, math500_path, r1_tokenizer_path,
                                                                samples) -> None:
    from transformers import AutoTokenizer

    first = _lines(traces_dir / R7, 4)
    path = _write(tmp_path / f"r1-distill-qwen-7b.x{samples}.jsonl",
                  [{**record, "sample_index": sample} for record in first for sample in range(samples)])
    trace_set = load_trace_set(path, get_model("7b"), _source("7b", r1_tokenizer_path), str(math500_path))
    result = replay.replay(trace_set, replay.NgramSettings(5, 1, 4), [1024, 4096],
                           AutoTokenizer.from_pretrained(r1_tokenizer_path), "</think>")
    # one row per trace and budget (no cross-join of samples), each sample keeping its own grade
    assert len(result.rows) == 4 * samples * 2 and not result.rows.duplicated(replay.TRACE_KEYS).any()
    once = replay.replay(load_trace_set(_write(tmp_path / "r1-distill-qwen-7b.x1.jsonl", first), get_model("7b"),
                                        _source("7b", r1_tokenizer_path), str(math500_path)),
                         replay.NgramSettings(5, 1, 4), [1024, 4096], AutoTokenizer.from_pretrained(r1_tokenizer_path),
                         "</think>")
    for column in ("traces", "reasoning_finished"):
        assert (result.summary[column] == once.summary[column] * samples).all(), column
    for column in ("accuracy_strict", "acceptance_rate", "mean_output_tokens"):
        assert result.summary[column].tolist() == pytest.approx(once.summary[column].tolist()), column
    # two lines told apart only by a request id are one output twice, not two samples
    twice = [{**first[0], "request_id": "a"}, {**first[0], "request_id": "b"}]
    message = _one_line_error(lambda: load_trace_set(_write(tmp_path / "r1-distill-qwen-7b.ids.jsonl", twice),
                                                     get_model("7b"), _source("7b", r1_tokenizer_path), str(math500_path)))
    assert "appears again" in message


def test_gzip_files_are_read_and_other_files_refused_by_name(tmp_path, traces_dir, math500_path,
                                                             r1_tokenizer_path) -> None:
    plain = traces_dir / R7_20
    packed = tmp_path / (R7_20 + ".gz")
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    source = _source("7b", r1_tokenizer_path)
    assert load_trace_set(packed, get_model("7b"), source, str(math500_path)).fingerprint == \
        load_trace_set(plain, get_model("7b"), source, str(math500_path)).fingerprint
    broken = tmp_path / "r1-distill-qwen-7b.broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all\n")
    assert "unreadable" in _one_line_error(lambda: load_trace_set(broken, get_model("7b"), source, str(math500_path)))
    other = tmp_path / "traces.zip"
    other.write_bytes(b"PK")
    assert "expected a .jsonl or .jsonl.gz file" in _one_line_error(
        lambda: load_trace_set(other, get_model("7b"), source, str(math500_path)))


def test_a_file_that_is_not_utf8_is_one_line(tmp_path, traces_dir, math500_path, r1_tokenizer_path) -> None:
    path = tmp_path / "r1-distill-qwen-7b.latin1.jsonl"
    path.write_bytes((traces_dir / R7_20).read_bytes().split(b"\n")[0] + b"\n{\"problem\": \"caf\xe9\"}\n")
    message = _one_line_error(lambda: load_trace_set(path, get_model("7b"), _source("7b", r1_tokenizer_path),
                                                     str(math500_path)))
    assert "line 2: not UTF-8 text" in message


def test_traces_are_streamed_not_held(tmp_path, traces_dir, math500_path, r1_tokenizer_path, monkeypatch, capsys) -> None:
    """Python memory while checking a file of 10x the traces stays that of one copy (bounded by the
    longest trace, not the file; the tokenizer's own tables dominate both), and long files show progress."""
    lines = _lines(traces_dir / R7_20, 20)
    small = _write(tmp_path / "r1-distill-qwen-7b.one.jsonl", lines)
    large = _write(tmp_path / "r1-distill-qwen-7b.ten.jsonl",
                   [{**r, "sample_index": copy} for copy in range(10) for r in lines])
    source = _source("7b", r1_tokenizer_path)
    load_trace_set(small, get_model("7b"), source, str(math500_path))  # tokenizer and dataset loaded once before
    peaks = []
    for path in (small, large):
        tracemalloc.start()
        trace_set = load_trace_set(path, get_model("7b"), source, str(math500_path))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert len(trace_set.traces) == 200 and sum(1 for _ in trace_set.traces) == 200
    print(f"\npeak Python memory while checking 20 / 200 traces: {peaks[0] / 2**20:.1f} / {peaks[1] / 2**20:.1f} MiB; "
          f"file {large.stat().st_size / 2**20:.1f} MiB")
    assert peaks[1] < 1.1 * peaks[0]
    monkeypatch.setattr(traces, "LONG_FILE_BYTES", 0)
    load_trace_set(small, get_model("7b"), source, str(math500_path))
    assert f"checking {small.name}" in capsys.readouterr().out


def test_not_in_dataset_auto_says_it_fell_back_to_the_builtin_problems(tmp_path, traces_dir, r1_tokenizer_path,
                                                                       monkeypatch) -> None:
    monkeypatch.setattr(data, "_auto_choice", {"auto": "builtin"})
    path = _write(tmp_path / "r1-distill-qwen-7b.x.jsonl", _lines(traces_dir / R7, 1))
    message = _one_line_error(lambda: load_trace_set(path, get_model("7b"), _source("7b", r1_tokenizer_path), "auto"))
    assert "fell back to the kit's built-in problems" in message and "--dataset FILE" in message


# --- inputs before the chain ------------------------------------------------------------------------

def test_a_missing_tokenizer_folder_is_named_as_such(tmp_path) -> None:
    from tts_utils.engine.model_source import load_tokenizer

    message = _one_line_error(lambda: load_tokenizer(_source("1.5b", tmp_path / "no" / "tokenizer")))
    assert message.startswith("tokenizer folder not found") and "Repo id" not in message


def test_offline_without_a_tokenizer_fails_fast_naming_the_flags(traces_dir, math500_path, monkeypatch) -> None:
    monkeypatch.setattr(data, "hub_reachable", lambda timeout_s=3.0: False)
    started = time.monotonic()
    message = _one_line_error(lambda: load_trace_set(traces_dir / R15, get_model("1.5b"),
                                                     resolve(get_model("1.5b"), "auto"), str(math500_path)))
    assert time.monotonic() - started < 10
    assert "hub is unreachable and it is not in the local cache" in message and "--tokenizer" in message


def test_check_refuses_missing_trace_sets_and_accepts_paths_with_spaces(tmp_path, traces_dir, math500_path,
                                                                        r1_tokenizer_path, capsys) -> None:
    missing = tmp_path / "nope.jsonl"
    code = pipeline.main(["check", "smoke", "--set", f"trace_sets=[{missing}]"])
    assert code == 2 and capsys.readouterr().err.strip() == f"error: trace set not found: {missing}"
    folder = tmp_path / "my traces"
    folder.mkdir()
    shutil.copy(traces_dir / R7_20, folder / R7_20)
    for value in (f"7b={folder / R7_20}", f"[7b={folder / R7_20}]"):  # bare and in a YAML list
        # load_format dummy: check plans every run too, and offline only a shape's runs can be planned
        code = pipeline.main(["check", "smoke", "--set", "model=7b", "--set", "load_format=dummy",
                              "--set", f"dataset={math500_path}",
                              "--set", f"trace_tokenizer={r1_tokenizer_path}", "--set", f"trace_sets={value}"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert "1 trace sets checked" in captured.out


def test_the_sweep_checks_trace_sets_before_planning_also_in_a_dry_run(tmp_path) -> None:
    config = StudyConfig.create(trace_sets=[str(tmp_path / "gone.jsonl")], dry_run=True)
    assert "trace set not found" in _one_line_error(lambda: sweep.run_sweep(config, "01_greedy"))


def test_unreadable_trace_files_and_datasets(tmp_path, monkeypatch) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("{}\n")
    monkeypatch.setattr(preflight.os, "access", lambda *_: False)
    assert "permission denied" in _one_line_error(lambda: preflight.check_trace_path(str(path)))
    monkeypatch.setattr(data, "hub_reachable", lambda timeout_s=3.0: False)
    assert "unreachable from here" in _one_line_error(lambda: preflight.check_dataset("hub"))
    (tmp_path / "d.jsonl").write_bytes(b'{"problem": "caf\xe9"}\n')
    assert "not UTF-8" in _one_line_error(lambda: preflight.check_dataset(str(tmp_path / "d.jsonl")))


def test_profiles_empty_not_utf8_or_a_folder(tmp_path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    assert "is empty" in _one_line_error(lambda: read_profile(empty))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"study: caf\xe9\n")
    assert "is not UTF-8 text" in _one_line_error(lambda: read_profile(latin))
    assert "cannot read it" in _one_line_error(lambda: read_profile(tmp_path))


@pytest.mark.parametrize(("argument", "expected"), [
    ("budgets=[1,", "--set 'budgets=[1,': the value is not valid YAML"),
    ("trace_budgets=[64] # all", "'#' starts a YAML comment and would cut the value"),
    ("budgets", "--set takes key=value"),
])
def test_set_mistakes_name_the_flag_in_one_line(argument, expected, capsys) -> None:
    assert pipeline.main(["check", "smoke", "--set", argument]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_argparse_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        replay.main(["x.jsonl", "--model", "1.5b", "--spec-tokens", "abc"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "invalid int value: 'abc'" in err


@pytest.mark.parametrize(("arguments", "expected"), [
    (["--budgets", "abc"], "--budgets must be comma-separated positive integers, got 'abc'"),
    (["--spec-tokens", "17"], "spec_tokens must be 1..16"),
])
def test_replay_cli_flags_are_checked_in_one_line(traces_dir, arguments, expected, capsys) -> None:
    assert replay.main([str(traces_dir / R7_20), "--model", "7b", *arguments]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_replay_cli_refuses_a_json_folder_before_the_replay(traces_dir, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(replay, "replay", lambda *a, **k: pytest.fail("replayed before checking --json"))
    assert replay.main([str(traces_dir / R7_20), "--model", "7b", "--json", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --json {tmp_path} is a folder; give a file name"


def test_sweep_cli_reports_the_study_lock_in_one_line(capsys) -> None:
    with study_lock("locked"):
        code = sweep.main(["01_greedy", "--profile", "smoke", "--set", "study=locked", "--set", "dataset=builtin",
                           "--set", "num_problems=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: another sweep (pid") and err.count("\n") == 1


# --- result files against their checksums -----------------------------------------------------------

def _complete_run(folder: RunFolder) -> None:
    folder.path.mkdir(parents=True)
    folder.run_file.write_text('{"identity": {"model": "tiny"}}')
    atomic_write_text(folder.results_file, "run_name,a\nr,1\n")
    atomic_write_text(folder.summary_file, "model,budget_tokens\ntiny,64\n")
    atomic_write_text(folder.steps_file, "run_name,request_id,kind,step,context_tokens,seconds,merged\n"
                                         "r,a,measured,plain,10,0.00036,False\n")
    atomic_write_text(folder.requests_file, '{"crc":0,"record":{}}\n')
    from tts_utils.store import checksums

    folder.set_status("complete", sha256=checksums(folder.path))


def test_steps_csv_and_requests_are_checked_on_read(outputs_dir, capsys) -> None:
    from tts_utils.speculation.stepcost import checked_step_files

    run = RunFolder(outputs_dir / "runs" / "s" / "r")
    _complete_run(run)
    assert run.is_complete() and checked_step_files("s") == [run.steps_file]
    run.steps_file.write_text(run.steps_file.read_text().replace("0.00036", "0.00080"))  # one changed number
    assert checked_step_files("s") == [] and "steps.csv: checksum does not match" in capsys.readouterr().out
    assert not run.is_complete() and len(load_study("s").summary) == 1  # 04's tables still stand
    atomic_write_text(run.steps_file, run.steps_file.read_text().replace("0.00080", "0.00036"))
    run.requests_file.write_text('{"crc":1,"record":{}}\n')
    assert run.mismatches() == [f"{run.requests_file}: checksum does not match status.json (edited or corrupted)"]


def test_04_names_the_checksum_and_the_repair_when_every_run_is_left_out(outputs_dir) -> None:
    run = RunFolder(outputs_dir / "runs" / "s" / "r")
    _complete_run(run)
    with open(run.results_file, "a") as out:
        out.write("r,2\n")
    results = load_study("s")
    reason = no_runs_reason(results, "s")
    assert results.summary.empty and "fail their checksums" in reason and "results.csv" in reason
    assert "re-running the sweep" in reason and "without an engine" in reason
    assert no_runs_reason(load_study("empty"), "empty") == "no complete runs in study 'empty': run 01-03 first"


def test_replay_files_are_checked_on_read_and_excluded(outputs_dir, capsys) -> None:
    from tts_utils.paths import replays_dir

    folder = replays_dir("s") / "1.5b-traces-0123456789"
    folder.mkdir(parents=True)
    atomic_write_text(folder / "rows.csv", "problem_id,budget_tokens\np,64\n")
    atomic_write_text(folder / "steps.json", "[\n]\n")
    meta = replay_sets.sealed({"identity": {"model": "1.5b", "settings": {}}, "trace_set_name": "traces",
                          "summary": [{"budget_tokens": 64, "tokens_per_step": 1.876, "traces": 1}],
                          "sha256": {n: file_sha256(folder / n) for n in replay_sets.REPLAY_FILES}})
    (folder / "replay.json").write_text(json.dumps(meta))
    assert replay_sets.replay_problem(folder) == "" and len(replay_sets.load_replays("s")) == 1
    (folder / "replay.json").write_text(json.dumps(meta).replace("1.876", "2.232"))
    assert replay_sets.load_replays("s").empty and "summary fails its checksum" in capsys.readouterr().out
    (folder / "replay.json").write_text(json.dumps(meta))
    (folder / "rows.csv").write_text("problem_id,budget_tokens\np,65\n")
    assert "rows.csv: checksum does not match" in replay_sets.replay_problem(folder)


@pytest.mark.parametrize(("settings", "expected"), [
    (["cudagraph_mode=FULL"], "cudagraph_mode FULL needs a GPU engine"),
    (["spec_acceptance=0.5,0.4,0.3,0.2,0.1"], "needs a GPU engine"),
    (["max_model_len=100"], "max_model_len 100 < longest prompt"),
    (["model=tiny-draft", "load_format=dummy", "tp_sizes=[1, 2]"], "TP=2 cannot split evenly"),
    (["load_format=dummy", "model=7b", "spec_acceptance=replay", "trace_sets=[own]", "dry_run=true",
      "model_paths=[]"], None),
])
def test_check_plans_every_run_and_refuses_what_a_later_notebook_would(settings, expected, capsys) -> None:
    """Refused by ``pipeline check`` (and so before 00 starts), not in 01 or 03 hours later."""
    code = pipeline.main(["check", "smoke", "--set", "dataset=builtin", *[a for s in settings for a in ("--set", s)]])
    captured = capsys.readouterr()
    if expected is None:  # a dry run plans a GPU setting anywhere: nothing to refuse
        assert code == 0, captured.err
        assert "03_spec: 1 run(s)" in captured.out
        return
    assert code == 2 and expected in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err


def test_placement_ray_without_ray_is_refused_before_00(monkeypatch, capsys) -> None:
    """Seen on an H100 whose Python had vLLM but no Ray: the paper profile ran 00, then 01 stopped
    in its first sweep cell (ModuleNotFoundError). Now ``check`` (and every sweep) refuses it."""
    find_spec = preflight.importlib.util.find_spec
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: None if name == "ray" else find_spec(name))
    assert pipeline.main(["check", "smoke", "--set", "dataset=builtin", "--set", "placement=ray"]) == 2
    err = capsys.readouterr().err
    assert "placement: ray needs the ray package" in err and "placement=sequential" in err and err.count("\n") == 1
    config = StudyConfig.create(placement="ray", dataset="builtin")
    assert "needs the ray package" in _one_line_error(lambda: sweep.run_sweep(config, "01_greedy"))
    preflight.check_placement(StudyConfig.create(placement="ray", dry_run=True))  # a dry run starts nothing
    monkeypatch.undo()
    preflight.check_placement(config)  # Ray installed (the kit's dependency): accepted


@pytest.mark.parametrize(("settings", "expected"), [
    (["tp_import=[no-such-study]"], "tp_import: 'no-such-study' is neither a study under"),
    (["tp_import=[empty]"], "tp_import: 'empty' has no complete greedy (baseline) run of 1.5b"),
    (["tp_import=[h200-system]"], "tp_import: 'h200-system' ran on NVIDIA H200, this study on CPU only; step costs "
                                  "do not transfer between devices (set tp_import_any_hardware: true"),
    (["tp_import=[h200-system]", "tp_import_any_hardware=true"], None),
    (["tp_import=[h200-system]", "study=h200-system", "dry_run=true"],
     "tp_import: 'h200-system' is this study itself ('h200-system')"),
    (["model=14b", "trace_sets=[14b=proxy:7b]"], "trace set 14b=proxy:7b: the study replays no trace set of '7b'"),
    (["model=7b", "trace_sets=[7b=proxy:7b]"], "trace set 7b=proxy:7b: a model cannot stand in for itself"),
    (["model=7b", "spec_acceptance=replay", "dry_run=true", "temperature=0.6"],
     "needs a trace set for 7b in trace_sets (MODEL=PATH, MODEL=public:NAME, MODEL=proxy:OTHER or MODEL=own); own "
     "replays greedy runs only, and at temperature 0.6 01_greedy writes none"),
    (["model=1.5b,7b", "spec_acceptance=replay", "dry_run=true", "trace_sets=[7b=own]"],
     "replay needs a trace set for 1.5b in trace_sets"),
])
def test_check_resolves_tp_import_and_proxies_before_00(settings, expected, outputs_dir, capsys) -> None:
    """What 03 (a proxy with nothing to stand in, own runs at temperature > 0) and 04 (tp_import of a
    missing, empty, other-device study or of the study itself) would refuse late: refused by check."""
    from tts_utils.paths import REPO_ROOT

    shutil.copytree(REPO_ROOT / "reference_results" / "runs" / "h200-system", outputs_dir / "runs" / "h200-system")
    (outputs_dir / "runs" / "empty").mkdir()
    base = ["dataset=builtin", "model=1.5b", "load_format=dummy", "trace_sets=[own]"]
    code = pipeline.main(["check", "smoke", *[a for s in base + settings for a in ("--set", s)]])
    captured = capsys.readouterr()
    if expected is None:
        assert code == 0 and "03_spec: 1 run(s)" in captured.out, captured.err
        return
    assert code == 2 and expected in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err


def test_without_recorded_counts_the_tokenizer_is_checked_another_way(tmp_path, traces_dir, math500_path,
                                                                      r1_tokenizer_path, tiny_model_path,
                                                                      tiny_tokenizer) -> None:
    """No output_tokens: the tiny tokenizer read R1 traces silently (2.232 tokens/step, not 1.876).
    Now its vocabulary is checked against the model's embedding rows, and ids another tokenizer wrote
    fail a decode/re-encode round trip; the model's own tokenizer passes, with a note saying so."""
    records = [{k: v for k, v in r.items() if k != "total_generated_tokens"} for r in _lines(traces_dir / R7_20, 20)]
    path = _write(tmp_path / "r1-distill-qwen-7b.no-counts.jsonl", records)
    trace_set = load_trace_set(path, get_model("7b"), _source("7b", r1_tokenizer_path), str(math500_path))
    assert trace_set.notes == ("no recorded token counts (output_tokens or total_generated_tokens): the tokenizer "
                               "could not be checked against them; checked instead: its 152064 ids against 7b's 152064 "
                               "embedding rows (±1%), and a decode/re-encode round trip of 16 of its 20 traces",)
    message = _one_line_error(lambda: load_trace_set(path, get_model("7b"), _source("7b", tiny_model_path),
                                                     str(math500_path)))
    assert (f"{path}: no recorded token counts (output_tokens or total_generated_tokens) to check the tokenizer "
            "against, and its 512 ids (added tokens included) are not the vocabulary of 7b (152064 embedding rows, "
            "±1%): the tokenizer") in message and "trace_tokenizer" in message
    foreign = [{"problem": r["problem"], "output_ids": tiny_tokenizer(r["full_response"], add_special_tokens=False)["input_ids"]}
               for r in records[:4]]
    path = _write(tmp_path / "r1-distill-qwen-7b.foreign-ids.jsonl", foreign)
    message = _one_line_error(lambda: load_trace_set(path, get_model("7b"), _source("7b", r1_tokenizer_path),
                                                     str(math500_path)))
    assert "and 4 of the first 4 traces do not survive a decode/re-encode round trip with it (first: line 1)" in message
