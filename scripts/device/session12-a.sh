source .device/on-device.sh
OUT=${OUT:-/tmp/o}; mkdir -p $OUT
J=$PWD/build/device-j/lowbit.node
echo "== tests j"; LOWBIT_ADDON=$J timeout 200 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js dist/test/cuda-decode-kernels.test.js dist/test/cuda-decode-model.test.js > $OUT/tests.log 2>&1; echo rc=$?; grep -E '^# (tests|pass|fail|skipped)' $OUT/tests.log; grep -B2 -A14 '^not ok\|^    not ok\|^  not ok' $OUT/tests.log | head -40
echo "== tests j stages 4"; LOWBIT_DECODE_STAGES=4 LOWBIT_ADDON=$J timeout 200 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js dist/test/cuda-decode-model.test.js > $OUT/tests4.log 2>&1; echo rc=$?; grep -E '^# (tests|pass|fail|skipped)' $OUT/tests4.log
dec() { echo "== $1 ($(date +%T))"; LOWBIT_ADDON=$PWD/build/device-$2/lowbit.node timeout 150 node bench/cuda-decode.mjs --variants 4 --kernels 5 --modes graph --tokens 128 --v5probes ${3:-0} --no-gemv --json $OUT/decode-$1.json 2>&1 | grep -E "copy|tok/s"; }
dec g g; dec i i; dec j j 0,16,32; LOWBIT_DECODE_STAGES=4 dec j4 j 0,16; dec g2 g; dec j2 j 0,16
echo "== trace j"; LOWBIT_ADDON=$J timeout 150 node bench/cuda-decode.mjs --variants 4 --trace5 --json $OUT/trace5-j.json 2>&1 | grep -v "^copy" | tail -30
