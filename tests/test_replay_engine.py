"""Replay against the real vLLM CPU engine: replayed n-gram steps are the engine's steps, exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tts_utils.data import load_problems
from tts_utils.engine.runner import RequestSpec, SamplingConfig, counter_delta, make_client, read_counters, stream_one
from tts_utils.models import get_model
from tts_utils.speculation.replay import NgramSettings, replay_steps

pytestmark = pytest.mark.engine

SPEC = "vllm:spec_decode_num_"


def _prompts(math500_path) -> list[str]:
    """Three real problems: the first steps of each fail some drafts before random weights fall
    into the loop that accepts nearly every draft."""
    template = get_model("tiny").prompt
    return [template(p.problem) for p in load_problems(str(math500_path), 3, 11).problems]


def test_replayed_steps_equal_streamed_chunks_and_engine_counters(ngram_server, tiny_tokenizer, math500_path) -> None:
    budget, settings = 200, NgramSettings(5, 1, 4)
    sampling = SamplingConfig(ignore_eos=True)
    totals = {"drafts": 0, "failed": 0, "steps": 0, "merged": 0}
    with make_client(ngram_server.headers) as client:
        for index, prompt in enumerate(_prompts(math500_path)):
            # A longer run first: its tokens past the budget are what the engine verified the last
            # drafts against (greedy output has the same prefix at any max_tokens).
            long = stream_one(client, ngram_server.base_url, "tiny", RequestSpec("long", "p", 0, prompt, budget + 40),
                              sampling)
            before = read_counters(client, ngram_server.base_url)
            run = stream_one(client, ngram_server.base_url, "tiny", RequestSpec(f"r{index}", "p", 0, prompt, budget),
                             sampling)
            delta = counter_delta(before, read_counters(client, ngram_server.base_url))
            prompt_ids = tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
            assert len(prompt_ids) == run.prompt_tokens and run.token_ids == long.token_ids[:budget]

            steps = replay_steps(prompt_ids, long.token_ids, settings)
            count = int(np.searchsorted(steps.produced, budget) + 1)
            replayed = steps.emitted[:count].tolist()
            replayed[-1] -= int(steps.produced[count - 1]) - budget  # the engine stops at max_tokens
            # One chunk per engine step, unless the server's output loop fell behind and merged
            # consecutive steps into one chunk (seen on a loaded 2-core machine): then every chunk
            # still ends exactly where a replayed step ends.
            step_ends = np.cumsum(replayed).tolist()
            assert set(run.chunk_tokens) <= set(step_ends), f"prompt {index}: a chunk ends inside a replayed step"
            totals["steps"] += len(step_ends)
            totals["merged"] += len(step_ends) - len(run.chunk_tokens)
            if len(run.chunk_tokens) == len(step_ends):
                assert np.diff([0, *run.chunk_tokens]).tolist() == replayed

            drafts, accepted = steps.draft_tokens[1:count], steps.accepted[1:count]
            assert delta[f"{SPEC}drafts_total"] == (drafts > 0).sum()
            assert delta[f"{SPEC}draft_tokens_total"] == drafts.sum()
            assert delta[f"{SPEC}accepted_tokens_total"] == accepted.sum()
            for position in range(settings.num_speculative_tokens):
                assert delta[f"{SPEC}accepted_tokens_per_pos_total[{position}]"] == (accepted > position).sum()
            totals["drafts"] += int((drafts > 0).sum())
            totals["failed"] += int((accepted < drafts).sum())
    print(f"\nreplay = engine on 3 prompts: {totals['steps']} steps ({totals['merged']} streamed merged with the "
          f"next), {totals['drafts']} drafts, {totals['failed']} of them failed")
    assert totals["failed"] >= 3, "the prompts should make some drafts fail"
    assert totals["merged"] <= totals["steps"] // 10, "most steps should stream as chunks of their own"


def test_draft_model_speculation_runs_on_the_cpu_engine(math500_path) -> None:
    """spec_method draft_model through the whole sweep: the tiny model drafting for itself, so
    every proposed token must be accepted, and every decoding step carries a k-token draft."""
    import pandas as pd

    from tts_utils.config import StudyConfig
    from tts_utils.study.plan import plan_runs
    from tts_utils.study.sweep import run_sweep

    config = StudyConfig.create(study="draft", dataset=str(math500_path), num_problems=2, budgets=[32, 64],
                                spec_method="draft_model", draft_model="tiny", spec_tokens=3, cpu_kv_cache_gib=1,
                                extra_engine_args=["--enforce-eager"])
    plan = plan_runs(config, "03_spec")[0][0]
    assert plan.method == "draft-model-spec" and '"method": "draft_model"' in plan.engine.speculative.to_engine_json()
    assert run_sweep(config, "03_spec")["outcome"].tolist() == ["completed"]
    summary = pd.read_csv(plan.folder().summary_file)
    assert (summary["spec_acceptance_rate"] == 1.0).all() and (summary["spec_num_drafts"] > 0).all()
    steps = pd.read_csv(plan.folder().steps_file)
    decoding = steps[steps["step"] != "prefill"]
    assert (decoding["step"] == "draft").all() and (decoding["draft_tokens"] == 3).all()


def test_worker_extension_reaches_the_engine_and_refuses_without_synthetic_sampling(ngram_server) -> None:
    """The break-even sweep's rate switch (worker_ext.py) is loaded into the real engine's worker
    and reached through /collective_rpc; this engine samples normally, so it must refuse, and keep
    serving (an exception in a worker RPC would kill the engine)."""
    import json

    from tts_utils.engine.runner import make_client

    with make_client(ngram_server.headers) as client:
        response = client.post(f"{ngram_server.base_url}/collective_rpc", timeout=60.0,
                               json={"method": "tts_set_synthetic_acceptance", "args": [json.dumps([0.5] * 5)]})
        alive = client.get(f"{ngram_server.base_url}/health")
    assert response.status_code == 200 and alive.status_code == 200
    assert response.json()["results"] == [{"error": "the engine was not started with synthetic rejection sampling"}]


def test_eagle3_speculation_runs_on_the_cpu_engine(math500_path) -> None:
    """spec_method eagle3 in system-only mode through the whole sweep: the kit shapes a one-layer
    head like the tiny target (model_source.eagle3_head) and the CPU engine drafts with it over
    random weights, k tokens at every decoding step."""
    import json

    import pandas as pd

    from tts_utils.config import StudyConfig
    from tts_utils.study.plan import plan_runs
    from tts_utils.study.sweep import run_sweep

    config = StudyConfig.create(study="eagle3", dataset=str(math500_path), num_problems=2, budgets=[32, 64],
                                load_format="dummy", spec_method="eagle3", spec_tokens=3, cpu_kv_cache_gib=1,
                                extra_engine_args=["--enforce-eager"])
    plan = plan_runs(config, "03_spec")[0][0]
    head = json.loads((Path(plan.engine.speculative.draft_model_path) / "config.json").read_text())
    assert head["architectures"] == ["LlamaForCausalLMEagle3"] and head["num_hidden_layers"] == 1
    assert plan.method == "eagle3-spec" and plan.identity()["engine"]["speculative"]["draft_model_path"].startswith(
        "eagle3-head-")
    assert run_sweep(config, "03_spec")["outcome"].tolist() == ["completed"]
    summary = pd.read_csv(plan.folder().summary_file)
    assert (summary["spec_num_drafts"] > 0).all() and (summary["total_output_tokens"] > 0).all()
    steps = pd.read_csv(plan.folder().steps_file)
    decoding = steps[steps["step"] != "prefill"]
    assert (decoding["step"] == "draft").all() and (decoding["draft_tokens"] == 3).all()


def test_a_smaller_draft_model_drafts_for_the_tiny_model_on_the_cpu_engine(math500_path) -> None:
    """System-only draft_model with a drafter smaller than its target: ``tiny-draft`` (1 layer,
    hidden 64, the tiny tokenizer) drafting for the tiny model, both with random weights. Every
    decoding step verifies a k-token draft, and the two random models disagree on some of them."""
    import pandas as pd

    from tts_utils.config import StudyConfig
    from tts_utils.store import read_records
    from tts_utils.study.plan import PROBE_PRESENCE_PENALTY, plan_runs
    from tts_utils.study.sweep import run_sweep

    config = StudyConfig.create(study="small-draft", dataset=str(math500_path), num_problems=2, budgets=[32, 64],
                                load_format="dummy", spec_method="draft_model", draft_model="tiny-draft",
                                spec_tokens=3, cpu_kv_cache_gib=1, extra_engine_args=["--enforce-eager"])
    plan = plan_runs(config, "03_spec")[0][0]
    assert plan.identity()["engine"]["speculative"]["draft_model_path"].startswith("shape-tiny-draft-")
    assert run_sweep(config, "03_spec")["outcome"].tolist() == ["completed"]
    summary = pd.read_csv(plan.folder().summary_file)
    print(summary[["budget_tokens", "spec_num_drafts", "spec_acceptance_rate"]].to_string())
    assert (summary["spec_num_drafts"] > 0).all() and (summary["spec_acceptance_rate"] < 1.0).all()
    steps = pd.read_csv(plan.folder().steps_file)
    decoding = steps[steps["step"] != "prefill"]
    assert (decoding["step"] == "draft").all() and (decoding["draft_tokens"] == 3).all()
    # The no-draft probe decodes greedily with a presence penalty (the engine accepted it), kept apart.
    session = read_records(plan.folder().segments_file)[-1]
    assert session["probe_sampling"]["temperature"] == 0.0
    assert session["probe_sampling"]["presence_penalty"] == PROBE_PRESENCE_PENALTY
    assert len(read_records(plan.folder().probe_file)) == plan.probe_requests == 2
