#!/usr/bin/env bash
# thirteenth session, first call: the int8-x prototype (test + bench + kernel-5 lone GEMVs, scripts/device/run-int8x.sh),
# the decode kernel tests (the pending-attention error path), then (DECODE=1) decode tok/s of HEAD twice.
source .device/on-device.sh
OUT=${OUT:-/tmp/o}; mkdir -p $OUT
ADDON=build/device-x bash scripts/device/run-int8x.sh
export LOWBIT_ADDON=$PWD/build/device-x/lowbit.node
echo "== decode kernel tests ($(date +%T))"
timeout 150 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode-kernels.test.js > $OUT/tests-k.log 2>&1; echo rc=$?
grep -E '^# (tests|pass|fail|skipped)' $OUT/tests-k.log; grep -B2 -A12 '^not ok' $OUT/tests-k.log | head -30
[[ -n "${DECODE:-}" ]] && for r in 1 2; do
  echo "== decode HEAD $r ($(date +%T))"
  timeout 150 node bench/cuda-decode.mjs --variants 4 --kernels 5 --modes graph --tokens 128 --no-gemv --json $OUT/decode-$r.json 2>&1 | grep -E "tok/s"
done
