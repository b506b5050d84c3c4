#!/usr/bin/env bash
# The kernel-8 (int8-x) decode plan on the GPU machine: the int8-x kernel tests (GEMV with the LoRA-A rows, the prep's
# hand-offs, the device repack), the decoder test (kernel 8 against the CPU model, graphs, device greedy), the decode
# kernel tests (kernel 8's one-launch attention among them), decode tok/s of kernels 5 and 8 side by side (7B shape,
# rank-64 adapter and none; kernel 8 also with the counters zeroed by the preps and with streamed GEMVs), and the int8-x
# bench (the per-tile and the streamed GEMV, and the layer skeleton).
# Build here: LOWBIT_REQUIRE_CUDA=1 LOWBIT_MARCH=x86-64-v4 LOWBIT_BUILD_DIR=build/device-z LOWBIT_NATIVE_FORCE=1 node scripts/build-native.mjs
# Carry: .device build/device-z dist node_modules/@huggingface
# BASE=build/device-base (carried too): kernels 5 and 8 on that build first, the same-machine baseline. Make it with
# scripts/device/make-base.sh COMMIT: the older commit's addon with its own dist and bench beside it, since its N-API
# signatures need not match this tree's. PROFILE=1: then int8x-profile.sh.
source .device/on-device.sh
set -uo pipefail
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/${ADDON:-build/device-z}/lowbit.node
echo "== int8-x kernel tests ($(date +%T))"
timeout 120 node --test --test-reporter=tap dist/test/cuda-int8x-gemv-model.test.js > "$OUT/tests-i8.log" 2>&1; echo "rc=$?"
grep -E '^# (tests|pass|fail|skipped)|^not ok|LoRA-A rows:|xOut vs twin|differ|streamed' "$OUT/tests-i8.log"; grep -A14 '^not ok' "$OUT/tests-i8.log" | head -30
if [ "${TESTS:-all}" = all ]; then  # TESTS=i8: the int8-x kernel tests only
echo "== decoder tests ($(date +%T))"
timeout 200 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js > "$OUT/tests-dec.log" 2>&1; echo "rc=$?"
grep -E '^# (tests|pass|fail|skipped)|^not ok|GEMV v' "$OUT/tests-dec.log"; grep -A16 '^not ok' "$OUT/tests-dec.log" | head -40
echo "== decode kernel tests ($(date +%T))"
timeout 150 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode-kernels.test.js > "$OUT/tests-kern.log" 2>&1; echo "rc=$?"
grep -E '^# (tests|pass|fail|skipped)|^not ok|x̂ codes moved' "$OUT/tests-kern.log"; grep -A16 '^not ok' "$OUT/tests-kern.log" | head -30
fi
if [ -n "${BASE:-}" ]; then
  echo "== decode tok/s, kernels 5 and 8 on the baseline build $BASE ($(date +%T))"
  (cd "$BASE" && LOWBIT_ADDON=$PWD/lowbit.node timeout 150 node bench/cuda-decode.mjs --variants 4 --kernels 5,8 --modes graph --tokens 128 --no-gemv --json "$OUT/decode-base.json" 2>&1 | grep -E "tok/s|error|Error")
fi
echo "== decode tok/s, kernels 5 and 8 ($(date +%T))"
timeout 200 node bench/cuda-decode.mjs --variants 4 --kernels ${KERNELS:-5,8} --modes graph --tokens 128 --no-gemv --json "$OUT/decode.json" 2>&1 | grep -E "tok/s|error|Error|int8-x plan"
if [ -n "${AB:-}" ]; then  # run 89's A/Bs: the earlier split-K rule, no B prefetch
  echo "== decode tok/s, kernel 8 with the earlier split-K / ring rule (LOWBIT_INT8X_PICK=4096) ($(date +%T))"
  LOWBIT_INT8X_PICK=4096 timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv --json "$OUT/decode-pick.json" 2>&1 | grep -E "tok/s|error|Error"
  echo "== decode tok/s, kernel 8 without the B prefetch of the epilogue's B·t ($(date +%T))"
  LOWBIT_INT8X_BPRE=0 timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv --json "$OUT/decode-nopre.json" 2>&1 | grep -E "tok/s|error|Error"
