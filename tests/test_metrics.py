"""Cost arithmetic, per-budget views of one streamed run, and summaries, on known numbers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tts_utils.study.budgets import record_for_budget, view_at_budget
from tts_utils.study.metrics import cost_per_token, speculation_stats, summarise, time_per_output_token

# 10 tokens in 4 chunks (speculation delivers several per chunk).
RECORD = {"completion_tokens": 10, "max_tokens": 16, "finish_reason": "stop", "e2e_latency_s": 1.10,
          "chunk_times_s": [0.20, 0.50, 0.80, 1.00], "chunk_tokens": [1, 4, 8, 10]}


def test_cost_per_token_is_gpus_times_latency_over_tokens() -> None:
    assert cost_per_token(2, 3.0, 600) == pytest.approx(0.01)
    assert cost_per_token(4, 8.0, 1000) == pytest.approx(0.032)
    assert math.isnan(cost_per_token(1, 1.0, 0))


def test_tpot_excludes_the_first_token() -> None:
    assert time_per_output_token(2.2, 0.2, 101) == pytest.approx(0.02)
    assert math.isnan(time_per_output_token(1.0, 0.5, 1))


@pytest.mark.parametrize(
    ("budget", "tokens", "latency", "hit"),
    [(1, 1, 0.20, True), (3, 3, 0.50, True), (4, 4, 0.50, True), (5, 5, 0.80, True),
     (10, 10, 1.10, False), (16, 10, 1.10, False)],
)
def test_view_at_budget_uses_the_chunk_that_carried_the_budget_token(budget, tokens, latency, hit) -> None:
    view = view_at_budget(RECORD, budget)
    assert (view.output_tokens, view.e2e_latency_s, view.hit_budget) == (tokens, pytest.approx(latency), hit)
    assert view.ttft_s == pytest.approx(0.20)


def test_record_for_budget_prefers_the_shortest_covering_run() -> None:
    runs = [{"max_tokens": 64}, {"max_tokens": 16}, {"max_tokens": 32}]
    assert record_for_budget(runs, 20)["max_tokens"] == 32
    assert record_for_budget(runs, 64)["max_tokens"] == 64
    with pytest.raises(ValueError):
        record_for_budget(runs, 65)


def test_speculation_stats_from_counter_deltas() -> None:
    stats = speculation_stats({"vllm:spec_decode_num_drafts_total": 10.0,
                               "vllm:spec_decode_num_draft_tokens_total": 50.0,
                               "vllm:spec_decode_num_accepted_tokens_total": 20.0})
    assert stats["spec_acceptance_rate"] == pytest.approx(0.4)
    assert stats["spec_mean_acceptance_length"] == pytest.approx(3.0)
    assert math.isnan(speculation_stats({})["spec_acceptance_rate"])


def test_summary_cost_is_a_ratio_of_totals() -> None:
    rows = pd.DataFrame({
        "run": ["r", "r"], "budget_tokens": [100, 100], "request_id": ["a", "b"],
        "strict_correct": [True, False], "lenient_correct": [True, True], "grade_status": ["ok", "timeout"],
        "output_tokens": [100, 50], "hit_budget": [True, False], "e2e_latency_s": [2.0, 1.0],
        "ttft_s": [0.1, 0.1], "tpot_s": [0.019, 0.018], "num_gpus": [2, 2],
    })
    row = summarise(rows, ["run", "budget_tokens"]).iloc[0]
    assert row["cost_gpu_s_per_token"] == pytest.approx(2 * 3.0 / 150)
    assert row["accuracy_strict"] == 0.5 and row["accuracy_lenient"] == 1.0 and row["ungradable"] == 1
    assert row["mean_e2e_latency_s"] == pytest.approx(1.5) and row["tokens_per_s"] == pytest.approx(50.0)
