#!/usr/bin/env bash
# GPU-machine run: where the batch-1 decode's time goes (issue #5). Probes of the v4 GEMV, Nsight Compute on the
# four GEMV groups (stall reasons per SASS instruction), per-kernel durations of one decoded token with the rank-64
# adapter, and the GEMV's SASS. Carry: .device build/device-v4 dist node_modules/@huggingface
#   source .device/on-device.sh && bash scripts/device/profile-decode.sh
set -uo pipefail
OUT=${OUT:-/tmp/lowbit-profile}
mkdir -p "$OUT"
export LOWBIT_ADDON=${LOWBIT_ADDON:-$PWD/build/device-v4/lowbit.node}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"
if [ "${PROBES:-1}" = 1 ]; then
  echo "== probes ($(date +%T))"
  timeout 120 node bench/cuda-decode.mjs --variants 4 --gemv-only --probes --kernels ${KERNELS:-0} --json "$OUT/probes.json" 2>&1 | tail -14
fi
if [ -n "${TESTS:-}" ]; then
  echo "== tests ($(date +%T))"
  timeout 200 node --test --test-reporter=tap --test-concurrency=1 $TESTS > "$OUT/tests.log" 2>&1; echo "tests rc=$?"
  grep -E '^# (tests|pass|fail|skipped)|^not ok|^ *not ok' "$OUT/tests.log" | head -20
  grep -E '^\s*# (kernel|GEMV|v4|v5)' "$OUT/tests.log" | head -40
  grep -B2 -A14 '^not ok\|^    not ok\|^  not ok' "$OUT/tests.log" | head -60
fi
if [ "${DECODE:-0}" = 1 ]; then
  for k in ${DECODE_KERNELS:-5}; do
    echo "== decode, GEMV kernel $k ($(date +%T))"
    LOWBIT_DGEMV_KERNEL=$k timeout 150 node bench/cuda-decode.mjs --variants 4 --modes graph --json "$OUT/decode-k$k.json" 2>&1 | grep -E "tok/s"
  done
fi
if [ -n "$NCU" ] && [ "${NCU_GEMV:-1}" = 1 ]; then
  echo "== ncu gemv ($(date +%T))"
  timeout 200 "$NCU" --clock-control none -k regex:${NCU_KERNEL:-dgemv} --launch-skip 4 --launch-count 4 --set full --import-source no \
    -o "$OUT/gemv" -f node bench/cuda-decode.mjs --profile gemv > "$OUT/ncu-gemv.log" 2>&1; echo "ncu rc=$?"; tail -3 "$OUT/ncu-gemv.log"
  "$NCU" --import "$OUT/gemv.ncu-rep" --page details > "$OUT/gemv-details.txt" 2>&1
  "$NCU" --import "$OUT/gemv.ncu-rep" --page source --print-source sass --csv > "$OUT/gemv-sass.csv" 2>&1
  grep -E "Duration|Warp Cycles Per Issued|Issued Warp|Memory Throughput|DRAM Throughput|Achieved Occupancy|Executed Ipc A|Issue Slots Busy|stall|Stall" "$OUT/gemv-details.txt" | head -${NCU_LINES:-60}
  python3 scripts/device/sass-stalls.py "$OUT/gemv-sass.csv" ${NCU_TOP:-30} 2>&1 | head -${NCU_SASS_LINES:-150}
fi
if [ -n "$NCU" ] && [ "${NCU_TOKEN:-1}" = 1 ]; then
  echo "== ncu token ($(date +%T))"
  timeout 200 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv node bench/cuda-decode.mjs --profile token > "$OUT/token.csv" 2> "$OUT/ncu-token.err"
  echo "ncu rc=$?"; wc -l "$OUT/token.csv"
fi
if command -v cuobjdump > /dev/null; then
  cuobjdump -sass "$LOWBIT_ADDON" > "$OUT/all.sass" 2>&1
  for f in dgemv_kernelILi1ELb0E dgemv5_kernel; do
    awk -v f="$f" '$0 ~ "Function : .*"f {p=1; print; next} p && /Function : / {p=0} p' "$OUT/all.sass" > "$OUT/$f.sass"
    echo "$f: $(wc -l < "$OUT/$f.sass") lines, $(grep -c LOP3 "$OUT/$f.sass") LOP3, $(grep -c HMMA "$OUT/$f.sass") HMMA, $(grep -c UBLKCP "$OUT/$f.sass") UBLKCP"
  done
  rm -f "$OUT/all.sass"
fi
cd "$OUT" && tar czf results.tgz --exclude=results.tgz * && ls | grep -v -E '^(results.tgz|probes.json)$' | xargs rm -f
