#!/usr/bin/env bash
# The compensation experiments on the shipped tiny model (docs/compensation.md):
#   1. RTN W2 g64 quantization of models/tiny-jargon
#   2. rank 16, every method (svd, loftq, linear, layer, rilq, lrec) → OUT/r16/rank-sweep.json, adapters saved
#   3. inputs for the GPU parity runs: calibration windows JSON, float32 fake-quant export, the RILQ r16 adapter,
#      lowbit's logits of 64 validation tokens with that adapter
#   4. ranks 4/8/32/64 of svd, linear, layer, rilq → OUT/sweep/rank-sweep.json
#   then: node scripts/rank-sweep-report.mjs OUT  (docs/compensation.md results + docs/rank-sweep.svg)
# Budget (smaller than RILQ's 7B defaults, for a 2-core CPU): SAMPLES windows × SEQ tokens, 20% validation,
# batch 1 × accumulation 8, Adam lr LR, MAX_STEPS micro-steps, validation every EVAL_EVERY updates, patience 5.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/tiny-jargon}
OUT=${OUT:-out/compensation}
SAMPLES=${SAMPLES:-80} SEQ=${SEQ:-256} MAX_STEPS=${MAX_STEPS:-320} LR=${LR:-1e-3} EVAL_EVERY=${EVAL_EVERY:-5}
EVAL_MAX=${EVAL_MAX:-1000}
RANKS_REST=${RANKS_REST:-4,8,32,64}
L="node dist/src/cli/main.js"
mkdir -p "$OUT"
[ -f "$OUT/q/quantization.json" ] || $L quantize --model "$MODEL" --method rtn --bits 2 --group 64 --out "$OUT/q" --json > "$OUT/quantize.json"
COMMON=(--model "$MODEL" --quant "$OUT/q" --calib data/jargon.train.txt --heldout data/jargon.heldout.txt
  --samples "$SAMPLES" --seq "$SEQ" --max-steps "$MAX_STEPS" --lr "$LR" --eval-every "$EVAL_EVERY" --patience 5
  --eval-max-windows "$EVAL_MAX" --grad-accum "${ACCUM:-8}")
# rank 16 first (every method; its RILQ adapter and the windows are the GPU parity inputs), then the other ranks
$L rank-sweep "${COMMON[@]}" --methods svd,loftq,linear,layer,rilq,lrec --ranks 16 --save-adapters --windows-json "$OUT/windows.json" --out "$OUT/r16" --json > "$OUT/r16.json"
rm -rf "$OUT/rilq-r16" && cp -r "$OUT/r16/adapters/rilq-r16" "$OUT/rilq-r16"
node scripts/reference/export-fake-quant.mjs "$OUT/q" "$OUT/q-fake" F32
$L rank-sweep "${COMMON[@]}" --methods svd,linear,layer,rilq --ranks "$RANKS_REST" --out "$OUT/sweep" --json > "$OUT/sweep.json"
IDS=${IDS:-$(node -e "const w=JSON.parse(require('fs').readFileSync('$OUT/windows.json','utf8')).val[0];console.log(w.slice(0,64).join(','))")}
echo "$IDS" > "$OUT/check-ids.txt"
$L logits --model "$OUT/q" --adapter "$OUT/rilq-r16" --ids "$IDS" --json > "$OUT/lowbit-logits.json"
