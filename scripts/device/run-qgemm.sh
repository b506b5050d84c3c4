#!/usr/bin/env bash
# GPU-machine run: the fused packed GEMM's tests on one addon, then its bench (dense cuBLAS, dequant + cuBLAS and the
# fused variants side by side, same GPU). Carry: .device dist node_modules/@huggingface and the addon's build folder.
#   source .device/on-device.sh && ADDON=build/device-v4 VARIANTS=0,4,7,9 bash scripts/device/run-qgemm.sh
# Env: ADDON (build dir), VARIANTS (0,4,7,9), MS (512), REPS (30), TESTS (1)
set -uo pipefail
OUT=${OUT:-/tmp/lowbit-qgemm}
mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/${ADDON:-build/device-v4}/lowbit.node
if [ "${TESTS:-1}" = 1 ]; then
  echo "== qgemm tests ($(date +%T))"
  timeout 300 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-qgemm-fused.test.js > "$OUT/qgemm-tests.log" 2>&1; echo "tests rc=$?"
  grep -E '^# (tests|pass|fail|skipped)' "$OUT/qgemm-tests.log"
  grep -E 'variant 9|→ cudaQGemm' "$OUT/qgemm-tests.log" | head -20
  grep -B2 -A14 '^not ok\|^    not ok\|^  not ok' "$OUT/qgemm-tests.log" | head -60
fi
echo "== qgemm bench ($(date +%T))"
timeout 200 node bench/cuda-qgemm-fused.mjs --M ${MS:-512} --reps ${REPS:-30} --variants ${VARIANTS:-0,4,7,9} --json "$OUT/qgemm-bench.json" 2>&1 | tail -12
