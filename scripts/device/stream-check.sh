#!/usr/bin/env bash
# Kernel 8's streamed GEMVs (the default with an adapter since the twenty-first session) on the GPU machine: the int8-x
# kernel tests at the default three blocks an SM and at two (streamed = per-tile bit for bit),
# the decoder test, then int8x-decode.sh (kernels 5 and 8, the per-tile row, VARIANTS) and, with PROFILE=1, ncu's
# per-kernel durations of one eager token with the adapter, and with CHAINTRACE=1 the chain's stamps (bench
# --trace-chain). TESTS=0: no tests (a second call on a warm machine). Build and carry as for int8x-decode.sh.
source .device/on-device.sh >/dev/null 2>&1
set -uo pipefail
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/${ADDON:-build/device-z}/lowbit.node
if [ "${TESTS:-1}" != 0 ]; then
for E in ${TESTENV:-"LOWBIT_INT8X_STREAM_BPS=3" "LOWBIT_INT8X_STREAM_BPS=2"}; do
  env $E timeout 100 node --test --test-reporter=tap dist/test/cuda-int8x-gemv-model.test.js > "$OUT/tests-i8.log" 2>&1
  echo "int8-x tests [$E] rc=$?"; grep -E "^# (pass|fail)|^not ok" "$OUT/tests-i8.log"; grep -A12 '^not ok' "$OUT/tests-i8.log" | head -20
done
timeout 240 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js > "$OUT/tests-dec.log" 2>&1
echo "decoder tests rc=$?"; grep -E "^# (pass|fail)|^not ok|int8-x" "$OUT/tests-dec.log" | cut -c1-230 | head -24
fi
OUT=$OUT TESTS=none BENCH=0 ZEROAB=0 AROWS=0 bash scripts/device/int8x-decode.sh 2>&1 | grep -E "tok/s|==|rror|first tokens"
[ "${PROFILE:-0}" = 1 ] && KERNELS=8 PROFILES=token bash scripts/device/int8x-profile.sh 2>&1 | tail -24
# CHAINTRACE=1: one token of the chain with %globaltimer stamps per launch, phase and block (bench --trace-chain), with
# the attention in its own launch, as the chain's first phase, and with every layer in one chain (a token one launch)
if [ "${CHAINTRACE:-0}" = 1 ]; then
  for S in "LOWBIT_INT8X_CHAIN_ATTN=0" "LOWBIT_INT8X_CHAIN_ATTN=1" "LOWBIT_INT8X_CHAIN_ATTN=1 LOWBIT_INT8X_CHAIN_TOKEN=1"; do
    echo "== chain trace, $S"
    env $S timeout 150 node bench/cuda-decode.mjs --trace-chain --json "$OUT/trace-chain-$(echo "$S" | tr ' =' '_-').json" 2>&1 | tail -18
  done
fi
