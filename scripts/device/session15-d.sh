#!/usr/bin/env bash
# fifteenth session, last call (refused; for the next session): z = the int8-x GEMV with the LoRA-A rows in its launch and
# the prep with the decode hand-offs (residual + B·t, SwiGLU with B·t, bf16 x) — tests, bench (skeleton
# with the rank-64 A rows), kernel 5's lone GEMVs. Carry: .device build/device-z dist node_modules/@huggingface
source .device/on-device.sh
set -uo pipefail
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/build/device-z/lowbit.node
echo "== int8-x tests, z ($(date +%T))"
timeout 120 node --test --test-reporter=tap dist/test/cuda-int8x-gemv-model.test.js > "$OUT/tests.log" 2>&1; echo "tests rc=$?"
grep -E '^# (tests|pass|fail|skipped)|^not ok|LoRA-A rows:|xOut vs twin|differ' "$OUT/tests.log"; grep -A14 '^not ok' "$OUT/tests.log" | head -30
echo "== int8-x bench, z ($(date +%T))"
timeout 120 node bench/cuda-int8x-gemv.mjs --ksplit 4,8 --ahead 1,2 --sx 0,1 --json "$OUT/int8x-z.json" 2>&1 | grep -E "copy bandwidth|skeleton"
echo "== kernel-5 lone GEMVs ($(date +%T))"
timeout 100 node bench/cuda-decode.mjs --gemv-only --variants 4 --kernels 5 2>&1 | grep -E "by kernel"
