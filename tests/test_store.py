"""The results store: torn writes, hand corruption, resume bookkeeping, the study lock."""

from __future__ import annotations

import pytest

from tts_utils.errors import CorruptResultError, StudyLockedError
from tts_utils.store import (
    RunFolder,
    append_record,
    atomic_write_text,
    file_sha256,
    load_study,
    read_records,
    study_lock,
)


def _records(n: int) -> list[dict]:
    return [{"request_id": f"p{i}#s0#b64", "token_ids": list(range(i + 1)), "text": f"é {i}"} for i in range(n)]


def test_records_round_trip_with_checksums(tmp_path) -> None:
    path = tmp_path / "requests.jsonl"
    for record in _records(3):
        append_record(path, record)
    assert read_records(path) == _records(3)


def test_a_torn_last_line_is_dropped_repaired_and_rewritten_once(tmp_path) -> None:
    path = tmp_path / "requests.jsonl"
    for record in _records(3):
        append_record(path, record)
    with open(path, "a") as out:  # the kit killed mid-write: half a line, no newline
        out.write('{"crc":123,"record":{"request_id":"p3#s0#b64","tok')
    with pytest.warns(UserWarning, match="dropped a partial last line"):
        kept = read_records(path, repair=True)
    assert [r["request_id"] for r in kept] == ["p0#s0#b64", "p1#s0#b64", "p2#s0#b64"]
    append_record(path, _records(4)[3])  # the resumed run writes the missing request once
    ids = [r["request_id"] for r in read_records(path)]
    assert ids == ["p0#s0#b64", "p1#s0#b64", "p2#s0#b64", "p3#s0#b64"] and len(set(ids)) == len(ids)


def test_a_record_edited_by_hand_is_reported_with_file_and_line(tmp_path) -> None:
    path = tmp_path / "requests.jsonl"
    for record in _records(3):
        append_record(path, record)
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"text":"é 1"', '"text":"é 9"')
    path.write_text("".join(lines))
    with pytest.raises(CorruptResultError, match=r"requests.jsonl line 2: record fails its checksum"):
        read_records(path)


def _complete_run(folder: RunFolder) -> None:
    folder.path.mkdir(parents=True)
    (folder.run_file).write_text('{"identity": {"model": "tiny"}}')
    atomic_write_text(folder.results_file, "a,b\n1,2\n")
    atomic_write_text(folder.summary_file, "model,budget_tokens\ntiny,64\n")
    folder.set_status("complete", sha256={"results.csv": file_sha256(folder.results_file),
                                          "summary.csv": file_sha256(folder.summary_file)})


def test_a_corrupted_results_file_is_excluded_and_named(outputs_dir) -> None:
    good, bad = RunFolder(outputs_dir / "runs" / "s" / "good"), RunFolder(outputs_dir / "runs" / "s" / "bad")
    _complete_run(good)
    _complete_run(bad)
    with open(bad.results_file, "a") as out:
        out.write("3,4\n")
    partial = RunFolder(outputs_dir / "runs" / "s" / "partial")
    partial.path.mkdir()
    partial.set_status("incomplete", done=3)
    results = load_study("s")
    assert len(results.summary) == 1 and list(results.runs["run_name"]) == ["good"]
    reasons = dict(results.excluded)
    assert "results.csv: checksum does not match" in reasons[str(bad.path)]
    assert reasons[str(partial.path)] == "unfinished (incomplete): 3 request(s) done; running its sweep again resumes it"


def test_a_second_sweep_on_the_same_study_is_refused() -> None:
    with study_lock("s"):
        with pytest.raises(StudyLockedError, match="another sweep .* is writing"):
            with study_lock("s"):
                pass
    with study_lock("s"):  # released: free again
        pass
