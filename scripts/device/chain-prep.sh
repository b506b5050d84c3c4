#!/usr/bin/env bash
# The chain with its x̂ made once a phase by prep phases (LOWBIT_INT8X_CHAIN_PREP=1; run 102 priced each block's own x̂
# at 4–16 µs a phase): the chain kernel and streamed GEMV tests (GPU and emulator) and the decoder tests, then decode tok/s with kernels
# 5 and 8 as the same call's baseline and the VARIANTS rows, then chain traces (chain-probe.sh, CASES). Build and carry
# as for stream-check.sh.
source .device/on-device.sh >/dev/null 2>&1
set -uo pipefail
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/${ADDON:-build/device-z}/lowbit.node
if [ "${TESTS:-1}" != 0 ]; then
  timeout 150 node --test --test-reporter=tap --test-name-pattern="int8-x chain" --test-name-pattern="streamed GEMV" dist/test/cuda-int8x-gemv-model.test.js > "$OUT/tests-chain.log" 2>&1
  echo "chain tests rc=$?"; grep -E "^# (pass|fail)|^not ok|prep phases" "$OUT/tests-chain.log" | head; grep -A14 '^not ok' "$OUT/tests-chain.log" | head -24
  if [ "${DECTESTS:-1}" != 0 ]; then  # DECTESTS=0: not the decoder tests (~40 s)
  timeout 240 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js > "$OUT/tests-dec.log" 2>&1
  echo "decoder tests rc=$?"; grep -E "^# (pass|fail)|^not ok|prep phases" "$OUT/tests-dec.log" | cut -c1-260 | head -12; grep -A14 '^not ok' "$OUT/tests-dec.log" | head -24
  fi
fi
OUT=$OUT TESTS=none BENCH=0 ZEROAB=0 AROWS=0 bash scripts/device/int8x-decode.sh 2>&1 | grep -E "tok/s|==|rror|first tokens"
[ -n "${CASES:-}" ] && OUT=$OUT bash scripts/device/chain-probe.sh
