#!/usr/bin/env bash
# Issue 30's GPU round: shipped profiles' whole chains on one GPU, as a user with a checkpoint runs
# them, with random 1.5B weights written by the kit standing in for the checkpoint (the machine has
# no hub), in the order given, within one device call (BUDGET_S, default 540 s):
#   gpu-first-run: the 10-minute trim from params/gpu-first-run.yaml's header;
#   paper: the paper profile trimmed to one model (1.5B), one GPU, 8 problems and budgets 256-512,
#          keeping its batched pass, latency subset and n-gram runs; placement sequential where Ray
#          is not installed (the device's carried bundle).
# Ran on one H100 on 2026-12-07 (reference_results/README.md#gpu-runs-of-the-users-commands).
# Usage: benchmarks/gpu_profiles_round.sh OUT_DIR PROFILE...   (from the repo root, through
# benchmarks/on_device.sh; MATH500 at /tmp/devdata/math500.jsonl, the tokenizer at /tmp/devdata/tokenizer).
# Writes OUT_DIR/<profile>.tar.gz after each profile: its reports, figures and run folders.
set -u
OUT=${1:?usage: gpu_profiles_round.sh OUT_DIR PROFILE...}; shift
START=$(date +%s)
WEIGHTS=/tmp/r1-1.5b-random
echo "== $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); $(lscpu | grep 'Model name' | sed 's/  */ /g'); commit $(git rev-parse --short HEAD), $(git status --porcelain --untracked-files=no | wc -l) files changed"
[ -f "$WEIGHTS/config.json" ] || python3 -m tts_utils random_weights --shape 1.5b --tokenizer /tmp/devdata/tokenizer --out "$WEIGHTS" || exit
echo "== weights ready ($(( $(date +%s) - START ))s)"
PYTHONPATH=".:${PYTHONPATH:-}" python3 benchmarks/tokenizer_regex_check.py /tmp/devdata/tokenizer /tmp/devdata/traces/r1-distill-qwen-1.5b.math500-first100.t0.6.jsonl
mkdir -p "$OUT"
for PROFILE in "$@"; do
  SETS=(--set "model_paths=[1.5b=$WEIGHTS]" --set dataset=/tmp/devdata/math500.jsonl --set tp_sizes=[1]
        --set num_problems=8 --set latency_problems=2 --set batch_concurrency=8 --set "budgets=[256, 512]")
  [ "$PROFILE" = paper ] && SETS+=(--set model=1.5b)
  # The carried vLLM bundle has no Ray; the paper profile's placement: ray is refused without it.
  python3 -c "import ray" 2>/dev/null || SETS+=(--set placement=sequential)
  LEFT=$(( ${BUDGET_S:-540} - ($(date +%s) - START) - 25 ))
  if [ "$LEFT" -lt 120 ]; then echo "== $PROFILE skipped: ${LEFT}s left"; continue; fi
  # SIGINT before the call's limit, so that the kit records an interrupted run, stops its engine,
  # and the archive below still comes back.
  timeout -s INT -k 15 "$LEFT" python3 -m tts_utils.pipeline reproduce --profile "$PROFILE" "${SETS[@]}"
  echo "== $PROFILE chain -> $? ($(( $(date +%s) - START ))s)"
  tar czf "$OUT/$PROFILE.tar.gz" -C outputs "reports/$PROFILE" "figures/$PROFILE" "runs/$PROFILE"
done
ls -la "$OUT"; echo "== all done in $(( $(date +%s) - START ))s"
