#!/usr/bin/env bash
# fifteenth session, second call (same warm machine as session13-a.sh): where the int8-x GEMV's time goes — Nsight
# Compute on the q/k/v shape (split K 1 and 4, 1 and 3 blocks ahead), the SASS stall summary, and its instruction mix
# (IMMA / LOP3 per kernel) beside kernel 5's. Carry: .device build/device-x dist node_modules/@huggingface
source .device/on-device.sh
set -uo pipefail
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/build/device-x/lowbit.node
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU ($(date +%T))"
if [ -n "$NCU" ]; then
  timeout 200 "$NCU" --clock-control none -k regex:int8x_gemv --launch-count ${NCU_COUNT:-12} --set full --import-source no \
    -o "$OUT/i8" -f node bench/cuda-int8x-gemv.mjs --profile --ksplit ${KSPLIT:-1,4} > "$OUT/ncu.log" 2>&1; echo "ncu rc=$?"; tail -3 "$OUT/ncu.log"
  "$NCU" --import "$OUT/i8.ncu-rep" --page details > "$OUT/i8-details.txt" 2>&1
  "$NCU" --import "$OUT/i8.ncu-rep" --page source --print-source sass --csv > "$OUT/i8-sass.csv" 2>&1
  grep -E "int8x_gemv|Duration|Registers Per|Issued Warp|DRAM Throughput|Executed Ipc A|Issue Slots Busy|Achieved Occupancy|Warp Cycles Per Issued" "$OUT/i8-details.txt" | head -${NCU_LINES:-120}
  python3 scripts/device/sass-stalls.py "$OUT/i8-sass.csv" ${NCU_TOP:-30} 2>&1 | head -${NCU_SASS_LINES:-90}
fi
if command -v cuobjdump > /dev/null; then
  cuobjdump -sass "$LOWBIT_ADDON" > "$OUT/all.sass" 2>&1
  for f in int8x_gemv_kernelILi1E int8x_gemv_kernelILi3E int8x_prep_kernel dgemv5_kernel; do
    awk -v f="$f" '$0 ~ "Function : .*"f {p=1; print; next} p && /Function : / {p=0} p' "$OUT/all.sass" > "$OUT/$f.sass"
    echo "$f: $(wc -l < "$OUT/$f.sass") lines, $(grep -c IMMA "$OUT/$f.sass") IMMA, $(grep -c HMMA "$OUT/$f.sass") HMMA, $(grep -c LOP3 "$OUT/$f.sass") LOP3, $(grep -c 'LDG' "$OUT/$f.sass") LDG"
  done
  rm -f "$OUT/all.sass"
fi
cd "$OUT" && tar czf results.tgz --exclude=results.tgz *.txt *.sass *.log 2>/dev/null; rm -f *.ncu-rep *.csv; ls
