#!/usr/bin/env bash
# The same-machine baseline for int8x-decode.sh (BASE=build/device-base): COMMIT's CUDA addon built for the GPU machine,
# with that commit's dist and bench beside it, so the baseline runs its own TypeScript against its own N-API signatures.
# Run here (where nvcc is), then carry build/device-base. Usage: scripts/device/make-base.sh COMMIT
set -euo pipefail
commit=${1:?usage: scripts/device/make-base.sh COMMIT}
root=$(git rev-parse --show-toplevel); wt=$(mktemp -d /tmp/lowbit-base.XXXXXX); out=$root/build/device-base
git -C "$root" worktree add -f --detach "$wt" "$commit" >/dev/null
trap 'git -C "$root" worktree remove --force "$wt"' EXIT
ln -s "$root/node_modules" "$wt/node_modules"
(cd "$wt" && LOWBIT_REQUIRE_CUDA=1 LOWBIT_MARCH=x86-64-v4 LOWBIT_BUILD_DIR="$wt/build/dz" LOWBIT_NATIVE_FORCE=1 node scripts/build-native.mjs && npx tsc -p .)
rm -rf "$out" && mkdir -p "$out"
cp "$wt/build/dz/lowbit.node" "$out/" && cp -r "$wt/dist" "$wt/bench" "$out/"
echo "baseline $commit in build/device-base ($(du -sh "$out" | cut -f1))"
