#!/usr/bin/env bash
# GPU-machine run: stage 2 of the tiny model (scripts/make-tiny-model.sh) on the host CPU cores. A 12-step probe
# measures the step rate first, so the cosine schedule is sized to finish inside the call's time.
# Carry: .device build/device-v4 dist node_modules/@huggingface. Stage 1 is the committed models/tiny-jargon.
set -uo pipefail
export LOWBIT_ADDON=$PWD/build/device-v4/lowbit.node
grep -q avx512f /proc/cpuinfo || export LOWBIT_ADDON=$PWD/build/device-v3/lowbit.node
mkdir -p /tmp/s1 && cp models/tiny-jargon/* /tmp/s1/
node dist/src/cli/main.js pretrain --init /tmp/s1 --corpus data/jargon.train.txt --heldout data/jargon.heldout.txt \
  --out /tmp/probe --steps 12 --batch 16 --seq 256 --eval-every 1000 --eval-windows 1 --checkpoint-every 1000 --threads 15 --json 2>/dev/null | tail -1
RATE=$(node -e "const l=require('/tmp/probe/train_log.json');const a=l[3],b=l[l.length-1];console.log(((b.step-a.step)/(b.elapsedS-a.elapsedS)).toFixed(3))")
STEPS=$(node -e "console.log(Math.floor($RATE*${BUDGET_S:-430}))")
echo "rate $RATE step/s -> stage-2 steps $STEPS"
STAGE1=/tmp/s1 STAGE2_STEPS=$STEPS MAX_MINUTES=${MAX_MINUTES:-8.2} bash scripts/make-tiny-model.sh /tmp/tiny-jargon 15 > $OUT/stage2.json 2> $OUT/stage2.err
tr '\r' '\n' < $OUT/stage2.err | grep -v '^pretrain' | tail -5; tail -1 $OUT/stage2.json
cd /tmp && tar czf $OUT/tiny-jargon.tgz tiny-jargon && ls -la $OUT
