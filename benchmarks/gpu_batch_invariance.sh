#!/usr/bin/env bash
# Issue 22's batch-invariance round: the batched pass (64 prompts x 512 tokens, greedy) and its
# batch-1 token check under VLLM_BATCH_INVARIANT=1, per engine setting, for one R1-Distill shape
# (random weights). Usage: benchmarks/gpu_batch_invariance.sh OUT_DIR [MODEL]  (default 1.5b)
# Settings: vLLM's default (torch.compile + FULL_AND_PIECEWISE graphs), PIECEWISE graphs (what
# vLLM's batch-invariance docs show), breakable CUDA graphs without torch.compile, and eager.
set -u
OUT=${1:?usage: gpu_batch_invariance.sh OUT_DIR [MODEL]}; MODEL=${2:-1.5b}
BUDGET_S=${BUDGET_S:-570}; GUARD_S=${GUARD_S:-60}
HERE=$(cd "$(dirname "$0")" && pwd); SHAPE="$HERE/../tts_utils/model_shapes/r1-distill-qwen-$MODEL"
mkdir -p "$OUT"; START=$(date +%s)
one() {  # TAG, then environment assignments and batch_invariance.py arguments
  local tag=$1; shift
  local left=$(( BUDGET_S - ($(date +%s) - START) ))
  if [ "$left" -lt "$GUARD_S" ]; then echo "== $tag skipped: ${left}s left"; return; fi
  env VLLM_BATCH_INVARIANT=1 timeout "$left" "$@" --model "$SHAPE" --tag "$tag" --json "$OUT/$tag.json" \
    > "$OUT/$tag.log" 2>&1
  echo "== $tag -> $? ($(( $(date +%s) - START ))s)"; grep -E '^RESULT' "$OUT/$tag.log"
}
BI="python3 $HERE/batch_invariance.py"
one "$MODEL-bi-default" $BI
one "$MODEL-bi-piecewise" $BI --cudagraph-mode PIECEWISE
one "$MODEL-bi-breakable" env VLLM_USE_BREAKABLE_CUDAGRAPH=1 $BI
one "$MODEL-bi-eager" $BI --enforce-eager
one "$MODEL-plain-default" env VLLM_BATCH_INVARIANT=0 $BI
echo "== all done in $(( $(date +%s) - START ))s"
