"""The dataset registry and datasets other than MATH500: names, NAME:PATH files, made ids, the gold
rule, and a GSM8K trace file replayed and graded through the replay CLI with no renaming."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from tts_utils import data
from tts_utils.config import StudyConfig
from tts_utils.data import load_problems, parse_dataset
from tts_utils.datasets import DATASETS, MATH500
from tts_utils.engine.model_source import ModelSource, resolve
from tts_utils.errors import ConfigError
from tts_utils.models import get_model
from tts_utils.speculation import replay
from tts_utils.speculation.traces import load_trace_set

# GSM8K as openai/gsm8k (config main, split test) serves it: a question, and a worked solution
# whose last line is "#### <answer>".
DUCKS = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
         "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh "
         "duck egg. How much in dollars does she make every day at the farmers' market?")
DUCKS_SOLUTION = ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
                  "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer's market.\n#### 18")
ROBE = "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?"
ROBE_SOLUTION = "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is 2+1=<<2+1=3>>3 bolts\n#### 3"
HOUSE = "Josh buys a house for $80,000 and puts in $50,000 in repairs. What is the house worth?"
HOUSE_SOLUTION = "The house is worth 80,000 + 50,000 = 130,000 dollars... minus nothing.\n#### 130,000"


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def gsm8k_file(tmp_path) -> Path:
    return _write(tmp_path / "gsm8k.jsonl", [{"question": q, "answer": a} for q, a in
                                             ((DUCKS, DUCKS_SOLUTION), (ROBE, ROBE_SOLUTION), (HOUSE, HOUSE_SOLUTION))])


def test_every_registry_name_resolves_and_is_documented() -> None:
    help_text = next(f for f in fields(StudyConfig) if f.name == "dataset").metadata["help"]
    for key, spec in DATASETS.items():
        assert spec.key == key and parse_dataset(key) == (spec, None) and key in help_text
        assert parse_dataset(f"{key}:/data/{key}.jsonl") == (spec, f"/data/{key}.jsonl")
    assert parse_dataset("hub") == parse_dataset("auto") == parse_dataset("builtin") == (MATH500, None)
    assert parse_dataset("/data/math500.jsonl") == (MATH500, "/data/math500.jsonl")
    assert DATASETS["gsm8k"].gold(DUCKS_SOLUTION) == "18" and DATASETS["gsm8k"].gold("18") == "18"


@pytest.mark.parametrize(("dataset", "message"), [
    ("gsm9k", "unknown dataset 'gsm9k'; known datasets: math500, gsm8k, aime2024, aime2025"),
    ("gsm9k:/data/gsm8k.jsonl", "unknown dataset 'gsm9k'; known datasets: math500, gsm8k, aime2024, aime2025"),
    ("gsm8k:", "dataset 'gsm8k:': NAME:PATH needs a file after the colon"),
])
def test_a_bad_dataset_name_is_one_line_naming_the_known_ones(dataset, message) -> None:
    with pytest.raises(ConfigError) as error:
        load_problems(dataset, 0, 0)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_gsm8k_file_loads_by_name_with_made_ids_and_the_gold_after_hashes(gsm8k_file) -> None:
    problems = load_problems(f"gsm8k:{gsm8k_file}", 0, 0)
    assert problems.source == f"gsm8k:{gsm8k_file.resolve()}"
    assert [(p.unique_id, p.answer) for p in problems.problems] == [("gsm8k/0", "18"), ("gsm8k/1", "3"),
                                                                    ("gsm8k/2", "130000")]
    # a subset keeps each problem's id from its row in the whole file
    assert {p.unique_id for p in load_problems(f"gsm8k:{gsm8k_file}", 2, 5).problems} <= {"gsm8k/0", "gsm8k/1",
                                                                                            "gsm8k/2"}
    with pytest.raises(ConfigError, match=r"lacks fields: problem, unique_id \(a file of another dataset: NAME:PATH"):
        load_problems(str(gsm8k_file), 0, 0)


def test_a_math500_file_still_loads_exactly_as_before(math500_path) -> None:
    """Fingerprints pinned with the kit before the registry: same ids, texts, answers and source."""
    everything = load_problems(str(math500_path), 0, 0)
    assert everything.fingerprint == "cb9f443da79926ea" and everything.source == str(math500_path.resolve())
    assert load_problems(str(math500_path), 20, 1).fingerprint == "c00dda931bf152a1"
    assert load_problems(f"math500:{math500_path}", 0, 0) == everything


def test_a_registry_name_offline_fails_fast_naming_the_file_form(monkeypatch) -> None:
    monkeypatch.setattr(data, "hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(ConfigError, match=r"dataset gsm8k: openai/gsm8k is unreachable from here; give it as a file "
                                          r"\(dataset: gsm8k:PATH\)"):
        load_problems("gsm8k", 0, 0)


def _r1_source(tokenizer: Path) -> ModelSource:
    source = resolve(get_model("1.5b"), "auto")
    return ModelSource(source.engine_path, str(tokenizer), source.identity, source.max_context)


def _gsm8k_traces(path: Path, tokenizer_path: Path) -> Path:
    """Public R1-Distill-Qwen-1.5B GSM8K outputs as they come: question, GSM8K's worked solution as
    answer, output text, engine token counts (the prompt they saw 3 tokens longer than the kit's)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    model = get_model("1.5b")
    rows = [(DUCKS, DUCKS_SOLUTION, "16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.\n</think>\n\nShe makes $\\boxed{18}$."),
            (ROBE, "#### 4", "2 blue and 1 white: 3 bolts.\n</think>\n\nIt takes \\boxed{3} bolts.")]
    return _write(path, [
        {"question": question, "answer": answer, "output": output, "finish_reason": "stop",
         "output_tokens": len(tokenizer(output, add_special_tokens=False)["input_ids"]) + 1,
         "prefill_tokens": len(tokenizer(model.prompt(question), add_special_tokens=False)["input_ids"]) + 3}
        for question, answer, output in rows])


def test_a_gsm8k_trace_file_replays_and_grades_through_the_cli_with_no_renaming(
        tmp_path, gsm8k_file, r1_tokenizer_path, capsys) -> None:
    traces = _gsm8k_traces(tmp_path / "r1-distill-qwen-1.5b.gsm8k.jsonl", r1_tokenizer_path)
    out = tmp_path / "replay.json"
    code = replay.main([str(traces), "--model", "1.5b", "--tokenizer", str(r1_tokenizer_path), "--dataset",
                        f"gsm8k:{gsm8k_file}", "--budgets", "8,4096", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    gold = f"dataset gsm8k:{gsm8k_file.resolve()} (the number after '####' in the worked solution, commas removed)"
    assert f"gold answers: {gold}" in captured.out
    assert "token counts: output tokens count the end-of-sequence token of a trace that ended by itself" in captured.out
    assert "mean_output_tokens" in captured.out
    # the robe's own gold (4) is not the dataset's (3): said once, graded against the dataset's
    assert f"1 of 2 traces carry their own gold (answer or ground_truth) that differs from the dataset's read by the " \
           f"same rule; graded against {gold}" in captured.err
    assert "in 2 of 2 traces the kit's prompt re-tokenizes 3 tokens shorter than the prefill_tokens recorded: the " \
           "replay's prompt is not the one the model saw" in captured.err
    result = json.loads(out.read_text())
    assert result["identity"]["gold_source"] == gold and "end-of-sequence" in result["identity"]["eos_convention"]
    assert "3 tokens shorter" in result["identity"]["prompt_note"] and len(result["identity"]["notes"]) == 1
    budgets = {b["budget_tokens"]: b for b in result["budgets"]}
    assert budgets[4096]["accuracy_strict"] == 1.0 and budgets[8]["accuracy_strict"] == 0.0
    assert budgets[8]["mean_output_tokens"] == 8 and 8 < budgets[4096]["mean_output_tokens"] < 40


def test_a_gsm8k_trace_set_of_a_study_replays_and_grades_with_the_gold_source_stated(
        tmp_path, gsm8k_file, r1_tokenizer_path, capsys) -> None:
    """The same GSM8K file through ``trace_sets`` (03_spec's run_replays): replayed, graded against
    the dataset's gold, and the replay's record says which gold and where the trace's own differed."""
    from tts_utils.speculation.replay_sets import load_replays, run_replays

    traces = _gsm8k_traces(tmp_path / "r1-distill-qwen-1.5b.gsm8k.jsonl", r1_tokenizer_path)
    config = StudyConfig.create(study="gsm", model="1.5b", dataset=f"gsm8k:{gsm8k_file}",
                                trace_sets=[f"1.5b={traces}"], trace_tokenizer=str(r1_tokenizer_path),
                                trace_budgets=[8, 4096])
    summary = run_replays(config)
    gold = f"dataset gsm8k:{gsm8k_file.resolve()} (the number after '####' in the worked solution, commas removed)"
    assert f"graded against {gold}" in capsys.readouterr().out
    accuracy = summary.set_index("budget_tokens")["accuracy_strict"]
    assert accuracy[4096] == 1.0 and accuracy[8] == 0.0
    [folder] = (tmp_path / "outputs" / "replays" / "gsm").iterdir()
    assert json.loads((folder / "replay.json").read_text())["identity"]["gold_source"] == gold
    assert load_replays("gsm")["accuracy_strict"].tolist() == summary["accuracy_strict"].tolist()


@pytest.mark.parametrize(("problem_field", "output_field"), [("prompt", "completion"), ("question", "response")])
def test_trace_field_names_are_mapped(tmp_path, gsm8k_file, r1_tokenizer_path, problem_field, output_field) -> None:
    path = _write(tmp_path / "r1-distill-qwen-1.5b.mapped.jsonl",
                  [{problem_field: ROBE, output_field: "3 bolts.\n</think>\n\n\\boxed{3}"}])
    trace_set = load_trace_set(path, get_model("1.5b"), _r1_source(r1_tokenizer_path), f"gsm8k:{gsm8k_file}")
    [trace] = list(trace_set.traces)
    assert trace.problem_id == "gsm8k/1" and trace.gold == "3" and trace_set.prompt_note == ""
    # No recorded token count: the one note says what checked the tokenizer instead.
    assert trace_set.notes == ("no recorded token counts (output_tokens or total_generated_tokens): the tokenizer could "
                               "not be checked against them; checked instead: its 152064 ids against 1.5b's 151936 "
                               "embedding rows (±1%), and a decode/re-encode round trip of 1 of its 1 traces",)
