#!/usr/bin/env bash
# GPU-machine run for GPTQ on the GPU (quantize --method gptq --device cuda): the kernel/parity tests against the f64
# TypeScript reference, the CLI test (GPU GPTQ vs the CPU run on the shipped model), the GPU calibration forward's tests
# (test/cuda-gptq-calib.test.ts), then bench/cuda-gptq.mjs and bench/cuda-gptq-model.mjs (whole-model GPTQ, 7B widths).
# Carry: .device build/device-v4 dist node_modules/@huggingface
#   source .device/on-device.sh && bash scripts/device/run-cuda-gptq.sh
# Writes under $OUT: env.txt, tests.log, parity.txt, bench.log, cuda-gptq.md/.json, bench-model.log, cuda-gptq-model.md/.json (→ bench/results/).
set -uo pipefail
OUT=${OUT:-/tmp/lowbit-cuda-gptq}
mkdir -p "$OUT"
export LOWBIT_ADDON=${LOWBIT_ADDON:-$PWD/build/device-v4/lowbit.node}
status=0
{ nvidia-smi; node --version; nproc; grep -m1 'model name' /proc/cpuinfo; } > "$OUT/env.txt" 2>&1
t0=$(date +%s)
timeout ${TEST_TIMEOUT:-420} node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-gptq.test.js \
  dist/test/gptq-gpu-emulated.test.js dist/test/quant-cli-device.test.js dist/test/cuda-gptq-calib.test.js \
  dist/test/gptq-calib-gpu-emulated.test.js > "$OUT/tests.log" 2>&1 || status=1
echo "tests: rc=$status in $(( $(date +%s) - t0 )) s"
grep -E '^# (tests|pass|fail|skipped)|^not ok|^ok|# SKIP' "$OUT/tests.log" | head -30
grep -E '^\s*# ' "$OUT/tests.log" | grep -vE '^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms)' | sed 's/^ *//' | head -80 > "$OUT/parity.txt"
grep -A20 '^not ok' "$OUT/tests.log" | head -60
t1=$(date +%s)
timeout ${BENCH_TIMEOUT:-240} node bench/cuda-gptq.mjs --md "$OUT/cuda-gptq.md" --json "$OUT/cuda-gptq.json" > "$OUT/bench.log" 2>&1 || status=$((status | 2))
echo "bench: rc=$status in $(( $(date +%s) - t1 )) s"
tail -n 24 "$OUT/bench.log"
# the whole-model run: calibration forward on the GPU (and, for comparison, on the CPU model), 7B widths, 2 layers, 32 × 512
t2=$(date +%s)
timeout ${MODEL_BENCH_TIMEOUT:-420} node bench/cuda-gptq-model.mjs ${MODEL_BENCH_ARGS:---cpu-forward} --md "$OUT/cuda-gptq-model.md" \
  --json "$OUT/cuda-gptq-model.json" > "$OUT/bench-model.log" 2>&1 || status=$((status | 4))
echo "model bench: rc=$status in $(( $(date +%s) - t2 )) s"
tail -n 12 "$OUT/bench-model.log"
exit $status
