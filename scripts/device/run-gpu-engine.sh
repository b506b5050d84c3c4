#!/usr/bin/env bash
# GPU-machine run for the CUDA engine (issue #5): parity tests of every CUDA kernel and of the whole GPU model
# against the CPU path, then (MODE=full) the side-by-side benchmarks and a GPU compensate run on the shipped
# model. Carry: .device build/device-v4 dist node_modules/@huggingface
#   source .device/on-device.sh && MODE=tests|full bash scripts/device/run-gpu-engine.sh
# Writes under $OUT: env.txt, tests.log, parity.txt, *.json, *.log.
set -uo pipefail
OUT=${OUT:-/tmp/lowbit-gpu-engine}
MODE=${MODE:-full}
mkdir -p "$OUT"
export LOWBIT_ADDON=${LOWBIT_ADDON:-$PWD/build/device-v4/lowbit.node}
{ nvidia-smi; node --version; nproc; grep -m1 'model name' /proc/cpuinfo; } > "$OUT/env.txt" 2>&1
step() { echo "== $1 ($(date +%T))"; }
step tests
timeout ${TEST_TIMEOUT:-240} node --test --test-reporter=tap --test-concurrency=1 ${TESTS:-dist/test/cuda-train-ops.test.js dist/test/cuda-attention.test.js \
  dist/test/cuda-model.test.js dist/test/cuda-decode.test.js dist/test/cuda-decode-kernels.test.js dist/test/cuda-quant.test.js \
  dist/test/native-cuda.test.js dist/test/cuda-qgemm-fused.test.js dist/test/cuda-kl-ce.test.js dist/test/cuda-quantize.test.js \
  dist/test/cuda-gptq.test.js dist/test/cuda-gptq-calib.test.js} > "$OUT/tests.log" 2>&1
echo "tests rc=$?"
grep -E '^# (tests|pass|fail|skipped)|^not ok|# SKIP' "$OUT/tests.log" | head -40
grep -E '^\s*# ' "$OUT/tests.log" | grep -vE '^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms)' | sed 's/^ *//' | head -80 > "$OUT/parity.txt"
grep -B2 -A12 '^not ok\|^    not ok\|^  not ok' "$OUT/tests.log" | head -120
[ "$MODE" = tests ] && exit 0
if [ "${RILQ:-1}" = 1 ]; then
  step "rilq micro-step (lowbit)"
  timeout 150 node bench/cuda-rilq.mjs --json "$OUT/rilq.json" 2>&1 | tail -30
fi
if [ "${DECODE:-1}" = 1 ]; then
  step "decode (lowbit)"
  timeout 240 node bench/cuda-decode.mjs --variants ${DECODE_VARIANTS:-3,4} --json "$OUT/decode.json" 2>&1 | tail -24
fi
if [ "${DEQUANT:-1}" = 1 ]; then
  step "dequantization, packed GEMM, fused GEMV (v1, v2)"
  timeout 180 node bench/cuda-dequant.mjs --md "$OUT/cuda-dequant.md" --json "$OUT/cuda-dequant.json" > "$OUT/dequant.log" 2>&1; echo "dequant rc=$?"
  tail -30 "$OUT/dequant.log"
fi
if [ "${QGEMM:-1}" = 1 ]; then
  step "packed GEMM: dense vs dequantize + cuBLAS vs fused (wgmma)"
  timeout 200 node bench/cuda-qgemm-fused.mjs --json "$OUT/qgemm-fused.json" 2>&1 | tail -8
fi
if [ "${ATTN:-1}" = 1 ]; then
  step "attention"
  timeout 60 node bench/cuda-attention.mjs 2>&1 | tail -12
fi
if [ "${TORCH:-1}" = 1 ]; then
  step "torch reference"
  timeout 300 python3 bench/torch_reference.py --out "$OUT" > "$OUT/torch.log" 2>&1; echo "torch rc=$?"; tail -15 "$OUT/torch.log"
fi
if [ "${COMPENSATE:-1}" = 1 ]; then
  step "compensate on the GPU (shipped model, demo recipe)"
  node dist/src/cli/main.js quantize --model models/tiny-jargon --method rtn --bits 2 --group 64 --out /tmp/q2 > /dev/null 2>&1
  timeout 300 node dist/src/cli/main.js compensate --device cuda --model models/tiny-jargon --quant /tmp/q2 --method rilq --rank 16 \
    --calib data/jargon.train.txt --samples 320 --seq 256 --max-steps 1280 --lr 1e-3 --eval-every 10 --patience 5 \
    --heldout data/jargon.heldout.txt --out /tmp/rilq-gpu --json > "$OUT/compensate.log" 2>&1; echo "compensate rc=$?"
  tail -3 "$OUT/compensate.log"; cp /tmp/rilq-gpu/train-log.json "$OUT/compensate-train-log.json" 2>/dev/null
  timeout 60 node dist/src/cli/main.js eval ppl --device cuda --model /tmp/q2 --adapter /tmp/rilq-gpu --data data/jargon.heldout.txt --seq 256 --json 2>&1 | tail -1 > "$OUT/ppl-gpu.json"
  cat "$OUT/ppl-gpu.json"
  step "CPU path vs GPU engine on the shipped model (logits, greedy generation)"
  timeout 120 node scripts/device/compare-cpu-gpu.mjs /tmp/q2 /tmp/rilq-gpu --json "$OUT/cpu-vs-gpu.json" 2>&1 | tail -8
  timeout 60 node dist/src/cli/main.js generate --device cuda --model /tmp/q2 --adapter /tmp/rilq-gpu --prompt "A hacker is" --temperature 0 --max-tokens 24 2>&1 | tail -2
fi
# $OUT returns at most 8 files: everything else goes into one tarball
cd "$OUT" && tar czf results.tgz --exclude=results.tgz * && ls | grep -v -E '^(results.tgz|parity.txt|env.txt)$' | xargs rm -f
