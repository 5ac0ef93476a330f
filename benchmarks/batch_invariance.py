#!/usr/bin/env python3
"""The batched accuracy pass under vLLM's batch-invariant kernels, per engine setting (issue 22).

One engine per process (offline ``LLM`` API, random weights, token-id prompts, greedy,
``VLLM_BATCH_INVARIANT=1`` set by the caller). It runs N prompts at once (the kit's batched pass),
then the first few prompts alone (the kit's batch-1 check) and compares every token, as
``session.verify_batch_invariance`` does, and times a lone request (what the check costs).
Settings come from the command line: ``--cudagraph-mode``, ``--enforce-eager``; environment
variables such as ``VLLM_USE_BREAKABLE_CUDAGRAPH=1`` are the caller's. Used by
``benchmarks/gpu_batch_invariance.sh``; not used by the notebooks.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--check", type=int, default=3)
    ap.add_argument("--cudagraph-mode", default="")
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    started = time.perf_counter()
    import numpy as np
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    kw: dict = dict(model=args.model, skip_tokenizer_init=True, load_format="dummy", dtype="bfloat16", seed=0,
                    enable_prefix_caching=False, max_model_len=args.tokens + 512, max_num_seqs=args.prompts,
                    gpu_memory_utilization=0.85)
    if args.cudagraph_mode:
        kw["compilation_config"] = {"cudagraph_mode": args.cudagraph_mode}
    if args.enforce_eager:
        kw["enforce_eager"] = True
    llm = LLM(**kw)
    config = llm.llm_engine.vllm_config
    result: dict = {"tag": args.tag, "vllm": vllm.__version__, "startup_s": round(time.perf_counter() - started, 1),
                    "batch_invariant": os.environ.get("VLLM_BATCH_INVARIANT"),
                    "breakable_cudagraph": os.environ.get("VLLM_USE_BREAKABLE_CUDAGRAPH"),
                    "cudagraph_mode": str(config.compilation_config.cudagraph_mode),
                    "compile_mode": str(config.compilation_config.mode), "enforce_eager": args.enforce_eager}
    print("ENGINE", json.dumps(result), flush=True)
    rng = np.random.default_rng(0)
    prompts = [TokensPrompt(prompt_token_ids=rng.integers(1000, 100000, size=int(rng.integers(100, 300))).tolist())
               for _ in range(args.prompts)]
    params = SamplingParams(temperature=0.0, max_tokens=args.tokens, ignore_eos=True, detokenize=False)
    llm.generate(prompts[:2], SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True, detokenize=False),
                 use_tqdm=False)  # warm-up
    sent = time.perf_counter()
    batched = llm.generate(prompts, params, use_tqdm=False)
    batched_s = time.perf_counter() - sent
    tokens = sum(len(o.outputs[0].token_ids) for o in batched)
    result.update(batched_s=round(batched_s, 3), batched_tokens_per_s=round(tokens / batched_s, 1))
    equal, lone_ms = [], []
    for index in range(args.check):
        sent = time.perf_counter()
        alone = llm.generate([prompts[index]], params, use_tqdm=False)[0]
        lone_ms.append(1000 * (time.perf_counter() - sent) / len(alone.outputs[0].token_ids))
        equal.append(list(alone.outputs[0].token_ids) == list(batched[index].outputs[0].token_ids))
    result.update(check_equal=equal, batch1_ms_per_token=round(sum(lone_ms) / len(lone_ms), 3))
    print("RESULT", json.dumps(result), flush=True)
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
