#!/usr/bin/env bash
# The kernel-8 (int8-x) decode plan on the GPU machine: the int8-x kernel tests (GEMV with the LoRA-A rows, the prep's
# hand-offs, the device repack), the decoder test (kernel 8 against the CPU model, graphs, device greedy), the decode
# kernel tests (kernel 8's one-launch attention among them), decode tok/s of kernels 5 and 8 side by side (7B shape,
# rank-64 adapter and none; kernel 8 streams its GEMVs with an adapter by default, and is also timed with per-tile GEMVs
# everywhere, the counters reset by the last tile block, and the VARIANTS list), and the int8-x
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
# decode tok/s of kernel 8 (graphs, 128 tokens, with the rank-64 adapter and none) under the caller's LOWBIT_* settings
k8() { timeout 120 node bench/cuda-decode.mjs --variants 4 --kernels 8 --modes graph --tokens 128 --no-gemv "$@" 2>&1 | grep -E "tok/s|error|Error"; }
echo "== int8-x kernel tests ($(date +%T))"
timeout 120 node --test --test-reporter=tap dist/test/cuda-int8x-gemv-model.test.js > "$OUT/tests-i8.log" 2>&1; echo "rc=$?"
grep -E '^# (tests|pass|fail|skipped)|^not ok|LoRA-A rows:|xOut vs twin|differ|streamed' "$OUT/tests-i8.log"; grep -A14 '^not ok' "$OUT/tests-i8.log" | head -30
if [ "${TESTS:-all}" = all ]; then  # TESTS=i8: the int8-x kernel tests only
echo "== decoder tests ($(date +%T))"
timeout 200 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js > "$OUT/tests-dec.log" 2>&1; echo "rc=$?"
grep -E '^# (tests|pass|fail|skipped)|^not ok|GEMV v' "$OUT/tests-dec.log"; grep -A16 '^not ok' "$OUT/tests-dec.log" | head -40
if [ "${KTESTS:-1}" != 0 ]; then  # KTESTS=0: not the decode kernel tests
echo "== decode kernel tests ($(date +%T))"
timeout 150 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode-kernels.test.js > "$OUT/tests-kern.log" 2>&1; echo "rc=$?"
grep -E '^# (tests|pass|fail|skipped)|^not ok|x̂ codes moved' "$OUT/tests-kern.log"; grep -A16 '^not ok' "$OUT/tests-kern.log" | head -30
fi
fi
if [ -n "${BASE:-}" ]; then
  echo "== decode tok/s, kernels 5 and 8 on the baseline build $BASE ($(date +%T))"
  (cd "$BASE" && LOWBIT_ADDON=$PWD/lowbit.node timeout 150 node bench/cuda-decode.mjs --variants 4 --kernels 5,8 --modes graph --tokens 128 --no-gemv --json "$OUT/decode-base.json" 2>&1 | grep -E "tok/s|error|Error")
fi
echo "== decode tok/s, kernels 5 and 8 ($(date +%T))"
timeout 200 node bench/cuda-decode.mjs --variants 4 --kernels ${KERNELS:-5,8} --modes graph --tokens 128 --no-gemv --json "$OUT/decode.json" 2>&1 | grep -E "tok/s|error|Error|int8-x plan"
if [ -n "${AB:-}" ]; then  # run 89's A/Bs: the earlier split-K rule, no B prefetch
  echo "== decode tok/s, kernel 8 with the earlier split-K / ring rule (LOWBIT_INT8X_PICK=4096) ($(date +%T))"
  LOWBIT_INT8X_PICK=4096 k8 --json "$OUT/decode-pick.json"
  echo "== decode tok/s, kernel 8 without the B prefetch of the epilogue's B·t ($(date +%T))"
  LOWBIT_INT8X_BPRE=0 k8 --json "$OUT/decode-nopre.json"
