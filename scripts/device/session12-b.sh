# (run 76 used a session12-a variant: the same tests and decode A/B for g, i and j = i + dgemv5_kernel<FOLD> + a runtime ring size + probes 16/32, all reverted after it)
# twelfth session, second call: the decoder tests (the wide fold case) on k0 = HEAD (kernel 5's launch sets the
# shared-memory limit on first use) and k = k0 + dgemv5_kernel<FOLD>, then decode tok/s of i (dca318d), k0, k, k0, k
source .device/on-device.sh
OUT=${OUT:-/tmp/o}; mkdir -p $OUT
for a in k0 k; do
  echo "== tests $a"; LOWBIT_ADDON=$PWD/build/device-$a/lowbit.node timeout 200 node --test --test-reporter=tap --test-concurrency=1 dist/test/cuda-decode.test.js > $OUT/tests-$a.log 2>&1; echo rc=$?
  grep -E '^# (tests|pass|fail)' $OUT/tests-$a.log; grep -B2 -A12 '^not ok' $OUT/tests-$a.log | head -20; grep "hidden 1280" -A8 $OUT/tests-$a.log | grep "^# GEMV"
done
dec() { echo "== $1 ($(date +%T))"; LOWBIT_ADDON=$PWD/build/device-$2/lowbit.node timeout 150 node bench/cuda-decode.mjs --variants 4 --kernels 5 --modes graph --tokens 128 --no-gemv --json $OUT/decode-$1.json 2>&1 | grep -E "tok/s" | sed 's/GEMV v4 k5 graph prefetch 0//'; }
dec i1 i; dec k01 k0; dec k1 k; dec k02 k0; dec k2 k
