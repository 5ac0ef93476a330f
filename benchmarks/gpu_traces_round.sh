#!/usr/bin/env bash
# Issue 21's reference round on one GPU: the one-gpu-traces profile, trimmed to fit 10-minute
# device calls (1.5B and 7B; one problem per run, so every step kind is measured by one request
# out to 16K tokens), in resumable steps: each call does what is left (sweeps resume per
# request), and once the sweeps are done the notebook chain renders the reports.
# Usage: benchmarks/gpu_traces_round.sh OUT_DIR [BUDGET_S]   (from the repo root, vLLM importable;
# TTS_TRACES_DIR and TTS_TRACE_TOKENIZER name the local traces and tokenizer when offline).
# The study is named after the GPU (h100-traces, h200-traces). Writes OUT_DIR/state.tar.xz (the
# run folders and replays, to resume from) and OUT_DIR/outputs.tar.gz (everything under outputs/).
set -u
OUT=${1:?usage: gpu_traces_round.sh OUT_DIR [BUDGET_S]}; BUDGET_S=${2:-540}
START=$(date +%s)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$GPU" in *H200*) STUDY=h200-traces ;; *H100*) STUDY=h100-traces ;; *) STUDY=gpu-traces ;; esac
SETS=(--profile one-gpu-traces --set "study=$STUDY" --set model=1.5b,7b --set num_problems=1)
step() {  # NEED_S, then the command: run it with the time left, if at least NEED_S is left
  local need=$1 left=$(( BUDGET_S - ($(date +%s) - START) )); shift
  if [ "$left" -lt "$need" ]; then echo "== skipped, ${left}s left: $*"; return; fi
  # SIGINT, so that the kit records an interrupted run and stops its engine
  timeout -s INT -k 30 "$left" "$@"; echo "== $* -> $? ($(( $(date +%s) - START ))s)"
}
echo "== $GPU; study $STUDY; commit $(git rev-parse --short HEAD), $(git status --porcelain --untracked-files=no | wc -l) files changed"
step 90 python3 -m tts_utils sweep 01_greedy "${SETS[@]}"
step 90 python3 -m tts_utils sweep 03_spec "${SETS[@]}"
if python3 -c "import papermill, nbconvert, ipykernel, math_verify" 2>/dev/null; then
  step 200 python3 -m tts_utils pipeline reproduce "${SETS[@]}"
else
  echo "== papermill, nbconvert, ipykernel or math_verify missing: the notebooks are not run"
fi
mkdir -p outputs "$OUT"
# xz: the state travels back as carried luggage, where every MiB counts
tar cJf "$OUT/state.tar.xz" -C outputs runs $(cd outputs && ls -d replays 2>/dev/null)
tar czf "$OUT/outputs.tar.gz" -C outputs .
ls -la "$OUT"; echo "== all done in $(( $(date +%s) - START ))s"
