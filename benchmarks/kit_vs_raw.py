"""Does the kit slow a request down? Alternate kit and raw-vLLM requests on one GPU and compare.

The kit's path (OpenAI server, per-token streaming, the kit's client) and vLLM's offline ``LLM``
API run the same model shape with random weights, side by side on one GPU (each with part of its
memory), never at the same time: kit, raw, kit, raw, ... with the same prompt token count,
greedy, ``ignore_eos``, the same output length. Prints ms per output token for each and the
kit/raw ratio with a 95% bootstrap interval; ``--json`` writes the same.

    python benchmarks/kit_vs_raw.py --model 1.5b --pairs 12 --max-tokens 1024 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="1.5b")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--memory-share", type=float, default=0.4, help="GPU memory share of each engine")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from tts_utils.data import load_problems
    from tts_utils.engine.model_source import load_tokenizer, resolve
    from tts_utils.engine.runner import RequestSpec, SamplingConfig, make_client, stream_one
    from tts_utils.engine.server import EngineConfig, VLLMServer
    from tts_utils.models import get_model

    model = get_model(args.model)
    source = resolve(model, "dummy")
    prompt = model.prompt(load_problems("builtin", 1, 0).problems[0].problem)
    prompt_ids = load_tokenizer(source)(prompt, add_special_tokens=False)["input_ids"]
    max_len = len(prompt_ids) + args.max_tokens + 64
    config = EngineConfig(source.engine_path, model.key, dtype="bfloat16", max_model_len=max_len, load_format="dummy",
                          gpu_memory_utilization=args.memory_share)
    log = Path("kit_vs_raw_engine.log")
    with VLLMServer(config, log) as server, make_client(server.headers) as client:
        raw = LLM(model=source.engine_path, load_format="dummy", dtype="bfloat16", max_model_len=max_len,
                  gpu_memory_utilization=args.memory_share, enable_prefix_caching=False, seed=0)
        params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True)
        spec = RequestSpec("bench", "p", 0, prompt, args.max_tokens)
        sampling = SamplingConfig(ignore_eos=True)
        stream_one(client, server.base_url, model.key, spec, sampling)  # warm both
        raw.generate([TokensPrompt(prompt_token_ids=prompt_ids)], params, use_tqdm=False)
        kit_ms, raw_ms = [], []
        for _ in range(args.pairs):
            record = stream_one(client, server.base_url, model.key, spec, sampling)
            kit_ms.append(record.e2e_latency_s / record.completion_tokens * 1e3)
            started = time.perf_counter()
            output = raw.generate([TokensPrompt(prompt_token_ids=prompt_ids)], params, use_tqdm=False)[0]
            raw_ms.append((time.perf_counter() - started) / len(output.outputs[0].token_ids) * 1e3)
    kit, raw_ = np.array(kit_ms), np.array(raw_ms)
    rng = np.random.default_rng(0)
    ratios = [rng.choice(kit, len(kit)).mean() / rng.choice(raw_, len(raw_)).mean() for _ in range(4000)]
    result = {"model": model.key, "pairs": args.pairs, "max_tokens": args.max_tokens,
              "prompt_tokens": len(prompt_ids), "kit_ms_per_token": kit_ms, "raw_ms_per_token": raw_ms,
              "kit_mean_ms": kit.mean(), "raw_mean_ms": raw_.mean(), "ratio": kit.mean() / raw_.mean(),
              "ratio_ci95": [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]}
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("per_token")}, indent=2, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
