#!/usr/bin/env bash
# The H200 reference round (issues 10, 15): per model, greedy TP1 and n-gram TP1 at the synthetic
# acceptance of the shipped traces' replay (1.5B traces for 1.5B, 7B traces for 7B and 14B), with
# the no-draft probe and NVML energy; then the kit-vs-raw alternation on 1.5B. Run from the repo
# root on the H200 with vLLM importable; results go to $TTS_OUTPUTS_DIR.
set -u
RATES_15B="0.403,0.23,0.154,0.111,0.085 @ replay of r1-distill-qwen-1.5b.math500-first100.t0.6.jsonl"
RATES_7B="0.386,0.214,0.14,0.102,0.075 @ replay of r1-distill-qwen-7b.math500-first20.t0.6.jsonl"
sweep() { python3 -m tts_utils sweep "$@" --profile params/h200-realistic.yaml; echo "== $* -> $?"; }
for model in 1.5b 7b 14b; do
  rates=$RATES_7B; [ "$model" = 1.5b ] && rates=$RATES_15B
  sweep 01_greedy --set model=$model
  sweep 03_spec --set model=$model --set "spec_acceptance=$rates"
done
python3 benchmarks/kit_vs_raw.py --model 1.5b --pairs 12 --max-tokens 1024 --json "$TTS_OUTPUTS_DIR/kit_vs_raw.json"
echo "== all done"
