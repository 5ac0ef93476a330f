"""Budget forcing, local random-weight folders and run identities.

The engine test loads a random-weight folder written by tts_utils.engine.random_weights (the tiny-draft
shape over the tiny tokenizer) with load_format auto through model_paths, as a user's weights
would load, and runs 01_greedy under budget_mode force on the real CPU engine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from tts_utils.cli import resolve_parameters
from tts_utils.config import StudyConfig
from tts_utils.engine.random_weights import write_random_weights
from tts_utils.errors import ConfigError
from tts_utils.grading import GradeItem, grade_in_process
from tts_utils.models import RANDOM_WEIGHTS_MARKER, get_model
from tts_utils.paths import REPO_ROOT
from tts_utils.store import read_records
from tts_utils.study import plan as plan_module
from tts_utils.study import sweep
from tts_utils.study.budget_forcing import FORCED_FILE, continuation, forced_request_id, forcing_suffix
from tts_utils.study.plan import plan_runs

REFERENCE_RUNS = REPO_ROOT / "reference_results" / "runs"


@pytest.fixture(scope="module")
def random_tiny_draft(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tts_utils.engine.tiny_model import ensure_tiny_model

    return write_random_weights("tiny-draft", ensure_tiny_model(), tmp_path_factory.mktemp("weights") / "tiny-draft")


def test_the_writer_saves_the_shipped_shape_with_random_safetensors(random_tiny_draft: Path) -> None:
    from safetensors import safe_open

    shipped = REPO_ROOT / "tts_utils" / "model_shapes" / "tiny-draft" / "config.json"
    assert json.loads((random_tiny_draft / "config.json").read_text()) == json.loads(shipped.read_text())
    with safe_open(random_tiny_draft / "model.safetensors", "pt") as weights:
        embedding = weights.get_tensor("model.embed_tokens.weight")
    assert tuple(embedding.shape) == (512, 64) and str(embedding.dtype) == "torch.bfloat16"
    assert float(embedding.float().std()) > 0.005  # random, not zeros
    recipe = json.loads((random_tiny_draft / RANDOM_WEIGHTS_MARKER).read_text())
    assert recipe["shape"] == "tiny-draft" and recipe["parameters"] > 0
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in random_tiny_draft.iterdir()}


def test_the_writer_refuses_bad_input(random_tiny_draft: Path, tmp_path: Path, r1_tokenizer_path: Path) -> None:
    with pytest.raises(ConfigError, match="exists and is not an empty folder"):
        write_random_weights("tiny-draft", random_tiny_draft, random_tiny_draft)
    with pytest.raises(ConfigError, match="tokens exceed the shape's vocabulary of 512 rows"):
        write_random_weights("tiny-draft", r1_tokenizer_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="neither a registry key with a shipped shape"):
        write_random_weights("70b", r1_tokenizer_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="lacks tokenizer.json"):
        write_random_weights("1.5b", tmp_path, tmp_path / "out")


def test_model_paths_and_budget_mode_are_checked(tmp_path: Path) -> None:
    for values, message in [({"model_paths": ["1.5b"]}, "model_paths entries are KEY=DIR"),
                            ({"model_paths": ["70b=/x"]}, "model_paths: unknown model '70b'"),
                            ({"model_paths": [f"1.5b={tmp_path}"]}, "has no config.json"),
                            ({"budget_mode": "forced"}, "budget_mode must be cut or force"),
                            ({"force_answer_tokens": 0}, "force_answer_tokens must be 1..4096")]:
        with pytest.raises(ConfigError, match=message):
            StudyConfig.create(**values)


def test_a_continuation_starts_exactly_at_the_budget(tiny_model_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = get_model("tiny")
    thinking = tokenizer("so the sum is 12 and", add_special_tokens=False)["input_ids"]
    record = {"completion_tokens": len(thinking), "max_tokens": len(thinking), "finish_reason": "length",
              "chunk_tokens": list(range(1, len(thinking) + 1)), "chunk_times_s": [0.1] * len(thinking),
              "e2e_latency_s": 1.0, "token_ids": thinking}
    suffix = tokenizer(forcing_suffix(model), add_special_tokens=False)["input_ids"]
    assert continuation([7, 8], record, 3, model, tokenizer) == [7, 8, *thinking[:3], *suffix]
    assert tokenizer.decode(suffix).startswith("</think>")
    ended = tokenizer("done</think>The answer is", add_special_tokens=False)["input_ids"]
    cut_answer = {**record, "token_ids": ended, "completion_tokens": len(ended), "max_tokens": len(ended),
                  "chunk_tokens": list(range(1, len(ended) + 1)), "chunk_times_s": [0.1] * len(ended)}
    assert continuation([7], cut_answer, len(ended) - 1, model, tokenizer) == [7, *ended[:-1]]  # no second marker
    stopped = {**record, "finish_reason": "stop", "max_tokens": 64}
    assert continuation([7], stopped, 32, model, tokenizer) is None  # it answered within the budget


def test_cut_keeps_the_reference_run_names_and_force_changes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The h200-realistic greedy runs re-planned here on the CPU keep their folder names under cut
    (budget_mode left out or given), and every stored identity still hashes to its folder name."""
    monkeypatch.setattr(plan_module, "check_memory", lambda *args, **kwargs: None)  # 14B does not fit this machine
    names = {p.name for p in (REFERENCE_RUNS / "h200-realistic").iterdir()}
    for overrides in ({}, {"budget_mode": "cut", "force_answer_tokens": 64}):
        plans = plan_runs(resolve_parameters("h200-realistic", overrides)[1], "01_greedy")[0]
        assert len(plans) == 3 and all(plan.run_name in names for plan in plans), [p.run_name for p in plans]
    forced = plan_runs(resolve_parameters("h200-realistic", {"budget_mode": "force"})[1], "01_greedy")[0]
    assert not {plan.run_name for plan in forced} & names
    assert forced[0].identity()["budget_mode"] == "force" and forced[0].identity()["force_answer_tokens"] == 32
    for run_file in sorted(REFERENCE_RUNS.glob("*/*/run.json")):
        identity = json.loads(run_file.read_text())["identity"]
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        assert run_file.parent.name.endswith(digest), run_file


