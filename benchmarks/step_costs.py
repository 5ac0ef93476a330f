#!/usr/bin/env python3
"""What a decoding step costs on a GPU engine, by kind of step (issue 22; docs/engine-facts.md).

One engine configuration per process, through vLLM's offline ``LLM`` API (random weights, token-id
prompts, batch 1). In one engine it times several request kinds, 1,024 output tokens each:

- ``greedy``: plain greedy decoding. Random-weight greedy output loops, so an n-gram engine finds a
  draft at nearly every step (verified at the synthetic acceptance the engine was started with).
- ``greedy-penalty``: greedy with ``presence_penalty`` 2.0: the output stops repeating, so an n-gram
  engine finds almost no draft. This is the step without a draft the way the paper decodes.
- ``t1``: temperature 1 (seeded), the kit's earlier no-draft probe.

Per request it prints decode ms per token, ms per engine step (steps = tokens - accepted drafts) and
the speculation counters. ``--profile-steps`` also records a torch-profiler window of one short
request of each kind and prints GPU kernel time and kernel launches per step, to show where the
step's wall time goes. Used by ``benchmarks/gpu_step_costs.sh``; not used by the notebooks.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import time

KINDS = {"greedy": (0.0, 0.0), "greedy-penalty": (0.0, 2.0), "t1": (1.0, 0.0)}


def _counters(llm) -> dict:
    names = {"vllm:spec_decode_num_drafts": "drafts", "vllm:spec_decode_num_draft_tokens": "draft_tokens",
             "vllm:spec_decode_num_accepted_tokens": "accepted"}
    out = dict.fromkeys(names.values(), 0)
    for metric in llm.get_metrics():
        if metric.name in names:
            out[names[metric.name]] += int(getattr(metric, "value", 0))
    return out


def _kernel_summary(trace_dir: str) -> dict:
    """GPU kernel time and launches in the newest torch-profiler trace of ``trace_dir``."""
    files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.json*"), recursive=True), key=os.path.getmtime)
    if not files:
        return {"error": f"no trace in {trace_dir}"}
    opener = gzip.open if files[-1].endswith(".gz") else open
    with opener(files[-1], "rt") as handle:
        events = json.load(handle).get("traceEvents", [])
    kernels = [e for e in events if e.get("cat") == "kernel"]
    launches = [e for e in events if e.get("cat") == "cuda_runtime" and "Launch" in e.get("name", "")]
    graphs = [e for e in events if e.get("cat") == "cuda_runtime" and "GraphLaunch" in e.get("name", "")]
    span = [e for e in events if e.get("ph") == "X" and "ts" in e and "dur" in e]
    wall_us = (max(e["ts"] + e["dur"] for e in span) - min(e["ts"] for e in span)) if span else 0
    return {"trace": os.path.basename(files[-1]), "kernel_us": sum(e.get("dur", 0) for e in kernels),
            "kernels": len(kernels), "launch_calls": len(launches), "graph_launches": len(graphs),
            "wall_us": wall_us}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="folder with config.json and a tokenizer")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--spec", choices=["none", "ngram"], default="none")
    ap.add_argument("--rates", default="", help="synthetic acceptance rates, comma-separated")
    ap.add_argument("--cudagraph-mode", default="")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--kinds", default="greedy,greedy-penalty,t1")
    ap.add_argument("--profile-steps", type=int, default=0, help="tokens per profiled request (0: none)")
    ap.add_argument("--profile-dir", default="/tmp/step-profiles", help="where torch-profiler traces go")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    started = time.perf_counter()
    import numpy as np
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    kw: dict = dict(model=args.model, skip_tokenizer_init=True, load_format="dummy", dtype="bfloat16", seed=0,
                    enable_prefix_caching=False, max_model_len=args.tokens + 512, max_num_seqs=8,
                    gpu_memory_utilization=0.85, disable_log_stats=False)
    if args.cudagraph_mode:
        kw["compilation_config"] = {"cudagraph_mode": args.cudagraph_mode}
    if args.spec == "ngram":
        kw["speculative_config"] = {"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_min": 1,
                                    "prompt_lookup_max": 4}
        if args.rates:
            kw["speculative_config"].update({"rejection_sample_method": "synthetic",
                                             "synthetic_acceptance_rates": [float(r) for r in args.rates.split(",")]})
    if args.profile_steps:
        kw["profiler_config"] = {"profiler": "torch", "torch_profiler_dir": os.path.abspath(args.profile_dir),
                                 "torch_profiler_with_stack": False, "ignore_frontend": True}
    llm = LLM(**kw)
    config = llm.llm_engine.vllm_config
    engine = {"tag": args.tag, "vllm": vllm.__version__, "spec": args.spec, "rates": args.rates,
              "startup_s": round(time.perf_counter() - started, 1),
              "cudagraph_mode": str(config.compilation_config.cudagraph_mode),
              "async_scheduling": getattr(config.scheduler_config, "async_scheduling", None)}
    print("ENGINE", json.dumps(engine), flush=True)
    rng = np.random.default_rng(0)
    vocab = config.model_config.get_vocab_size()
    low, high = min(1000, vocab // 4), min(100000, vocab)
    prompt = TokensPrompt(prompt_token_ids=rng.integers(low, high, size=200).tolist())

    def run(kind: str, tokens: int) -> dict:
        temperature, penalty = KINDS[kind]
        params = SamplingParams(temperature=temperature, presence_penalty=penalty, max_tokens=tokens,
                                ignore_eos=True, detokenize=False, seed=1234 if temperature > 0 else None)
        before = _counters(llm) if args.spec != "none" else None
        sent = time.perf_counter()
        output = llm.generate([prompt], params, use_tqdm=False)[0]
        e2e_s = time.perf_counter() - sent
        n = len(output.outputs[0].token_ids)
        metrics = output.metrics
        decode_s = metrics.last_token_ts - metrics.first_token_ts
        row = {"kind": kind, "tokens": n, "e2e_s": round(e2e_s, 4),
               "decode_ms_per_token": round(1000 * decode_s / (n - 1), 4)}
        accepted = 0
        if before is not None:
            after = _counters(llm)
            delta = {k: after[k] - before[k] for k in after}
            accepted = delta["accepted"]
            row.update(delta)
        row["steps"] = (n - 1) - accepted
        row["ms_per_step"] = round(1000 * decode_s / row["steps"], 4)
        return row

    rows = []
    run("greedy", 64)  # warm-up
    for kind in args.kinds.split(","):
        for _ in range(args.reps):
            row = run(kind, args.tokens)
            rows.append(row)
            print("RUN", args.tag, json.dumps(row), flush=True)
    profiles = []
    trace_dir = os.path.abspath(args.profile_dir)
    if args.profile_steps:
        for kind in args.kinds.split(","):
            llm.start_profile()
            row = run(kind, args.profile_steps)
            llm.stop_profile()
            time.sleep(3)  # the worker writes its trace after stop
            row["profile"] = _kernel_summary(trace_dir)
            if "kernels" in row["profile"]:
                row["profile"]["kernel_us_per_step"] = round(row["profile"]["kernel_us"] / row["steps"], 1)
                row["profile"]["kernels_per_step"] = round(row["profile"]["kernels"] / row["steps"], 1)
            profiles.append(row)
            print("PROFILE", args.tag, json.dumps(row), flush=True)
    with open(args.json, "w") as handle:
        json.dump({"engine": engine, "runs": rows, "profiles": profiles}, handle, indent=1)


if __name__ == "__main__":
    main()
