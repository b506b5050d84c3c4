#!/usr/bin/env bash
# GPU machine: the RILQ parity run and the PEFT load check. Needs python3 with torch + transformers (+ peft for the
# check; rilq_torch.py falls back to a hand-written LoRA without it). Inputs come from scripts/rank-sweep.sh:
# carry out/compensation/q-fake out/compensation/windows.json out/compensation/rilq-r16
#       out/compensation/lowbit-logits.json out/compensation/check-ids.txt out/compensation/r16/rank-sweep.json
# (models/tiny-jargon is in git) and, when peft is not installed there, .whl with the peft wheel:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl peft   (here), then there:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# Same budget as the lowbit run (env below).
set -uo pipefail
C=${C:-out/compensation}
OUTDIR=${OUT:-/tmp/parity}; mkdir -p "$OUTDIR"
MAX_STEPS=${MAX_STEPS:-320} LR=${LR:-1e-3} EVAL_EVERY=${EVAL_EVERY:-5} EVAL_MAX=${EVAL_MAX:-1000} SEQ=${SEQ:-256}
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
python3 -c "import peft; print('peft', peft.__version__)" || echo "peft: not installed"
for DT in ${DTYPES:-float32 bfloat16}; do
  PYTHONUNBUFFERED=1 python3 scripts/reference/rilq_torch.py --fp models/tiny-jargon --q "$C/q-fake" --windows "$C/windows.json" \
    --rank 16 --alpha 16 --lr "$LR" --grad-accum 8 --max-steps "$MAX_STEPS" --eval-every "$EVAL_EVERY" --patience 5 \
    --eval-seq "$SEQ" --eval-max-windows "$EVAL_MAX" --dtype $DT > "$OUTDIR/rilq_torch_$DT.json" 2> "$OUTDIR/rilq_torch_$DT.err"
  tail -3 "$OUTDIR/rilq_torch_$DT.err"; head -c 400 "$OUTDIR/rilq_torch_$DT.json"; echo
done
for DT in ${DTYPES:-float32 bfloat16}; do
  python3 scripts/reference/peft_check.py --base "$C/q-fake" --adapter "$C/rilq-r16" --ids "$(cat $C/check-ids.txt)" \
    --lowbit-json "$C/lowbit-logits.json" --dtype $DT | tee "$OUTDIR/peft_check_$DT.json"
done
python3 -c "import json; r=json.load(open('$C/r16/rank-sweep.json')); print('lowbit: ppl fp', r['fpPpl'], 'quant', r['quantPpl'], 'rilq r16', [x['ppl'] for x in r['rows'] if x['method']=='rilq'])"