@pytest.mark.engine
def test_budget_forcing_on_the_cpu_engine_with_a_local_random_weight_folder(random_tiny_draft: Path) -> None:
    config = StudyConfig.create(study="forcing", model="tiny-draft", model_paths=[f"tiny-draft={random_tiny_draft}"],
                                dataset="builtin", num_problems=3, budgets=[8, 24], budget_mode="force",
                                force_answer_tokens=6, cpu_kv_cache_gib=1)
    plan = plan_runs(config, "01_greedy")[0][0]
    assert plan.source.engine_path == str(random_tiny_draft) and plan.engine.load_format == "auto"
    assert sweep.run_sweep(config, "01_greedy")["outcome"].tolist() == ["completed"]
    folder = plan.folder()
    records = {r["request_id"]: r for r in read_records(folder.requests_file)}
    forced = {r["request_id"]: r for r in read_records(folder.path / FORCED_FILE)}
    assert forced, "no output was cut by a budget"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(random_tiny_draft)
    suffix = tokenizer(forcing_suffix(plan.model), add_special_tokens=False)["input_ids"]
    prompts = {p.unique_id: tokenizer(plan.model.prompt(p.problem), add_special_tokens=False)["input_ids"]
               for p in plan.problems.problems}
    rows = pd.read_csv(folder.results_file)
    gold = {p.unique_id: p.answer for p in plan.problems.problems}
    for row in rows.itertuples():
        record = records[row.request_id]
        entry = forced.get(forced_request_id(row.request_id, row.budget_tokens))
        if entry is None:
            assert not row.forced and row.forced_tokens == 0 and row.finish_reason != "length"
            continue
        budget = row.budget_tokens
        cut = record["token_ids"][:budget]
        ending = [] if "</think>" in tokenizer.decode(cut, skip_special_tokens=False) else suffix
        # The continuation starts exactly at the budget: prompt + the first L tokens + marker and cue,
        # as the kit sent them and as the engine reports having received them.
        assert entry["sent_prompt_token_ids"] == prompts[row.problem_id] + cut + ending
        assert entry["engine_prompt_token_ids"] == entry["sent_prompt_token_ids"]
        assert entry["prompt_tokens"] == len(entry["sent_prompt_token_ids"])
        # Its tokens are counted apart: the budget's row keeps L tokens, the answer's are extra.
        assert row.output_tokens == budget and row.forced and 0 < row.forced_tokens <= 6
        assert row.forced_tokens == entry["completion_tokens"] and row.forced_latency_s == entry["e2e_latency_s"]
        # Grading reads cut prefix + marker and cue + forced answer.
        text = tokenizer.decode(cut + ending + entry["token_ids"], skip_special_tokens=False)
        grade = grade_in_process(GradeItem(text, gold[row.problem_id], "</think>"))
        assert (row.forced_strict_correct, row.forced_lenient_correct) == (grade["strict_correct"],
                                                                           grade["lenient_correct"])
        assert row.forced_reasoning_finished
    summary = pd.read_csv(folder.summary_file)
    assert (summary["budget_rule"] == "force").all()
    assert {"accuracy_strict_forced", "mean_forced_tokens", "mean_forced_latency_s", "forced_extra_tokens_pct"} <= \
        set(summary.columns)
    assert summary["mean_forced_tokens"].gt(0).any()
    assert sweep.run_sweep(config, "01_greedy")["outcome"].tolist() == ["skipped (complete)"]


