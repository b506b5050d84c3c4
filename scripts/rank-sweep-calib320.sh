#!/usr/bin/env bash
# Rank 16 with RILQ's calibration-set size (320 windows, 64 held out for validation) and the long budget, after
# scripts/rank-sweep.sh (reuses OUT/q). Validation every 10 updates (64 windows each).
# The committed table: the default (rilq, lrec, svd) then METHODS=layer,linear NAME=r16-calib320b.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/tiny-jargon}
OUT=${OUT:-out/compensation}
node dist/src/cli/main.js rank-sweep --model "$MODEL" --quant "$OUT/q" --calib data/jargon.train.txt --heldout data/jargon.heldout.txt \
  --samples "${SAMPLES:-320}" --seq "${SEQ:-256}" --max-steps "${MAX_STEPS:-1280}" --lr "${LR:-1e-3}" --eval-every "${EVAL_EVERY:-10}" \
  --patience 5 --eval-max-windows 1000 --grad-accum 8 --methods "${METHODS:-rilq,lrec,svd}" --ranks 16 --out "$OUT/${NAME:-r16-calib320}" --json > "$OUT/${NAME:-r16-calib320}.json"
