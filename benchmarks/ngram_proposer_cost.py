#!/usr/bin/env python3
"""CPU time of vLLM's own n-gram proposer per decoding step, by context length (issue 22).

A speculative engine calls this matcher once per request per step, on the CPU, before the GPU
verifies. This times it on this machine's CPU for contexts of 1K..16K tokens: random tokens (no
match: the look-up scans the whole context) and the real 1.5B trace (matches, as in decoding).
Usage: python benchmarks/ngram_proposer_cost.py [TRACE.jsonl TOKENIZER_DIR]. Not used by notebooks.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from tts_utils.speculation.replay import engine_ngram_matcher


def time_calls(match, tokens: np.ndarray, contexts: list[int], calls: int = 200) -> dict[int, float]:
    """Mean microseconds per matcher call at each context length."""
    out = {}
    for context in contexts:
        window = tokens[:context]
        match(window, 1, 4, context + 64, 5)  # compile / warm
        started = time.perf_counter()
        for _ in range(calls):
            match(window, 1, 4, context + 64, 5)
        out[context] = 1e6 * (time.perf_counter() - started) / calls
    return out


def main() -> None:
    match = engine_ngram_matcher()
    contexts = [1024, 2048, 4096, 8192, 16384]
    rng = np.random.default_rng(0)
    random_tokens = rng.integers(1000, 150000, size=max(contexts)).astype(np.int32)
    print("random tokens (no match):", {k: round(v, 1) for k, v in time_calls(match, random_tokens, contexts).items()})
    if len(sys.argv) == 3:
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
        with open(sys.argv[1]) as handle:
            texts = [json.loads(line)["output"] for line in handle]
        ids = max((tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts[:40]), key=len)
        real = np.asarray(ids, dtype=np.int32)
        usable = [c for c in contexts if c <= len(real)]
        print(f"real trace ({len(real)} tokens):", {k: round(v, 1) for k, v in time_calls(match, real, usable).items()})
    print("microseconds per call, mean of 200")


if __name__ == "__main__":
    main()
