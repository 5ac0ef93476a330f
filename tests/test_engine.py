"""The real vLLM CPU engine on the tiny model: streaming, per-chunk timing, counters, one-pass budgets."""

from __future__ import annotations

import httpx
import pytest

from tts_utils.data import load_problems
from tts_utils.engine.runner import RequestSpec, SamplingConfig, counter_delta, make_client, read_counters, stream_one
from tts_utils.models import get_model

pytestmark = pytest.mark.engine


def _spec(problem, max_tokens: int) -> RequestSpec:
    return RequestSpec(f"{problem.unique_id}#b{max_tokens}", problem.unique_id, 0,
                       get_model("tiny").prompt(problem.problem), max_tokens)


def test_one_pass_prefix_equals_separate_runs(greedy_server, math500_path) -> None:
    """Under greedy decoding, max_tokens=L returns exactly the first L tokens of the long run."""
    problems = load_problems(str(math500_path), 3, 7).problems
    with make_client(greedy_server.headers) as client:
        for problem in problems:
            long_run = stream_one(client, greedy_server.base_url, "tiny", _spec(problem, 96), SamplingConfig())
            assert long_run.completion_tokens == len(long_run.token_ids) > 0
            for budget in (16, 48):
                short = stream_one(client, greedy_server.base_url, "tiny", _spec(problem, budget), SamplingConfig())
                assert short.token_ids == long_run.token_ids[:budget]


def test_stream_records_engine_counts_and_chunk_times(greedy_server, math500_path) -> None:
    problem = load_problems(str(math500_path), 1, 3).problems[0]
    with make_client(greedy_server.headers) as client:
        before = read_counters(client, greedy_server.base_url)
        record = stream_one(client, greedy_server.base_url, "tiny", _spec(problem, 64), SamplingConfig())
        delta = counter_delta(before, read_counters(client, greedy_server.base_url))
    assert record.finish_reason in {"length", "stop"} and record.prompt_tokens > 20
    assert record.chunk_tokens == sorted(record.chunk_tokens) and record.chunk_tokens[-1] == record.completion_tokens
    assert record.chunk_times_s == sorted(record.chunk_times_s) and record.e2e_latency_s >= record.chunk_times_s[-1]
    assert delta["vllm:generation_tokens_total"] == record.completion_tokens
    assert delta["vllm:prompt_tokens_total"] == record.prompt_tokens


def test_requests_without_the_api_key_are_refused(greedy_server) -> None:
    body = {"model": "tiny", "prompt": "hi", "max_tokens": 2}
    assert greedy_server.base_url.startswith("http://127.0.0.1:")
    assert httpx.post(f"{greedy_server.base_url}/v1/completions", json=body).status_code == 401
    wrong = {"Authorization": "Bearer not-the-key"}
    assert httpx.post(f"{greedy_server.base_url}/v1/completions", json=body, headers=wrong).status_code == 401
    ok = httpx.post(f"{greedy_server.base_url}/v1/completions", json=body, headers=greedy_server.headers)
    assert ok.status_code == 200


def test_an_api_key_starting_with_a_dash_stays_one_argument() -> None:
    """token_urlsafe keys start with "-" one time in 64; the engine's parser must still read it as
    the key (a CI run once failed three engine starts on "--api-key: expected one argument")."""
    import argparse

    from tts_utils.engine.server import EngineConfig

    argv = EngineConfig("model", "tiny").command(8000, "-abc_DEF")
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-key", nargs="+")  # vLLM's: one or more keys
    parser.add_argument("--host")
    known, _ = parser.parse_known_args(argv[3:])
    assert known.api_key == ["-abc_DEF"] and known.host == "127.0.0.1"
