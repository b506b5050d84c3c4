#!/usr/bin/env bash
# GPU-machine run for the quantizer kernels (quantize --device cuda for rtn/nf/icq): the bit-identity tests
# against the TypeScript quantizers, then bench/cuda-quantize.mjs. Carry: .device build/device-v4 dist node_modules/@huggingface
#   source .device/on-device.sh && bash scripts/device/run-cuda-quantize.sh
# Writes under $OUT: env.txt, tests.log, parity.txt, bench.log, cuda-quantize.md/.json (→ bench/results/).
set -uo pipefail
OUT=${OUT:-/tmp/lowbit-cuda-quantize}
mkdir -p "$OUT"
export LOWBIT_ADDON=${LOWBIT_ADDON:-$PWD/build/device-v4/lowbit.node}
status=0
{ nvidia-smi; node --version; nproc; grep -m1 'model name' /proc/cpuinfo; } > "$OUT/env.txt" 2>&1
t0=$(date +%s)
timeout 240 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-quantize.test.js dist/test/quantize-gpu-emulated.test.js \
  > "$OUT/tests.log" 2>&1 || status=1
echo "tests: rc=$status in $(( $(date +%s) - t0 )) s"
grep -E '^# (tests|pass|fail|skipped)|^not ok|^ok|# SKIP' "$OUT/tests.log" | head -30
grep -E '^\s*# .*(identical|differ)' "$OUT/tests.log" | sed 's/^ *//' | head -80 > "$OUT/parity.txt"
grep -A20 '^not ok' "$OUT/tests.log" | head -60
t1=$(date +%s)
timeout 300 node bench/cuda-quantize.mjs --md "$OUT/cuda-quantize.md" --json "$OUT/cuda-quantize.json" > "$OUT/bench.log" 2>&1 || status=$((status | 2))
echo "bench: rc=$status in $(( $(date +%s) - t1 )) s"
tail -n 20 "$OUT/bench.log"
exit $status
