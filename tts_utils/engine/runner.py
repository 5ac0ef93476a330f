"""Send requests to a running engine and time every streamed chunk.

Each request streams ``/v1/completions`` with continuous usage stats, so every chunk carries the
engine's own cumulative ``completion_tokens``; with speculation one chunk holds several tokens, so
per-token times come from chunk arrival times and those counts. ``/metrics`` is read before and
after a run for the speculation counters. Used by sweep.py (01-03).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tts_utils.errors import RequestError

# Counters read around each measured run (deltas give acceptance and generated tokens).
METRIC_COUNTERS = (
    "vllm:generation_tokens_total",
    "vllm:prompt_tokens_total",
    "vllm:spec_decode_num_drafts_total",
    "vllm:spec_decode_num_draft_tokens_total",
    "vllm:spec_decode_num_accepted_tokens_total",
)
# The engine's own request timings (histogram sums and counts): the reference for harness overhead.
ENGINE_HISTOGRAMS = (
    "vllm:e2e_request_latency_seconds",
    "vllm:time_to_first_token_seconds",
    "vllm:request_time_per_output_token_seconds",
    "vllm:inter_token_latency_seconds",
)


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings; greedy by default, as in the paper."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    ignore_eos: bool = False  # system-only mode: random weights, so every request runs to its budget
    # Only the no-draft probe sets it (plan.PROBE_PRESENCE_PENALTY): greedy random-weight output
    # then stops repeating itself, so n-gram look-up finds no draft.
    presence_penalty: float = 0.0

    def identity(self) -> dict:
        """The fields that name a run; a zero presence penalty is left out (older runs' names)."""
        fields = asdict(self)
        if not fields["presence_penalty"]:
            fields.pop("presence_penalty")
        return fields


@dataclass(frozen=True)
class RequestSpec:
    """One request: a problem (and sample index) at the run's largest budget."""

    request_id: str
    problem_id: str
    sample_index: int
    prompt: str | list[int]  # text, or token ids (budget forcing's continuations)
    max_tokens: int


@dataclass
class RequestRecord:
    """What one streamed request returned, with the arrival time of every chunk.

    ``chunk_times_s`` are seconds after the request was sent; ``chunk_tokens`` the engine's
    cumulative completion-token count at that chunk. ``e2e_latency_s`` ends when the stream ends.
    """

    request_id: str
    problem_id: str
    sample_index: int
    max_tokens: int
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    sent_at_unix_s: float
    e2e_latency_s: float
    chunk_times_s: list[float]
    chunk_tokens: list[int]
    token_ids: list[int]
    text: str
    # The prompt as the engine tokenised it (vLLM sends it with return_token_ids); kept out of
    # requests.jsonl, read by budget forcing to check where its continuations start.
    prompt_token_ids: list[int] | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        record = asdict(self)
        record.pop("prompt_token_ids")
        return record


def build_payload(served_name: str, spec: RequestSpec, sampling: SamplingConfig) -> dict:
    """The JSON body of one streaming completion request."""
    return {
        "model": served_name,
        "prompt": spec.prompt,
        "max_tokens": spec.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed + spec.sample_index,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        "return_token_ids": True,
        # Keep reasoning markers such as "<|im_start|>answer" in the text the grader reads.
        "skip_special_tokens": False,
        # The prompt templates spell out their special tokens (BOS included); adding them again
        # would give the R1 distills a second BOS.
        "add_special_tokens": False,
        "ignore_eos": sampling.ignore_eos,
        **({"presence_penalty": sampling.presence_penalty} if sampling.presence_penalty else {}),
    }


def stream_one(client: httpx.Client, base_url: str, served_name: str, spec: RequestSpec,
               sampling: SamplingConfig) -> RequestRecord:
    """Send one streaming request and record every chunk's arrival."""
    payload = build_payload(served_name, spec, sampling)
    chunk_times: list[float] = []
    chunk_tokens: list[int] = []
    token_ids: list[int] = []
    engine_prompt_ids: list[int] | None = None
    text_parts: list[str] = []
    prompt_tokens = completion_tokens = 0
    finish_reason = None
    sent_at = time.time()
    start = time.perf_counter()
    try:
        with client.stream("POST", f"{base_url}/v1/completions", json=payload) as response:
            if response.status_code != 200:
                raise RequestError(f"HTTP {response.status_code}: {response.read().decode()[:500]}")
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                now = time.perf_counter() - start
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                usage = chunk.get("usage") or {}
                choices = chunk.get("choices") or []
                if not choices:
                    continue
                choice = choices[0]
                engine_prompt_ids = choice.get("prompt_token_ids") or engine_prompt_ids
                new_ids = choice.get("token_ids") or []
                if new_ids:
                    token_ids.extend(new_ids)
                    text_parts.append(choice.get("text") or "")
                    completion_tokens = usage.get("completion_tokens", len(token_ids))
                    chunk_times.append(now)
                    chunk_tokens.append(completion_tokens)
                prompt_tokens = usage.get("prompt_tokens", prompt_tokens)
                finish_reason = choice.get("finish_reason") or finish_reason
    except httpx.HTTPError as error:
        raise RequestError(f"request {spec.request_id} failed: {error!r}") from error
    end = time.perf_counter() - start
    if finish_reason is None:
        raise RequestError(f"request {spec.request_id}: stream ended without a finish reason")
    return RequestRecord(
        request_id=spec.request_id, problem_id=spec.problem_id, sample_index=spec.sample_index,
        max_tokens=spec.max_tokens, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        finish_reason=finish_reason, sent_at_unix_s=sent_at, e2e_latency_s=end,
        chunk_times_s=chunk_times, chunk_tokens=chunk_tokens, token_ids=token_ids,
        text="".join(text_parts), prompt_token_ids=engine_prompt_ids,
    )


def make_client(headers: dict[str, str], timeout_s: float = 3600.0) -> httpx.Client:
    """One HTTP client per run; long read timeout because 16K-token answers take minutes."""
    return httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0),
                        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256))


