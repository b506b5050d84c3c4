#!/usr/bin/env bash
# GPU-machine run: decode tests on this build, the kernel-5 trace, then decode tok/s of a baseline addon and this build in
# the same call (same GPU). Carry: .device build/device-v4 build/device-base dist node_modules/@huggingface
#   source .device/on-device.sh && bash scripts/device/run-decode-ab.sh
# Env: TOKENS (64), TRACE (1), TESTS (1), BASE (1: build/device-base/lowbit.node as the baseline), PROBES (v5 probes, "0")
set -uo pipefail
OUT=${OUT:-/tmp/lowbit-ab}
mkdir -p "$OUT"
NEW=$PWD/build/device-v4/lowbit.node
BASEA=$PWD/build/device-base/lowbit.node
if [ "${TESTS:-1}" = 1 ]; then
  echo "== tests ($(date +%T))"
  LOWBIT_ADDON=$NEW timeout 240 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js dist/test/cuda-decode-kernels.test.js dist/test/cuda-decode-model.test.js > "$OUT/tests.log" 2>&1; echo "tests rc=$?"
  grep -E '^# (tests|pass|fail|skipped)' "$OUT/tests.log"
  grep -B2 -A14 '^not ok\|^    not ok\|^  not ok' "$OUT/tests.log" | head -60
fi
if [ "${TRACE:-1}" = 1 ]; then
  echo "== trace5 new ($(date +%T))"
  LOWBIT_ADDON=$NEW timeout 150 node bench/cuda-decode.mjs --variants 4 --trace5 --json "$OUT/trace5.json" 2>&1 | grep -v "^copy"
fi
for round in 1 2; do
  if [ "${BASE:-1}" = 1 ] && [ -f "$BASEA" ]; then
    echo "== decode base, round $round ($(date +%T))"
    LOWBIT_ADDON=$BASEA timeout 150 node bench/cuda-decode.mjs --variants 4 --kernels 5 --modes graph --tokens ${TOKENS:-64} --json "$OUT/decode-base-$round.json" 2>&1 | grep -E "copy|tok/s"
  fi
  echo "== decode new, round $round ($(date +%T))"
  LOWBIT_ADDON=$NEW timeout 150 node bench/cuda-decode.mjs --variants 4 --kernels 5 --modes graph --tokens ${TOKENS:-64} --v5probes ${PROBES:-0} --json "$OUT/decode-new-$round.json" 2>&1 | grep -E "copy|tok/s"
  [ "${ROUNDS:-1}" = 1 ] && break
done
