#!/usr/bin/env bash
# fifteenth session, third call: the int8-x GEMV with every per-block operand in the register ring (y = HEAD) against
# the run-78 build (x = 723231a: only the words ahead), same machine: y's tests, both benches, kernel 5's lone GEMVs.
# Carry: .device build/device-x build/device-y dist node_modules/@huggingface
source .device/on-device.sh
set -uo pipefail
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
export LOWBIT_ADDON=$PWD/build/device-y/lowbit.node
echo "== int8-x tests, y ($(date +%T))"
timeout 120 node --test --test-reporter=tap dist/test/cuda-int8x-gemv-model.test.js > "$OUT/tests.log" 2>&1; echo "tests rc=$?"
grep -E '^# (tests|pass|fail|skipped)|^not ok' "$OUT/tests.log"; grep -A14 '^not ok' "$OUT/tests.log" | head -30
for b in y x y; do
  echo "== int8-x bench, $b ($(date +%T))"
  LOWBIT_ADDON=$PWD/build/device-$b/lowbit.node timeout 120 node bench/cuda-int8x-gemv.mjs --ksplit ${KSPLIT:-4,8,16} $([ $b = x ] && echo "--ahead 1,3 --sx 0" || echo "--ahead 1,2 --sx 0,1") --json "$OUT/int8x-$b.json" 2>&1 | grep -E "copy bandwidth|skeleton"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(r['name'][:7], r['ksplit'], r['ahead'], r.get('sx',0), '%.2f %.2f' % (r['gemvUs'], r['gemvPdlUs'])) for r in d['rows']]" "$OUT/int8x-$b.json" | paste -sd'|' | fold -w 200
done
echo "== kernel-5 lone GEMVs ($(date +%T))"
timeout 100 node bench/cuda-decode.mjs --gemv-only --variants 4 --kernels 5 2>&1 | grep -E "by kernel"
