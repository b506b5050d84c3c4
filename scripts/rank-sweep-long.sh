#!/usr/bin/env bash
# Rank 16 with a 4× longer budget (MAX_STEPS micro-steps) for the trained methods, after scripts/rank-sweep.sh
# (reuses its quantized model OUT/q): how far each method gets when training is not cut short.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/tiny-jargon}
OUT=${OUT:-out/compensation}
SAMPLES=${SAMPLES:-80} SEQ=${SEQ:-256} MAX_STEPS=${MAX_STEPS:-1280} LR=${LR:-1e-3} EVAL_EVERY=${EVAL_EVERY:-5}
node dist/src/cli/main.js rank-sweep --model "$MODEL" --quant "$OUT/q" --calib data/jargon.train.txt --heldout data/jargon.heldout.txt \
  --samples "$SAMPLES" --seq "$SEQ" --max-steps "$MAX_STEPS" --lr "$LR" --eval-every "$EVAL_EVERY" --patience 5 \
  --eval-max-windows 1000 --grad-accum 8 --methods "${METHODS:-rilq,lrec,layer,linear}" --ranks 16 --out "$OUT/r16-long" --json > "$OUT/r16-long.json"
