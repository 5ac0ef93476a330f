#!/usr/bin/env bash
# Issue 30's GPU round: a shipped profile's whole chain on one GPU, as a user with a checkpoint runs
# it, with random 1.5B weights written by the kit standing in for the checkpoint (the machine has
# no hub). One profile per call, because a device call lasts at most 10 minutes:
#   gpu-first-run: the 10-minute trim from params/gpu-first-run.yaml's header;
#   paper: the paper profile trimmed to one model (1.5B), one GPU, 16 problems and budgets 1K-2K,
#          keeping its batched pass, latency subset and n-gram runs.
# Usage: benchmarks/gpu_profiles_round.sh gpu-first-run|paper OUT_DIR   (from the repo root, through
# benchmarks/on_device.sh; MATH500 at /tmp/devdata/math500.jsonl, the tokenizer at /tmp/devdata/tokenizer).
# Writes OUT_DIR/<profile>.tar.gz: reports, figures and run folders of the study.
set -u
PROFILE=${1:?usage: gpu_profiles_round.sh gpu-first-run|paper OUT_DIR}; OUT=${2:?OUT_DIR}
START=$(date +%s)
WEIGHTS=/tmp/r1-1.5b-random
echo "== $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); $(lscpu | grep 'Model name' | sed 's/  */ /g'); commit $(git rev-parse --short HEAD), $(git status --porcelain --untracked-files=no | wc -l) files changed"
[ -f "$WEIGHTS/config.json" ] || python3 -m tts_utils random_weights --shape 1.5b --tokenizer /tmp/devdata/tokenizer --out "$WEIGHTS" || exit
echo "== weights ready ($(( $(date +%s) - START ))s)"
python3 benchmarks/tokenizer_regex_check.py /tmp/devdata/tokenizer /tmp/devdata/traces/r1-distill-qwen-1.5b.math500-first100.t0.6.jsonl
SETS=(--set "model_paths=[1.5b=$WEIGHTS]" --set dataset=/tmp/devdata/math500.jsonl --set tp_sizes=[1])
case "$PROFILE" in
  gpu-first-run) SETS+=(--set num_problems=8 --set latency_problems=2 --set batch_concurrency=8 --set "budgets=[256, 512]") ;;
  paper) SETS+=(--set model=1.5b --set num_problems=16 --set latency_problems=4 --set batch_concurrency=16 --set "budgets=[1024, 2048]") ;;
  *) echo "unknown profile $PROFILE"; exit 2 ;;
esac
# SIGINT before the call's limit (BUDGET_S, default 540 s), so that the kit records an interrupted
# run, stops its engine, and the archive below still comes back.
timeout -s INT -k 15 $(( ${BUDGET_S:-540} - ($(date +%s) - START) - 20 )) \
  python3 -m tts_utils.pipeline reproduce --profile "$PROFILE" "${SETS[@]}"
echo "== $PROFILE chain -> $? ($(( $(date +%s) - START ))s)"
mkdir -p "$OUT"
tar czf "$OUT/$PROFILE.tar.gz" -C outputs "reports/$PROFILE" "figures/$PROFILE" "runs/$PROFILE"
ls -la "$OUT"; echo "== all done in $(( $(date +%s) - START ))s"
