#!/usr/bin/env bash
# Regenerates the shipped model models/tiny-jargon/ (a 3.95M-parameter LLaMA + byte-level BPE tokenizer)
# from the Jargon File split in data/, in two stages (both `lowbit pretrain`, deterministic given the seeds;
# the thread count only changes floating-point summation order):
#   stage 1: from scratch, cosine planned over 800 steps, stopped at step 264 (its 7.5-minute budget ran out)
#   stage 2: continue from stage 1 (--init) with a fresh warmup + cosine decay over STAGE2_STEPS steps
# The shipped model was trained on the GPU machine's 16 host CPU cores (see models/tiny-jargon/README.md).
#   npm ci && bash scripts/make-tiny-model.sh [OUT_DIR] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-models/tiny-jargon}
THREADS=${2:-}
STAGE1=${STAGE1:-$OUT.stage1}
STAGE2_STEPS=${STAGE2_STEPS:-1000}
common=(--corpus data/jargon.train.txt --heldout data/jargon.heldout.txt --seq 256 --batch 16 --weight-decay 0.1
        --clip 1.0 --eval-every 100 --eval-windows 32 --checkpoint-every 100 --dtype bfloat16 --json ${THREADS:+--threads $THREADS})
if [[ ! -f "$STAGE1/model.safetensors" ]]; then
  node dist/src/cli/main.js pretrain "${common[@]}" --out "$STAGE1" \
    --vocab 2048 --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 688 \
    --steps 800 --stop-after 264 --lr 3e-3 --warmup 60 --seed 1
fi
node dist/src/cli/main.js pretrain "${common[@]}" --out "$OUT" --init "$STAGE1" \
  --steps "$STAGE2_STEPS" --lr 2e-3 --warmup 20 --seed 2 ${MAX_MINUTES:+--max-minutes $MAX_MINUTES}
rm -rf "$OUT/checkpoint" "$STAGE1/checkpoint"
