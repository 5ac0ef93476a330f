"""Parameter and profile validation: every mistake is a one-line ConfigError before anything starts."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tts_utils.config import StudyConfig, read_profile
from tts_utils.errors import ConfigError
from tts_utils.hardware import GPU, Hardware
from tts_utils.paths import PARAMS_DIR, REPO_ROOT
from tts_utils.study.plan import plan_runs

CPU_2 = Hardware("test cpu", 2, 24.0)
GPU_2 = Hardware("test cpu", 16, 128.0, gpus=(GPU(0, "H200", 139.0), GPU(1, "H200", 139.0)))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"budgts": [1024]}, "unknown parameter 'budgts' in parameters (did you mean 'budgets'?)"),
        ({"model": "13b"}, "unknown model '13b'"),
        ({"model": "1.5b,s1-7b"}, "unknown model 's1-7b' (did you mean 's1.1-7b'?)"),
        ({"budgets": [1024, 0]}, "budgets must be positive integers, got 0"),
        ({"budgets": [1024, -5]}, "budgets must be positive integers, got -5"),
        ({"budgets": [1024, 2.5]}, "budgets must hold integers, got 2.5"),
        ({"budgets": "1k"}, "budgets must hold integers, got '1k'"),
        ({"tp_sizes": [1, 3]}, "tp_sizes must be powers of two, got 3"),
        ({"concurrency": 0}, "concurrency must be a positive integer, got 0"),
        ({"concurrency": "4"}, "concurrency must be an integer, got '4'"),
        ({"temperature": 5.0}, "temperature must be in [0, 2]"),
        ({"load_format": "dumy"}, "load_format must be auto, dummy, safetensors or pt"),
        ({"study": "../elsewhere"}, "study must be a plain folder name"),
        ({"dry_run": "yes"}, "dry_run must be true or false"),
    ],
)
def test_bad_parameters_are_one_line_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        StudyConfig.create(**values)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_defaults_are_valid_and_lists_become_tuples() -> None:
    config = StudyConfig.create(budgets=[256, 64], tp_sizes="1,2")
    assert config.budgets == (256, 64) and config.max_budget == 256 and config.tp_sizes == (1, 2)


def test_tp_above_the_machine_is_skipped_with_a_reason_or_an_error() -> None:
    config = StudyConfig.create(tp_sizes=[1, 2, 4])
    assert config.usable_tp_sizes(GPU_2) == ([1, 2], ["TP=4 needs 4 devices; this machine has 2 GPUs"])
    assert config.usable_tp_sizes(CPU_2)[0] == [1, 2]
    strict = StudyConfig.create(tp_sizes=[1, 4], skip_unavailable_tp=False)
    with pytest.raises(ConfigError, match="TP=4 needs 4 devices; this machine has 2 GPUs"):
        strict.usable_tp_sizes(GPU_2)
    with pytest.raises(ConfigError, match="no requested TP size fits"):
        StudyConfig.create(tp_sizes=[8]).usable_tp_sizes(GPU_2)


def test_unknown_sweep_notebook_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown sweep notebook '03_specc'"):
        plan_runs(StudyConfig(), "03_specc")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nbudgets: [1024, 2048\nmodel: 7b\n")
    with pytest.raises(ConfigError, match=r"malformed YAML in .*bad.yaml line \d"):
        read_profile(bad)


def test_profile_keys_and_values_are_checked(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("study: x\nconcurrrency: 4\n")
    with pytest.raises(ConfigError, match="unknown parameter 'concurrrency'"):
        read_profile(typo)
    negative = tmp_path / "neg.yaml"
    negative.write_text("budgets: [1024, -1]\n")
    with pytest.raises(ConfigError, match="budgets must be positive"):
        read_profile(negative)


@pytest.mark.parametrize("profile", sorted(PARAMS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_profiles_are_valid(profile: Path) -> None:
    assert read_profile(profile)


def test_cli_reports_a_bad_profile_in_one_line_fast(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: 7b\ntp_sizes: [3]\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tts_utils.pipeline", "reproduce", "--profile", str(bad)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: tp_sizes must be powers of two, got 3"
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"spec_method": "medusa"}, "spec_method must be one of ngram, draft_model, eagle3, suffix, got 'medusa'"),
        ({"spec_tokens": 40}, "spec_tokens must be 1..16, got 40"),
        ({"spec_method": "draft_model", "model": "7b", "draft_model": "1.5bb"}, "draft_model must be a model registry key"),
        ({"spec_method": "draft_model", "model": "1.5b", "draft_model": "7b"}, "draft model 7b (7.62B) is larger than target 1.5b"),
        ({"spec_method": "draft_model", "model": "s1.1-7b", "draft_model": "1.5b"},
         "draft model 1.5b uses another tokenizer (deepseek-r1-distill-qwen) than s1.1-7b (qwen2.5-instruct)"),
        ({"spec_method": "eagle3", "model": "7b"}, "spec_method eagle3 needs draft_model"),
        ({"spec_acceptance": "0.5,0.6,0.1,0.1,0.1"}, "spec_acceptance must be engine, replay, or 5 non-increasing rates"),
        ({"spec_acceptance": "fast"}, "spec_acceptance must be engine, replay, or 5 non-increasing rates"),
        ({"trace_budgets": [1024, 0]}, "trace_budgets must be positive integers, got 0"),
    ],
)
def test_bad_speculation_settings_are_one_line_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        StudyConfig.create(**values)
    assert message in str(error.value) and "\n" not in str(error.value)


def _system_only(**values) -> StudyConfig:
    return StudyConfig.create(**{"model": "7b", **values}, load_format="dummy", dataset="builtin", num_problems=2,
                              budgets=[64], dry_run=True, cpu_kv_cache_gib=4)


def test_every_spec_method_plans_and_dry_runs(tmp_path) -> None:
    """Planning and the dry-run estimate for all four methods (no engine starts); the engine's
    --speculative-config carries the method and its drafter, and the method names the run."""
    import json as json_module

    from tts_utils.paths import MODEL_SHAPES_DIR
    from tts_utils.study.sweep import run_sweep

    head = tmp_path / "eagle3-head"
    head.mkdir()
    (head / "config.json").write_text((MODEL_SHAPES_DIR / "r1-distill-qwen-1.5b" / "config.json").read_text())
    cases = {"ngram": {}, "draft_model": {"draft_model": "1.5b"}, "eagle3": {"draft_model": str(head)}}
    for method, extra in cases.items():
        config = _system_only(spec_method=method, **extra)
        plan = plan_runs(config, "03_spec")[0][0]
        engine_json = json_module.loads(plan.engine.speculative.to_engine_json())
        assert engine_json["method"] == method and engine_json["num_speculative_tokens"] == 5
        assert ("model" in engine_json) == (method != "ngram")
        assert plan.method == f"{method.replace('_', '-')}-spec" and plan.run_name.startswith(f"7b-{plan.method}-tp1-")
        estimate = run_sweep(config, "03_spec")
        assert list(estimate["method"]) == [plan.method] and not estimate["already_complete"].any()
    import importlib.util

    if importlib.util.find_spec("arctic_inference") is None:
        with pytest.raises(ConfigError, match="spec_method suffix needs the arctic-inference package"):
            plan_runs(_system_only(spec_method="suffix"), "03_spec")
    else:
        assert plan_runs(_system_only(spec_method="suffix"), "03_spec")[0][0].method == "suffix-spec"
    with pytest.raises(ConfigError, match="system-only EAGLE-3 needs draft_model to be a local folder"):
        plan_runs(_system_only(spec_method="eagle3", draft_model="some/hub-head"), "03_spec")


def test_system_only_eagle3_shapes_a_head_like_each_target() -> None:
    """Left empty in system-only mode, eagle3's drafter is a one-layer LlamaForCausalLMEagle3 of the
    target's width and vocabulary, fed by vLLM's default target layers (2, L/2, L-3); the run's
    identity names the head by its content-named folder, not by where the cache lives."""
    import json as json_module

    plans = {plan.model.key: plan for plan in plan_runs(_system_only(spec_method="eagle3", model="1.5b,7b"),
                                                         "03_spec")[0]}
    heads = {key: json_module.loads((Path(plan.engine.speculative.draft_model_path) / "config.json").read_text())
             for key, plan in plans.items()}
    assert heads["7b"]["hidden_size"] == 3584 and heads["1.5b"]["hidden_size"] == 1536
    assert heads["7b"]["eagle_aux_hidden_state_layer_ids"] == [2, 14, 25] and heads["7b"]["num_hidden_layers"] == 1
    assert heads["7b"]["vocab_size"] == 152064 and heads["7b"]["draft_vocab_size"] == 32000
    assert heads["7b"]["architectures"] == ["LlamaForCausalLMEagle3"]
    named = plans["7b"].identity()["engine"]["speculative"]["draft_model_path"]
    assert named.startswith("eagle3-head-") and "/" not in named
    with pytest.raises(ConfigError, match="spec_method eagle3 needs draft_model"):
        StudyConfig.create(model="7b", spec_method="eagle3")


def test_synthetic_acceptance_is_refused_before_launch_on_the_cpu_engine() -> None:
    config = StudyConfig.create(dataset="builtin", num_problems=2, spec_acceptance="0.4,0.2,0.1,0.05,0.02 @ test")
    with pytest.raises(ConfigError, match="synthetic acceptance .* needs a GPU engine"):
        plan_runs(config, "03_spec")
    # A dry run starts nothing: it plans a GPU study here (and renders its finished runs).
    dry = plan_runs(replace(config, dry_run=True), "03_spec")[0][0]
    assert dry.engine.speculative.synthetic_acceptance_rates == (0.4, 0.2, 0.1, 0.05, 0.02)


def test_a_drafter_shape_without_weights_is_refused_outside_system_only() -> None:
    config = StudyConfig.create(dataset="builtin", num_problems=2, budgets=[64], spec_method="draft_model",
                                draft_model="tiny-draft")
    with pytest.raises(ConfigError, match="model 'tiny-draft' is a shape without weights: system-only mode"):
        plan_runs(config, "03_spec")


def test_cudagraph_mode_reaches_the_engine_and_names_runs_only_when_set() -> None:
    """A GPU engine gets --compilation-config; runs at the default mode keep their old names."""
    config = StudyConfig.create(dataset="builtin", num_problems=2, budgets=[64])
    plan = plan_runs(config, "03_spec")[0][0]
    assert "cudagraph_mode" not in plan.identity()["engine"]
    assert "presence_penalty" not in plan.identity()["sampling"]
    full = replace(plan, engine=replace(plan.engine, cudagraph_mode="FULL"))
    argv = full.engine.command(8000, "key")
    assert argv[argv.index("--compilation-config") + 1] == '{"cudagraph_mode": "FULL"}'
    assert full.identity()["engine"]["cudagraph_mode"] == "FULL" and full.run_name != plan.run_name
    with pytest.raises(ConfigError, match="cudagraph_mode must be one of"):
        StudyConfig.create(cudagraph_mode="full")
    with pytest.raises(ConfigError, match="cudagraph_mode FULL needs a GPU engine"):
        plan_runs(StudyConfig.create(dataset="builtin", num_problems=2, cudagraph_mode="FULL"), "03_spec")
