#!/usr/bin/env bash
# One GPU-machine run: CUDA tests of the addon, then our cuBLAS bf16 GEMM vs PyTorch's on the same shapes.
#   source .device/on-device.sh && bash bench/run-cuda-gemm.sh
# Needs (carried, see docs/native.md): .device, build/device (the addon, built here with
#   LOWBIT_MARCH=x86-64-v3 LOWBIT_BUILD_DIR=build/device node scripts/build-native.mjs) and dist (tests).
# Everything it writes goes to $OUT (default /tmp/lowbit-cuda-gemm); the report is $OUT/cuda-gemm.md,
# to be committed as bench/results/cuda-gemm.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/lowbit-cuda-gemm}
mkdir -p "$OUT"
export LOWBIT_ADDON=${LOWBIT_ADDON:-$PWD/build/device/lowbit.node}
status=0
{ nvidia-smi; node --version; python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'; } > "$OUT/env.txt" 2>&1
if [[ -d dist/test ]]; then
  # CPU tests too: they exercise the x86-64-v3 (AVX2) kernels this build carries.
  node --test --test-concurrency=1 dist/test/native-cuda.test.js dist/test/native-sgemm.test.js \
    dist/test/native-attention.test.js > "$OUT/native-tests.log" 2>&1 || status=1
  tail -n 12 "$OUT/native-tests.log"
  grep -E '^# Subtest|^not ok|# SKIP' "$OUT/native-tests.log" | head -40
else
  echo "dist/ not carried: skipping the tests" | tee "$OUT/native-tests.log"
fi
node bench/cuda-gemm.mjs --json "$OUT/ours.json" 2>&1 | tee "$OUT/ours.log" || status=1
python3 bench/cuda_gemm_torch.py --json "$OUT/torch.json" 2>&1 | tee "$OUT/torch.log" || status=1
if [[ -f "$OUT/ours.json" ]]; then
  node bench/cuda-gemm.mjs --report "$OUT/ours.json" "$OUT/torch.json" --md "$OUT/cuda-gemm.md" || status=1
  cp "$OUT/cuda-gemm.md" bench/results/cuda-gemm.md
fi
exit $status
