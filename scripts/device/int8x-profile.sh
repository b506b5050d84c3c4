#!/usr/bin/env bash
# Where kernel 8's token goes: Nsight Compute's per-kernel durations of one eager decode step (7B shape, rank-64 adapter
# and none) for kernels 8 and 5, summarised per kernel by ncu-token-summary.py. ncu runs each kernel alone (no PDL
# overlap, clocks free), so the sum is an upper bound of the graph's time and each row the kernel's own cost.
# Build here as for int8x-decode.sh; carry: .device build/device-z dist node_modules/@huggingface
source .device/on-device.sh
set -uo pipefail
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/${ADDON:-build/device-z}/lowbit.node
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"
for k in ${KERNELS:-8 5}; do
  for p in ${PROFILES:-token token-base}; do
    echo "== kernel $k, $p ($(date +%T))"
    LOWBIT_DGEMV_KERNEL=$k timeout 240 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv \
      node bench/cuda-decode.mjs --profile $p > "$OUT/k$k-$p.csv" 2> "$OUT/k$k-$p.err"; echo "ncu rc=$?"
    python3 scripts/device/ncu-token-summary.py "$OUT/k$k-$p.csv" 2>&1 | head -24
  done
done
