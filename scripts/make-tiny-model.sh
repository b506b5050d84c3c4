#!/usr/bin/env bash
# Regenerates the shipped model models/tiny-jargon/ (a ~4M-parameter LLaMA + byte-level BPE tokenizer)
# from the Jargon File split in data/. Deterministic given the seed; the thread count only changes
# floating-point summation order. The shipped model was trained on the GPU machine's 16 CPU cores
# (14 threads), 7.5 minutes: it stopped at step 264 of a cosine schedule planned for 800 steps, which
# --stop-after 264 reproduces (see models/tiny-jargon/README.md).
#   npm ci && bash scripts/make-tiny-model.sh [OUT_DIR] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-models/tiny-jargon}
THREADS=${2:-}
node dist/src/cli/main.js pretrain \
  --corpus data/jargon.train.txt --heldout data/jargon.heldout.txt --out "$OUT" \
  --vocab 2048 --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 688 \
  --seq 256 --batch 16 --steps 800 --lr 3e-3 --warmup 60 --weight-decay 0.1 --clip 1.0 --seed 1 \
  --eval-every 100 --eval-windows 32 --checkpoint-every 100 --dtype bfloat16 --stop-after ${STOP_AFTER:-264} \
  ${THREADS:+--threads $THREADS} ${MAX_MINUTES:+--max-minutes $MAX_MINUTES} --json
rm -rf "$OUT/checkpoint"
