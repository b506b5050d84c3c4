#!/usr/bin/env bash
# GPU-machine run for the two open targets of issue #5 (decode share of the bandwidth bound, packed GEMM vs dense):
# the decode and fused-GEMM kernel tests, the decode bench per L2-prefetch mode, the fused GEMM bench at M = 512, and
# optionally Nsight Compute on one fused GEMM launch. Carry: .device build/device-v4 dist node_modules/@huggingface
#   source .device/on-device.sh && [TESTS="..."] [PF=0,1,2] [GEMM_VARIANTS=0,4,5] [NCU_GEMM=1] [SCOPES="layer linear"] bash scripts/device/run-decode-gemm.sh
# (an empty TESTS, PF or GEMM_VARIANTS skips that part)
set -uo pipefail
OUT=${OUT:-/tmp/lowbit-dg}
mkdir -p "$OUT"
export LOWBIT_ADDON=${LOWBIT_ADDON:-$PWD/build/device-v4/lowbit.node}
TESTS=${TESTS-dist/test/cuda-decode-kernels.test.js dist/test/cuda-decode.test.js dist/test/cuda-qgemm-fused.test.js}
if [ -n "$TESTS" ]; then
  echo "== tests ($(date +%T))"
  timeout 240 node --test --test-reporter=tap --test-concurrency=1 $TESTS > "$OUT/tests.log" 2>&1; echo "tests rc=$?"
  grep -E '^# (tests|pass|fail|skipped)' "$OUT/tests.log"
  grep -B2 -A14 '^not ok\|^    not ok\|^  not ok' "$OUT/tests.log" | head -60
fi
if [ -n "${PF-0,1,2}" ]; then
  echo "== decode, prefetch modes ${PF:-0,1,2} ($(date +%T))"
  timeout 240 node bench/cuda-decode.mjs --variants 4 --modes graph --prefetch "${PF:-0,1,2}" ${DECODE_ARGS:-} --json "$OUT/decode.json" 2>&1 | grep -E "copy|tok/s|µs"
fi
if [ -n "${GEMM_VARIANTS-0,4,5,7}" ]; then
  echo "== fused GEMM, variants ${GEMM_VARIANTS:-0,4,5,7} ($(date +%T))"
  timeout 120 node bench/cuda-qgemm-fused.mjs --M "${GEMM_M:-512}" --variants "${GEMM_VARIANTS:-0,4,5,7}" --json "$OUT/qgemm.json" 2>&1 | tail -12
fi
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ] && [ "${NCU_GEMM:-0}" = 1 ]; then
  echo "== ncu fused GEMM (${NCU_GEMM_KERNEL:-rp_sk}) ($(date +%T))"
  timeout 150 "$NCU" --clock-control none -k "regex:${NCU_GEMM_KERNEL:-rp_sk}" --launch-skip "${NCU_SKIP:-2}" --launch-count 1 --set full \
    --import-source no -o "$OUT/gemm" -f node bench/cuda-qgemm-fused.mjs --M 512 --variants "${NCU_GEMM_VARIANT:-5}" --reps 3 > "$OUT/ncu-gemm.log" 2>&1
  echo "ncu rc=$?"; tail -2 "$OUT/ncu-gemm.log"
  "$NCU" --import "$OUT/gemm.ncu-rep" --page details > "$OUT/gemm-details.txt" 2>&1
  "$NCU" --import "$OUT/gemm.ncu-rep" --page source --print-source sass --csv > "$OUT/gemm-sass.csv" 2>&1
  grep -E "Grid Size|Block Size|Duration|Issued Warp|Warp Cycles Per Issued|Compute \(SM\) Throughput|L2 Cache Throughput|DRAM Throughput|Registers|Shared Memory Configuration Size|Achieved Occupancy" "$OUT/gemm-details.txt" | head -30
  rm -f "$OUT/gemm.ncu-rep"
fi
# SCOPES="layer linear": RILQ §5's compensation scopes on the GPU (shipped model, 320 micro-steps)
for sc in ${SCOPES:-}; do
  echo "== compensate --method $sc on the GPU (shipped model) ($(date +%T))"
  [ -d /tmp/q2 ] || node dist/src/cli/main.js quantize --model models/tiny-jargon --method rtn --bits 2 --group 64 --out /tmp/q2 > /dev/null 2>&1
  timeout 200 node dist/src/cli/main.js compensate --device cuda --model models/tiny-jargon --quant /tmp/q2 --method $sc --rank 16 \
    --calib data/jargon.train.txt --samples 320 --seq 256 --max-steps ${SCOPE_STEPS:-320} --lr 1e-3 --eval-every 10 --patience 5 \
    --heldout data/jargon.heldout.txt --out /tmp/$sc-gpu --json > "$OUT/$sc-gpu.log" 2>&1; echo "compensate rc=$?"
  tail -1 "$OUT/$sc-gpu.log" | cut -c1-700
done
echo "== done ($(date +%T))"
