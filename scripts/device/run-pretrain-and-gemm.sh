#!/usr/bin/env bash
# GPU-machine run: trains the shipped tiny model on the host's CPU cores while the CUDA tests and the
# cuBLAS-vs-PyTorch GEMM bench run on the GPU.
# Carry: .device build/device-v3 build/device-v4 dist node_modules/@huggingface
set -uo pipefail
if grep -q avx512f /proc/cpuinfo; then export LOWBIT_ADDON=$PWD/build/device-v4/lowbit.node; else export LOWBIT_ADDON=$PWD/build/device-v3/lowbit.node; fi
echo "addon: $LOWBIT_ADDON"; nproc
node dist/src/cli/main.js env
MAX_MINUTES=${MAX_MINUTES:-7.5} bash scripts/make-tiny-model.sh /tmp/tiny-jargon 14 > $OUT/pretrain.json 2> $OUT/pretrain.err &
PT=$!
sleep 5
OUT=/tmp/gemm bash bench/run-cuda-gemm.sh > /tmp/gemm.log 2>&1
cp /tmp/gemm.log /tmp/gemm/; tail -30 /tmp/gemm.log
(cd /tmp && tar czf $OUT/gemm.tgz gemm)
wait $PT
tail -5 $OUT/pretrain.err; tail -1 $OUT/pretrain.json
cd /tmp && tar czf $OUT/tiny-jargon.tgz tiny-jargon && ls -la $OUT
