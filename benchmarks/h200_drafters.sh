#!/usr/bin/env bash
# The one-H200 round that finishes issue 11's break-even curves in the h200-realistic study
# (system-only, acceptance lengths 1.25..6, one engine per model and method, resuming points
# already in $TTS_OUTPUTS_DIR): 1.5B drafting 7B (lengths 3..6) and 14B, then EAGLE-3 heads
# shaped like 1.5B, 7B and 14B (model_source.eagle3_head). The study's greedy runs, copied from
# reference_results/, give plain decoding at the same 1K budget. One request per length, as the
# earlier reference sweeps.
# Run from the repo root with vLLM importable; extra arguments go to every command.
set -u
LENGTHS="acceptance_lengths=[1.25,1.5,2.0,3.0,4.5,6.0]"
REQUESTS="acceptance_requests=1"  # as the reference sweeps were measured
for tree in runs acceptance; do
  mkdir -p "$TTS_OUTPUTS_DIR/$tree" && cp -rn "reference_results/$tree/h200-realistic" "$TTS_OUTPUTS_DIR/$tree/"
done
breakeven() {
  python3 -m tts_utils acceptance_sweep --profile params/h200-realistic.yaml --set "$LENGTHS" --set "$REQUESTS" "$@"
  local rc=$?; echo "== break-even $* -> $rc"; return $rc
}
breakeven --set model=7b,14b --set spec_method=draft_model --set draft_model=1.5b "$@"
# vLLM 0.26 runs EAGLE-3 on its V2 model runner (n-gram and draft_model on V1); the worker
# extension finds the synthetic rates on either.
breakeven --set model=1.5b,7b,14b --set spec_method=eagle3 "$@"
# The noisiest curves again in a second study, each on a fresh engine: how far one request per
# length moves a point (the reference's answer: up to 2x, hence acceptance_requests, default 3).
breakeven --set study=h200-repeat --set model=1.5b --set spec_method=eagle3 "$@"
breakeven --set study=h200-repeat --set model=14b --set spec_method=draft_model --set draft_model=1.5b "$@"
echo "== all done"
