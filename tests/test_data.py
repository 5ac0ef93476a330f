"""Loading problems: the local MATH500 file, subsets, the built-in set, and bad files."""

from __future__ import annotations

import json

import pytest

from tts_utils.data import load_problems
from tts_utils.errors import ConfigError


def test_math500_file_loads_with_a_seeded_subset(math500_path) -> None:
    everything = load_problems(str(math500_path), 0, 0)
    assert len(everything.problems) == 500
    first, again, other = (load_problems(str(math500_path), 20, seed) for seed in (1, 1, 2))
    assert first.problems == again.problems and first.fingerprint == again.fingerprint
    assert first.problems != other.problems and len(first.problems) == 20


def test_builtin_problems_are_offline_and_math500_shaped() -> None:
    problems = load_problems("builtin", 0, 0)
    assert len(problems.problems) == 24 and problems.source == "builtin"
    assert all(p.answer and p.unique_id.startswith("builtin/") for p in problems.problems)


def test_missing_file_and_missing_fields_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="dataset file not found: .*nope.jsonl"):
        load_problems(str(tmp_path / "nope.jsonl"), 0, 0)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"problem": "1+1?", "solution": "2"}) + "\n")
    with pytest.raises(ConfigError, match=r"dataset .*broken.jsonl lacks fields: answer, unique_id"):
        load_problems(str(broken), 0, 0)
    csv = tmp_path / "problems.csv"
    csv.write_text("problem,answer,unique_id\n")
    with pytest.raises(ConfigError, match="must be .jsonl or .parquet"):
        load_problems(str(csv), 0, 0)
