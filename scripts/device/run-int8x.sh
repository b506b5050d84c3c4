#!/usr/bin/env bash
# GPU-machine run of the prototype int8-x GEMV (native/cuda/int8x_gemv.cu): its test against the twins, its bench on the
# 7B decode shapes, then kernel 5's lone GEMVs in the same call for the side-by-side. Carry: .device, the addon's build
# folder, dist, node_modules/@huggingface.
#   source .device/on-device.sh && ADDON=build/device-x bash scripts/device/run-int8x.sh
set -uo pipefail
OUT=${OUT:-/tmp/lowbit-int8x}
mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/${ADDON:-build}/lowbit.node
echo "== int8-x tests ($(date +%T))"
timeout 120 node --test --test-reporter=tap dist/test/cuda-int8x-gemv-model.test.js > "$OUT/tests.log" 2>&1; echo "tests rc=$?"
grep -E '^# (tests|pass|fail|skipped)|^# [0-9]+×|^not ok' "$OUT/tests.log"
grep -A14 '^not ok' "$OUT/tests.log" | head -30
echo "== int8-x bench ($(date +%T))"
timeout 120 node bench/cuda-int8x-gemv.mjs --ksplit ${KSPLIT:-1,2,4,8} --json "$OUT/int8x.json"
echo "== kernel-5 lone GEMVs, same call ($(date +%T))"
timeout 150 node bench/cuda-decode.mjs --gemv-only --variants 4 --kernels 5 --json "$OUT/decode.json" 2>&1 | grep -E "copy|GEMV|by kernel"
