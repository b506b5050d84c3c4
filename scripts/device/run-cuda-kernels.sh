#!/usr/bin/env bash
# GPU-machine run for the packed-weight CUDA kernels: parity tests first (cuda-quant + the base CUDA tests),
# then bench/cuda-dequant.mjs. Carry: .device build/device-v4 dist node_modules/@huggingface
#   source .device/on-device.sh && bash scripts/device/run-cuda-kernels.sh
# Writes under $OUT: env.txt, tests.log, bench.log, cuda-dequant.md/.json (→ bench/results/cuda-dequant.md).
set -uo pipefail
OUT=${OUT:-/tmp/lowbit-cuda-kernels}
mkdir -p "$OUT"
export LOWBIT_ADDON=${LOWBIT_ADDON:-$PWD/build/device-v4/lowbit.node}
status=0
{ nvidia-smi; node --version; nproc; grep -m1 'model name' /proc/cpuinfo; } > "$OUT/env.txt" 2>&1
t0=$(date +%s)
timeout 100 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-quant.test.js dist/test/native-cuda.test.js \
  > "$OUT/tests.log" 2>&1 || status=1
echo "tests: rc=$status in $(( $(date +%s) - t0 )) s"
grep -E '^# (tests|pass|fail|skipped)|^not ok|^ok|# SKIP' "$OUT/tests.log" | head -30
grep -E '^\s*# .*(rel err|bit-exact)' "$OUT/tests.log" | sed 's/^ *//' | head -60 > "$OUT/parity.txt"
t1=$(date +%s)
timeout 180 node bench/cuda-dequant.mjs --md "$OUT/cuda-dequant.md" --json "$OUT/cuda-dequant.json" > "$OUT/bench.log" 2>&1 || status=$((status | 2))
echo "bench: rc=$status in $(( $(date +%s) - t1 )) s"
tail -n 60 "$OUT/bench.log"
exit $status
