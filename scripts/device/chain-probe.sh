#!/usr/bin/env bash
# The chain's items rate, taken apart (run 101 found the chain's phases fold at ~1.3 TB/s, like the lone GEMVs): chain
# traces (bench --trace-chain) of the skeleton (PROBE=1: stages land, no fold), a deeper ring (SMEM KB → 8 stages), 8
# warps at one and two blocks an SM. Build and carry as for stream-check.sh.
source .device/on-device.sh >/dev/null 2>&1
set -uo pipefail
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/${ADDON:-build/device-z}/lowbit.node
for S in ${CASES:-"PROBE=0" "PROBE=1" "SMEM=220" "SMEM=220,PROBE=1" "SMEM=100" "WARPS=8" "WARPS=8,BPS=2"}; do
  E=$(echo "$S" | tr ',' '\n' | sed 's/^/LOWBIT_INT8X_CHAIN_/' | tr '\n' ' ')
  echo "== chain trace, $E"
  env $E timeout 120 node bench/cuda-decode.mjs --trace-chain --json "$OUT/trace-$(echo "$S" | tr ',=' '_-').json" 2>&1 | grep -v "^copy" | tail -16
done
