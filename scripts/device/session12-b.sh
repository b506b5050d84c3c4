# (run 76 used a session12-a variant: the same tests and decode A/B for g, i and j = i + dgemv5_kernel<FOLD> + a runtime ring size + probes 16/32, all reverted after it)
# twelfth session, second call: decode tests on k (kernel 5's launch sets the shared-memory limit on first use; FOLD
# template), then decode tok/s of i (HEAD dca318d), k0 (i + the limit fix), k (k0 + dgemv5_kernel<FOLD>), twice
source .device/on-device.sh
OUT=${OUT:-/tmp/o}; mkdir -p $OUT
K=$PWD/build/device-k/lowbit.node
echo "== tests k"; LOWBIT_ADDON=$K timeout 200 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js dist/test/cuda-decode-kernels.test.js dist/test/cuda-decode-model.test.js > $OUT/tests.log 2>&1; echo rc=$?; grep -E '^# (tests|pass|fail|skipped)' $OUT/tests.log; grep -B2 -A14 '^not ok\|^    not ok\|^  not ok' $OUT/tests.log | head -30; grep "hidden 1280" -A8 $OUT/tests.log | grep "^# GEMV"
echo "== tests k0"; LOWBIT_ADDON=$PWD/build/device-k0/lowbit.node timeout 200 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js > $OUT/tests-k0.log 2>&1; echo rc=$?; grep -E '^# (tests|pass|fail)' $OUT/tests-k0.log; grep "hidden 1280" -A8 $OUT/tests-k0.log | grep "^# GEMV"
dec() { echo "== $1 ($(date +%T))"; LOWBIT_ADDON=$PWD/build/device-$2/lowbit.node timeout 150 node bench/cuda-decode.mjs --variants 4 --kernels 5 --modes graph --tokens 128 --no-gemv --json $OUT/decode-$1.json 2>&1 | grep -E "tok/s" | sed 's/GEMV v4 k5 graph prefetch 0//'; }
dec i1 i; dec k01 k0; dec k1 k; dec i2 i; dec k02 k0; dec k2 k
