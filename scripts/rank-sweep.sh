#!/usr/bin/env bash
# The compensation experiments on the shipped tiny model (docs/compensation.md):
#   1. RTN W2 g64 quantization of models/tiny-jargon
#   2. rank sweep 4/8/16/32/64 of svd, linear, layer, rilq   → out/sweep/rank-sweep.{json,md,svg}
#   3. rank 16: loftq and lrec (the other rows of the method table) → out/r16/rank-sweep.json
#   4. inputs for the GPU parity runs: calibration windows JSON, float32 fake-quant export, a saved RILQ r16 adapter
# Budget (smaller than RILQ's 7B defaults, for a 2-core CPU): SAMPLES windows × SEQ tokens, 20% validation,
# batch 1 × accumulation 8, Adam lr LR, MAX_STEPS micro-steps, validation every EVAL_EVERY updates, patience 5.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/tiny-jargon}
OUT=${OUT:-out/compensation}
SAMPLES=${SAMPLES:-80} SEQ=${SEQ:-256} MAX_STEPS=${MAX_STEPS:-320} LR=${LR:-1e-3} EVAL_EVERY=${EVAL_EVERY:-5}
EVAL_MAX=${EVAL_MAX:-100}
RANKS=${RANKS:-4,8,16,32,64}
L="node dist/src/cli/main.js"
mkdir -p "$OUT"
[ -f "$OUT/q/quantization.json" ] || $L quantize --model "$MODEL" --method rtn --bits 2 --group 64 --out "$OUT/q" --json > "$OUT/quantize.json"
COMMON=(--model "$MODEL" --quant "$OUT/q" --calib data/jargon.train.txt --heldout data/jargon.heldout.txt
  --samples "$SAMPLES" --seq "$SEQ" --max-steps "$MAX_STEPS" --lr "$LR" --eval-every "$EVAL_EVERY" --patience 5
  --eval-max-windows "$EVAL_MAX")
$L rank-sweep "${COMMON[@]}" --methods svd,linear,layer,rilq --ranks "$RANKS" --out "$OUT/sweep" --json > "$OUT/sweep.json"
$L rank-sweep "${COMMON[@]}" --methods loftq,lrec --ranks 16 --out "$OUT/r16" --json > "$OUT/r16.json"
# GPU parity inputs
$L compensate "${COMMON[@]}" --method rilq --rank 16 --out "$OUT/rilq-r16" --windows-json "$OUT/windows.json" --json > "$OUT/rilq-r16.json"
node scripts/reference/export-fake-quant.mjs "$OUT/q" "$OUT/q-fake" F32
IDS=${IDS:-$(node -e "const w=JSON.parse(require('fs').readFileSync('$OUT/windows.json','utf8')).val[0];console.log(w.slice(0,64).join(','))")}
echo "$IDS" > "$OUT/check-ids.txt"
$L logits --model "$OUT/q" --adapter "$OUT/rilq-r16" --ids "$IDS" --json > "$OUT/lowbit-logits.json"
