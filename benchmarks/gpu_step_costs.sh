#!/usr/bin/env bash
# Issue 22's GPU round: what a decoding step costs, by kind, under the default CUDA-graph mode and
# under cudagraph_mode FULL, for the three R1-Distill shapes (random weights, batch 1, 1,024 tokens).
# Usage: benchmarks/gpu_step_costs.sh OUT_DIR [MODEL...]   (models: 1.5b 7b 14b; default all three)
# Needs vLLM importable (on our H200/H100 machines: the unpacked 0.26 bundle on PYTHONPATH).
# Engines run one after another; a configuration is skipped when less than GUARD_S seconds remain
# of BUDGET_S, so the round ends inside a 10-minute device call.
set -u
OUT=${1:?usage: gpu_step_costs.sh OUT_DIR [MODEL...]}; shift
MODELS=${*:-1.5b 7b 14b}
BUDGET_S=${BUDGET_S:-570}; GUARD_S=${GUARD_S:-70}
HERE=$(cd "$(dirname "$0")" && pwd); SHAPES="$HERE/../tts_utils/model_shapes"
# Synthetic acceptance at the shipped traces' replayed n-gram rates (README, h200-realistic).
RATES_15B=0.403,0.23,0.154,0.111,0.085
RATES_7B=0.386,0.214,0.14,0.102,0.075
mkdir -p "$OUT"; START=$(date +%s)
one() {  # one engine configuration: TAG then step_costs.py arguments
  local tag=$1; shift
  local left=$(( BUDGET_S - ($(date +%s) - START) ))
  if [ "$left" -lt "$GUARD_S" ]; then echo "== $tag skipped: ${left}s left"; return; fi
  timeout "$left" python3 "$HERE/step_costs.py" --tag "$tag" --json "$OUT/$tag.json" "$@" \
    > "$OUT/$tag.log" 2>&1
  echo "== $tag -> $? ($(( $(date +%s) - START ))s)"; grep -E '^(ENGINE|RUN|PROFILE)' "$OUT/$tag.log"
}
# First what every model needs (steps with and without a draft, plain steps), then FULL graphs for
# the models after the first, as time allows.
first=${MODELS%% *}
for model in $MODELS; do
  shape="$SHAPES/r1-distill-qwen-$model"; rates=$RATES_7B; reps=1
  [ "$model" = 1.5b ] && rates=$RATES_15B && reps=2
  one "$model-ngram-default" --model "$shape" --spec ngram --rates $rates --reps $reps --profile-steps 64
  [ "$model" = "$first" ] && one "$model-ngram-full" --model "$shape" --spec ngram --rates $rates --reps $reps \
    --cudagraph-mode FULL --profile-steps 64
  one "$model-plain-default" --model "$shape" --reps $reps --kinds greedy,greedy-penalty
done
for model in ${MODELS#"$first"}; do
  rates=$RATES_7B
  one "$model-ngram-full" --model "$SHAPES/r1-distill-qwen-$model" --spec ngram --rates $rates --reps 1 \
    --cudagraph-mode FULL
done
echo "== all done in $(( $(date +%s) - START ))s"