def run_requests(
    client: httpx.Client,
    base_url: str,
    served_name: str,
    specs: Iterable[RequestSpec],
    sampling: SamplingConfig,
    concurrency: int,
    on_record: Callable[[RequestRecord], None],
    progress: Callable[[], None] | None = None,
) -> int:
    """Run requests with at most ``concurrency`` in flight; hand each finished record to
    ``on_record`` (in this thread, so a single writer appends to disk). Returns the count done.

    Concurrency 1 is latency mode: one request at a time, as the paper measures.
    """
    done = 0
    pending: set[Future] = set()
    stop = threading.Event()
    spec_iter: Iterator[RequestSpec] = iter(specs)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tts-request")
    try:
        while True:
            while len(pending) < concurrency and not stop.is_set():
                spec = next(spec_iter, None)
                if spec is None:
                    stop.set()
                    break
                pending.add(pool.submit(stream_one, client, base_url, served_name, spec, sampling))
            if not pending:
                pool.shutdown(wait=True)
                return done
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                on_record(future.result())
                done += 1
                if progress is not None:
                    progress()
    except BaseException:
        # Do not wait for requests in flight: on an interrupt the engine is stopped next, which
        # ends their streams; waiting here would hold the interrupt for a whole answer.
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise


def read_counters(client: httpx.Client, base_url: str) -> dict[str, float]:
    """Current values of ``METRIC_COUNTERS`` and the sums and counts of ``ENGINE_HISTOGRAMS``
    (summed over label sets), plus per-position acceptance."""
    response = client.get(f"{base_url}/metrics")
    response.raise_for_status()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            name = sample.name
            if name in METRIC_COUNTERS or (
                name.endswith(("_sum", "_count")) and name.rsplit("_", 1)[0] in ENGINE_HISTOGRAMS
            ):
                values[name] = values.get(name, 0.0) + sample.value
            elif name == "vllm:spec_decode_num_accepted_tokens_per_pos_total":
                key = f"{name}[{sample.labels.get('position', '?')}]"
                values[key] = values.get(key, 0.0) + sample.value
    return values


def counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """``after - before`` for every counter seen in either snapshot."""
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in sorted(set(before) | set(after))}
