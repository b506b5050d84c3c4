#!/usr/bin/env bash
# GPU-machine run: decode tests on this build, the kernel-5 trace, then decode tok/s of several addons in the same call
# (same GPU), in turn, ROUNDS times. Carry: .device dist node_modules/@huggingface and every addon's build folder.
#   source .device/on-device.sh && ADDONS="base=build/device-base new=build/device-v4" bash scripts/device/run-decode-ab.sh
# Env: ADDONS (name=build-dir …; the tests and the trace use the LAST one), TOKENS (64), TRACE (1), TESTS (1), ROUNDS (1),
# PROBES (kernel-5 probes for the last addon, "0"), GEMV (1: the isolated GEMV timings too)
set -uo pipefail
OUT=${OUT:-/tmp/lowbit-ab}
mkdir -p "$OUT"
ADDONS=${ADDONS:-"base=build/device-base new=build/device-v4"}
LAST=${ADDONS##* }
NEW=$PWD/${LAST#*=}/lowbit.node
if [ "${TESTS:-1}" = 1 ]; then
  echo "== tests, ${LAST%%=*} ($(date +%T))"
  LOWBIT_ADDON=$NEW timeout 240 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js dist/test/cuda-decode-kernels.test.js dist/test/cuda-decode-model.test.js > "$OUT/tests.log" 2>&1; echo "tests rc=$?"
  grep -E '^# (tests|pass|fail|skipped)' "$OUT/tests.log"
  grep -B2 -A14 '^not ok\|^    not ok\|^  not ok' "$OUT/tests.log" | head -60
fi
if [ "${TRACE:-1}" = 1 ]; then
  echo "== trace5, ${LAST%%=*} ($(date +%T))"
  LOWBIT_ADDON=$NEW timeout 150 node bench/cuda-decode.mjs --variants 4 --trace5 --json "$OUT/trace5.json" 2>&1 | grep -v "^copy"
fi
G=""; [ "${GEMV:-1}" = 1 ] || G="--no-gemv"
for round in $(seq 1 ${ROUNDS:-1}); do
  for a in $ADDONS; do
    name=${a%%=*}; dir=${a#*=}; pr=0; [ "$a" = "$LAST" ] && pr=${PROBES:-0}
    echo "== decode $name, round $round ($(date +%T))"
    LOWBIT_ADDON=$PWD/$dir/lowbit.node timeout 150 node bench/cuda-decode.mjs --variants 4 --kernels 5 --modes graph --tokens ${TOKENS:-64} --v5probes $pr $G --json "$OUT/decode-$name-$round.json" 2>&1 | grep -E "copy|tok/s|GEMV"
  done
done
