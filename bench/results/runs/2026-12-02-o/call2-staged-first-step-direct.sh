#!/usr/bin/env bash
# Fifteenth session, call 2. Call 1's staged kernel (bulk copies into two
# shared slots, one step ahead) took FP16 group32 at 2 GiB from 89% to 93-94%
# of copy and left 256 MiB at 87%: its fixed cost grew (a CTA waits for its
# whole first 32 KiB before it starts). Here the CTA's first step loads its
# vectors itself, as unstaged steps do, while the copies of its next two
# land. Builds: kvq-bench-kernels-main (13fe704), kvq-bench-kernels-staged
# (call 1's), kvq-bench-kernels (first step direct).
#  1. kernel tests of the new build (its small-group tests first: a build
#     whose small-group tests fail is left out of step 2);
#  2. 2 alternating rounds of KVQ_AB over group32 from 32 MiB to 2 GiB and
#     one-vector per-token-head cases, 1 MiB blocks among them.
# Here: bench/run-device.sh bundle build .device /tmp/ab/kvq-bench-kernels-main
#   /tmp/ab/kvq-bench-kernels-staged, this script into .device/bin,
#   tar -cJf .device.tar.xz .device
# There: tar -xJf .device.tar.xz && .device/bin/call2-staged-first-step-direct.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$work/timeline.txt"; }

mkdir -p "$work/tests"
kernels="kvq-bench-kernels-main kvq-bench-kernels-staged"
timeout 90 "$b/run" quantize_cuda_test --gtest_brief=1 --gtest_filter='SmallGroups*' \
  > "$work/tests/smoke.log" 2>&1 && kernels="$kernels kvq-bench-kernels"
echo "smoke rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$work/tests/smoke.log" | tail -1)" >> "$work/tests/summary.txt"
mark smoke
for t in quantize_cuda_test paged_kernels_test cuda_backend_test; do
  timeout 150 "$b/run" "$t" --gtest_brief=1 > "$work/tests/$t.log" 2>&1
  echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$work/tests/$t.log" | tail -1)" >> "$work/tests/summary.txt"
  grep -E '^\[  FAILED  \]' "$work/tests/$t.log" | head -20 >> "$work/tests/summary.txt"
  mark "$t"
done

mkdir -p "$work/ab"
KVQ_AB_ROUNDS=2 KVQ_AB_KERNELS="$kernels" \
KVQ_AB_CASES="fp16:group32:1x16384x8x128 fp16:group32:1x32768x8x128 \
fp16:group32:1x131072x8x128 bf16:group32:1x131072x8x128 \
fp16:group32:1x262144x8x128 fp16:group32:1x1048576x8x128 \
fp32:group32:1x131072x8x128 fp32:group32:1x16384x8x128 \
fp16:per_token_head:1x262144x8x64 fp16:per_token_head:1x1024x8x64" \
  OUT="$work/ab" timeout 330 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab/summary.txt" 2>&1
mark "ab rc=$?"
cp "$work/timeline.txt" "$out/timeline.txt"
cat "$work/tests/summary.txt" "$work/ab/summary.txt" > "$out/summary.txt" 2>/dev/null
tar -cJf "$out/all.tar.xz" -C "$work" .
cat "$out/timeline.txt" "$out/summary.txt"