fi
[ "${ZEROAB:-1}" != 0 ] && echo "== decode tok/s, kernel 8 with the B·t counters reset by each GEMV's last tile block (LOWBIT_INT8X_ZERO=tile; the default before run 92) ($(date +%T))"
[ "${ZEROAB:-1}" != 0 ] && LOWBIT_INT8X_ZERO=tile k8 --json "$OUT/decode-zero.json"
# the streamed GEMVs (parts & 512: a block per SM, a bulk-copy ring issued before the PDL wait); ring stages as fit 160 KB
# a block (default), the STAGES list and the SMEM list (KB a block)
# kernel 8 streams its GEMVs by default with an adapter (three blocks an SM, run 98); STREAM=0 skips this row, the
# per-tile kernel everywhere (the default before)
[ "${STREAM:-1}" != 0 ] && echo "== decode tok/s, kernel 8 with per-tile GEMVs everywhere (LOWBIT_INT8X_STREAM=0) ($(date +%T))"
[ "${STREAM:-1}" != 0 ] && LOWBIT_INT8X_STREAM=0 k8 --json "$OUT/decode-tiled.json"
for W in ${WARPS:-}; do
  echo "== decode tok/s, kernel 8 streamed, $W warps a block ($(date +%T))"
  LOWBIT_INT8X_STREAM=1 LOWBIT_INT8X_STREAM_WARPS=$W k8
done
[ "${AROWS:-1}" != 0 ] && echo "== decode tok/s, kernel 8 with 4 LoRA-A rows a block (LOWBIT_INT8X_AROWS=4) ($(date +%T))"
[ "${AROWS:-1}" != 0 ] && LOWBIT_INT8X_AROWS=4 k8
# VARIANTS: a ;-separated list of LOWBIT_INT8X_* settings (without the prefix on the first), each timed with k8
IFS=';' read -r -a VLIST <<< "${VARIANTS:-}"
for V in "${VLIST[@]}"; do
  echo "== decode tok/s, kernel 8 with LOWBIT_INT8X_$V ($(date +%T))"
  ( export LOWBIT_INT8X_$V; k8 )
done
# BPS: a list of blocks an SM (1–4) for the streamed GEMVs, each timed (the default is 3)
for B in ${BPS:-}; do
  echo "== decode tok/s, kernel 8 streamed, $B blocks an SM with a ring each (LOWBIT_INT8X_STREAM_BPS=$B) ($(date +%T))"
  LOWBIT_INT8X_STREAM=1 LOWBIT_INT8X_STREAM_BPS=$B k8
done
for S in ${STAGES:-}; do
  echo "== decode tok/s, kernel 8 streamed, $S ring stages ($(date +%T))"
  LOWBIT_INT8X_STREAM=1 LOWBIT_INT8X_STAGES=$S k8
done
for K in ${SMEM:-}; do
  echo "== decode tok/s, kernel 8 streamed, ring stages as fit $K KB a block ($(date +%T))"
  LOWBIT_INT8X_STREAM=1 LOWBIT_INT8X_SMEM=$K k8
done
if [ -n "${FOLD:-}" ]; then
  echo "== decode tok/s, kernel 8 with its prep launches folded into the GEMVs (LOWBIT_INT8X_FOLD=1) ($(date +%T))"
  LOWBIT_INT8X_FOLD=1 k8 --json "$OUT/decode-fold.json"
fi
[ -n "${HANDOFF:-}" ] && echo "== decode tok/s, kernel 8 with B·t in the next launch (the hand-off) ($(date +%T))" &&
LOWBIT_INT8X_FOLD=0 LOWBIT_INT8X_BT=handoff k8 --json "$OUT/decode-handoff.json"
if [ -n "${SEP:-}" ]; then
  echo "== decode tok/s, kernel 8 with its attention as three launches ($(date +%T))"
  LOWBIT_DECODE_FOLD_ATTN=0 k8 --json "$OUT/decode-sep.json"
fi
if [ "${BENCH:-1}" != 0 ]; then
  echo "== int8-x bench ($(date +%T))"
  timeout 150 node bench/cuda-int8x-gemv.mjs --ksplit 4,8,16 --ahead ${AHEAD:-1} --sx ${SX:-1} --fixed ${FIXED:-1} --stream 0,1 --json "$OUT/int8x.json" 2>&1 | grep -E "copy bandwidth|skeleton|fixed order|streamed"
  [ -n "${PROFILE:-}" ] && OUT=$OUT/profile KERNELS="${PKERNELS:-8 5}" bash scripts/device/int8x-profile.sh 2>&1 | grep -v "^source"
fi
