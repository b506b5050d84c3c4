#!/usr/bin/env bash
# Where the chain's phases stall (run 102: its x̂ staging 4–16 µs a phase, its folds ~1.5× the ring's rate): Nsight
# Compute on two chain launches of one eager token with the rank-64 adapter (kernel 8, LOWBIT_INT8X_CHAIN=1 plus
# CHAINENV), stall reasons per SASS instruction (sass-stalls.py). Build and carry as for stream-check.sh.
source .device/on-device.sh >/dev/null 2>&1
set -uo pipefail
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/${ADDON:-build/device-z}/lowbit.node
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"
env LOWBIT_DGEMV_KERNEL=8 LOWBIT_INT8X_CHAIN=1 ${CHAINENV:-} timeout 300 "$NCU" --clock-control none -k regex:int8x_chain \
  --launch-skip 8 --launch-count 2 --set full --import-source no -o "$OUT/chain" -f node bench/cuda-decode.mjs --profile token \
  > "$OUT/ncu-chain.log" 2>&1; echo "ncu rc=$?"; tail -3 "$OUT/ncu-chain.log"
"$NCU" --import "$OUT/chain.ncu-rep" --page details > "$OUT/chain-details.txt" 2>&1
"$NCU" --import "$OUT/chain.ncu-rep" --page source --print-source sass --csv > "$OUT/chain-sass.csv" 2>&1
grep -E "Duration|Warp Cycles Per Issued|Issued Warp|Memory Throughput|DRAM Throughput|L2 Cache Throughput|Executed Ipc A|Issue Slots Busy|Registers|Stall|stall" "$OUT/chain-details.txt" | head -40
python3 scripts/device/sass-stalls.py "$OUT/chain-sass.csv" 40 2>&1 | head -120
xz -k -T0 "$OUT/chain-sass.csv" 2>/dev/null; rm -f "$OUT/chain-sass.csv"
