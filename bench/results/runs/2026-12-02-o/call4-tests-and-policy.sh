#!/usr/bin/env bash
# Fifteenth session, call 4: the build to land. Staging now only where
# calls 2 and 3 found it paying: FP16 / BF16 one-vector lanes, one block,
# the busiest CTA taking >= 10 steps (TakesStagedKernel).
#  1. every GPU test (bench/run-device.sh run tests), the new
#     SmallGroupsTest.CtasThatTakeManyChunks among them;
#  2. 2 alternating rounds of KVQ_AB, main against this build, on cases on
#     both sides of the threshold.
# Here: bench/run-device.sh bundle build .device /tmp/ab/kvq-bench-kernels-main,
#   this script into .device/bin, tar -cJf .device.tar.xz .device
# There: tar -xJf .device.tar.xz && .device/bin/call4-tests-and-policy.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$work/timeline.txt"; }
mkdir -p "$work/tests" "$work/ab"
OUT="$work/tests" timeout 340 bench/run-device.sh run --bundle="$b" tests \
  > "$work/tests/log.txt" 2>&1
mark "tests rc=$?"
KVQ_AB_ROUNDS=2 KVQ_AB_KERNELS="kvq-bench-kernels-main kvq-bench-kernels" \
KVQ_AB_CASES="fp16:group32:1x32768x8x128 fp16:group32:1x65536x8x128 \
fp16:group32:1x131072x8x128 bf16:group32:1x131072x8x128 \
fp16:group32:1x1048576x8x128 fp16:per_token_head:1x131072x8x64 \
fp16:per_token_head:1x262144x8x64 fp32:group32:1x131072x8x128" \
  OUT="$work/ab" timeout 150 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab/summary.txt" 2>&1
mark "ab rc=$?"
cp "$work/timeline.txt" "$out/timeline.txt"
{ sed -n '/^----- summary/,$p' "$work/tests/log.txt"; cat "$work/ab/summary.txt"; } > "$out/summary.txt" 2>/dev/null
tar -cJf "$out/all.tar.xz" -C "$work" .
cat "$out/timeline.txt" "$out/summary.txt"
