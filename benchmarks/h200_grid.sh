#!/usr/bin/env bash
# The one-H200 round of issues 11 and 12, system-only, one engine per configuration:
# 1. the fast grid (params/h200-grid.yaml) with its estimate written first: 1.5B batched pass of
#    64 problems (VLLM_BATCH_INVARIANT) with its live batch-1 check, then greedy latency on 4 of them
#    with the prediction check; 7B and 14B batched passes only;
# 2. the break-even sweep in the h200-realistic study (whose greedy runs, copied from
#    reference_results/, give plain decoding at the same 1K budget): n-gram for 1.5B/7B/14B, then
#    1.5B drafting 7B and 14B, acceptance lengths 1.25..6.
# Run from the repo root with vLLM importable; extra arguments go to every command (e.g.
# --set dataset=FILE where the hub is unreachable). Results go to $TTS_OUTPUTS_DIR.
set -u
GRID=params/h200-grid.yaml
LENGTHS="acceptance_lengths=[1.25,1.5,2.0,3.0,4.5,6.0]"
REQUESTS="acceptance_requests=1"  # as the reference sweeps were measured
python3 -m tts_utils estimate --profile $GRID --write "$@"; echo "== estimate -> $?"
python3 -m tts_utils sweep 01_greedy --profile $GRID --set model=1.5b "$@"; echo "== grid 1.5b -> $?"
python3 -m tts_utils sweep 01_greedy --profile $GRID --set model=7b,14b --only baseline-batched "$@"; echo "== grid batched 7b,14b -> $?"
mkdir -p "$TTS_OUTPUTS_DIR/runs" && cp -rn reference_results/runs/h200-realistic "$TTS_OUTPUTS_DIR/runs/"
breakeven() { python3 -m tts_utils acceptance_sweep --profile params/h200-realistic.yaml --set "$LENGTHS" --set "$REQUESTS" "$@"; echo "== break-even $* -> $?"; }
breakeven
breakeven --set model=7b,14b --set spec_method=draft_model --set draft_model=1.5b
echo "== all done"