def test_a_folder_of_another_shape_is_refused_for_a_key_before_any_engine(tiny_model_path: Path) -> None:
    config = StudyConfig.create(study="shape", model="1.5b", model_paths=[f"1.5b={tiny_model_path}"],
                                dataset="builtin", num_problems=2, budgets=[16])
    with pytest.raises(ConfigError, match=r"is not a 1.5b checkpoint: .*hidden_size 128 \(a 1.5b has 1536\)"):
        plan_runs(config, "01_greedy")


def test_random_weights_cli_answers_bad_paths_and_files_in_one_line(random_tiny_draft: Path, tmp_path: Path,
                                                                    capsys) -> None:
    from tts_utils.engine.random_weights import main

    bad_json = tmp_path / "bad-json"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{not json")
    no_vocab = tmp_path / "no-vocab"
    no_vocab.mkdir()
    (no_vocab / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"]}')
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for arguments, expected in (
            (["--shape", str(bad_json)], "not a readable JSON file"),
            (["--shape", str(no_vocab)], "names no vocab_size or architectures"),
            (["--shape", "tiny-draft", "--out", str(a_file)], "exists and is not an empty folder"),
            (["--shape", "tiny-draft", "--out", "/proc/no-such/out"], "cannot write there")):
        full = ["--tokenizer", str(random_tiny_draft), "--out", str(tmp_path / "out"), *arguments]
        assert main(full) == 2, arguments
        error = capsys.readouterr().err
        assert expected in error and len(error.strip().splitlines()) == 1, error


def test_added_tokens_past_the_embedding_get_rows_or_are_refused_before_any_engine(random_tiny_draft: Path,
                                                                                  tmp_path: Path, capsys) -> None:
    """A tokenizer whose added ids pass the embedding's rows crashes the engine at warm-up (R1's shared
    tokenizer in a 1.5B folder: 152,065 ids over 151,936 rows): random_weights gives every id a row,
    and a folder without them is refused by ``pipeline check`` in one line, exit 2."""
    import shutil

    from safetensors import safe_open

    from tts_utils import pipeline

    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    shutil.copy2(random_tiny_draft / "tokenizer_config.json", tokenizer)
    spec = json.loads((random_tiny_draft / "tokenizer.json").read_text())
    spec["added_tokens"] += [{**spec["added_tokens"][-1], "id": 512 + i, "content": f"<|extra_{i}|>"} for i in range(4)]
    (tokenizer / "tokenizer.json").write_text(json.dumps(spec))
    raised = write_random_weights("tiny-draft", tokenizer, tmp_path / "raised")
    assert "the embedding gets 516 rows" in capsys.readouterr().out
    with safe_open(raised / "model.safetensors", "pt") as weights:
        assert tuple(weights.get_tensor("model.embed_tokens.weight").shape) == (516, 64)
    assert json.loads((raised / "config.json").read_text())["vocab_size"] == 516
    marker = json.loads((raised / RANDOM_WEIGHTS_MARKER).read_text())
    assert marker["vocab_size_raised"]["shape"] == 512 and marker["vocab_size_raised"]["written"] == 516
    config = StudyConfig.create(study="rows", model="tiny-draft", model_paths=[f"tiny-draft={raised}"],
                                dataset="builtin", num_problems=2, budgets=[16])
    assert len(plan_runs(config, "01_greedy")[0]) == 1  # its marker says why it has 516 rows
    short = shutil.copytree(random_tiny_draft, tmp_path / "short")
    shutil.copy2(tokenizer / "tokenizer.json", short / "tokenizer.json")
    code = pipeline.main(["check", "smoke", "--set", "model=tiny-draft", "--set", f"model_paths=[tiny-draft={short}]",
                          "--set", "dataset=builtin", "--set", "trace_sets=[own]"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"error: tiny-draft ({short}): its tokenizer has 516 ids (added tokens included) but the model's "
            "embedding has 512 rows (config.json vocab_size)") in err
