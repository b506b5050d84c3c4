#!/usr/bin/env bash
# Nsight Compute on the lone q/k/v GEMV (12288 × 4096), the per-tile fixed-order kernel beside the streamed one
# (parts & 512), 8 warps: duration, memory throughput, occupancy and warp stall reasons (the third launch of each).
# Build and carry as for int8x-decode.sh.
source .device/on-device.sh
set -uo pipefail
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/${ADDON:-build/device-z}/lowbit.node
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 240 "$NCU" --clock-control none -k regex:"int8x_(gemv|stream)_kernel" --launch-count 6 \
  --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis \
  node bench/cuda-int8x-gemv.mjs --profile --stream --ksplit ${KS:-8} > "$OUT/stream-ncu.txt" 2>&1; echo "ncu rc=$?"
grep -iE "int8x_(gemv|stream)_kernel|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Dynamic Shared|Block Limit|Stall|Warp Cycles Per Issued|Issued Warp|stall" "$OUT/stream-ncu.txt" | head -120