fi
[ "${ZEROAB:-1}" != 0 ] && echo "== decode tok/s, kernel 8 with the B·t counters reset by each GEMV's last tile block (LOWBIT_INT8X_ZERO=tile; the default before run 92) ($(date +%T))"
[ "${ZEROAB:-1}" != 0 ] && LOWBIT_INT8X_ZERO=tile timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv --json "$OUT/decode-zero.json" 2>&1 | grep -E "tok/s|error|Error"
# the streamed GEMVs (parts & 512: a block per SM, a bulk-copy ring issued before the PDL wait); ring stages as fit 160 KB
# a block (default), the STAGES list and the SMEM list (KB a block)
echo "== decode tok/s, kernel 8 with streamed GEMVs (LOWBIT_INT8X_STREAM=1) ($(date +%T))"
LOWBIT_INT8X_STREAM=1 timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv --json "$OUT/decode-stream.json" 2>&1 | grep -E "tok/s|error|Error"
for W in ${WARPS:-}; do
  echo "== decode tok/s, kernel 8 streamed, $W warps a block ($(date +%T))"
  LOWBIT_INT8X_STREAM=1 LOWBIT_INT8X_STREAM_WARPS=$W timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv 2>&1 | grep -E "tok/s|error|Error"
done
echo "== decode tok/s, kernel 8 with 4 LoRA-A rows a block (LOWBIT_INT8X_AROWS=4) ($(date +%T))"
LOWBIT_INT8X_AROWS=4 timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv 2>&1 | grep -E "tok/s|error|Error"
echo "== decode tok/s, kernel 8 streamed, 2 blocks an SM with a ring each (LOWBIT_INT8X_STREAM_BPS=2) ($(date +%T))"
LOWBIT_INT8X_STREAM=1 LOWBIT_INT8X_STREAM_BPS=2 timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv 2>&1 | grep -E "tok/s|error|Error"
for S in ${STAGES:-}; do
  echo "== decode tok/s, kernel 8 streamed, $S ring stages ($(date +%T))"
  LOWBIT_INT8X_STREAM=1 LOWBIT_INT8X_STAGES=$S timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv 2>&1 | grep -E "tok/s|error|Error"
done
for K in ${SMEM:-110}; do
  echo "== decode tok/s, kernel 8 streamed, ring stages as fit $K KB a block ($(date +%T))"
  LOWBIT_INT8X_STREAM=1 LOWBIT_INT8X_SMEM=$K timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv 2>&1 | grep -E "tok/s|error|Error"
done
if [ -n "${FOLD:-}" ]; then
  echo "== decode tok/s, kernel 8 with its prep launches folded into the GEMVs (LOWBIT_INT8X_FOLD=1) ($(date +%T))"
  LOWBIT_INT8X_FOLD=1 timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv --json "$OUT/decode-fold.json" 2>&1 | grep -E "tok/s|error|Error"
fi
[ -n "${HANDOFF:-}" ] && echo "== decode tok/s, kernel 8 with B·t in the next launch (the hand-off) ($(date +%T))" &&
LOWBIT_INT8X_FOLD=0 LOWBIT_INT8X_BT=handoff timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv --json "$OUT/decode-handoff.json" 2>&1 | grep -E "tok/s|error|Error"
if [ -n "${SEP:-}" ]; then
  echo "== decode tok/s, kernel 8 with its attention as three launches ($(date +%T))"
  LOWBIT_DECODE_FOLD_ATTN=0 timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv --json "$OUT/decode-sep.json" 2>&1 | grep -E "tok/s|error|Error"
fi
if [ "${BENCH:-1}" != 0 ]; then
  echo "== int8-x bench ($(date +%T))"
  timeout 150 node bench/cuda-int8x-gemv.mjs --ksplit 4,8,16 --ahead ${AHEAD:-1} --sx ${SX:-1} --fixed ${FIXED:-1} --stream 0,1 --json "$OUT/int8x.json" 2>&1 | grep -E "copy bandwidth|skeleton|fixed order|streamed"
  [ -n "${PROFILE:-}" ] && OUT=$OUT/profile KERNELS="${PKERNELS:-8 5}" bash scripts/device/int8x-profile.sh 2>&1 | grep -v "^source"
fi
