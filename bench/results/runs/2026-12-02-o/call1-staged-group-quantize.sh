#!/usr/bin/env bash
# Fifteenth session, call 1: GroupQuantize's small groups staged through
# shared memory by bulk copies (TMA), one step ahead of the one being
# quantized. Builds: kvq-bench-kernels-main (13fe704), kvq-bench-kernels
# (staged for one-vector lanes: FP16 / BF16 group32 and head_dim 64, FP32
# group32), kvq-bench-kernels-staged-all (staged for every small-group
# arrangement, also the wide ones: FP16 head_dim 128, FP32 head_dim 128).
#  1. kernel tests of both staged builds (a staged build whose small-group
#     tests fail is left out of step 2: a barrier that never completes
#     would hang each case until its timeout);
#  2. 2 alternating rounds of KVQ_AB over the cases below.
# Here: bench/run-device.sh bundle build .device /tmp/ab/*, this script
#   into .device/bin, tar -cJf .device.tar.xz .device
# There: tar -xJf .device.tar.xz && .device/bin/call1-staged-group-quantize.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$work/timeline.txt"; }

mkdir -p "$work/tests"
kernels="kvq-bench-kernels-main"
smoke() {  # BINARY: the small-group tests, quickly
  timeout 90 "$b/run" "$1" --gtest_brief=1 --gtest_filter='SmallGroups*' \
    > "$work/tests/$1-smoke.log" 2>&1
  local rc=$?
  echo "$1 smoke rc=$rc $(grep -E '^\[  (PASSED|FAILED) ' "$work/tests/$1-smoke.log" | tail -1)" >> "$work/tests/summary.txt"
  return $rc
}
smoke quantize_cuda_test && kernels="$kernels kvq-bench-kernels"
mark "smoke staged"
smoke quantize_cuda_test-staged-all && kernels="$kernels kvq-bench-kernels-staged-all"
mark "smoke staged-all"
for t in quantize_cuda_test paged_kernels_test cuda_backend_test \
         quantize_cuda_test-staged-all paged_kernels_test-staged-all; do
  timeout 150 "$b/run" "$t" --gtest_brief=1 > "$work/tests/$t.log" 2>&1
  echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$work/tests/$t.log" | tail -1)" >> "$work/tests/summary.txt"
  grep -E '^\[  FAILED  \]' "$work/tests/$t.log" | head -20 >> "$work/tests/summary.txt"
  mark "$t"
done

mkdir -p "$work/ab"
KVQ_AB_ROUNDS=2 KVQ_AB_KERNELS="$kernels" \
KVQ_AB_CASES="fp16:group32:1x16384x8x128 fp16:group32:1x131072x8x128 \
bf16:group32:1x131072x8x128 fp32:group32:1x131072x8x128 \
fp16:group32:1x1048576x8x128 fp16:per_token_head:1x262144x8x64 \
fp16:per_token_head:1x131072x8x128 fp32:per_token_head:1x131072x8x128 \
fp16:per_token_head:1x4096x8x4096 bf16:per_token_head:1x1024x8x128" \
  OUT="$work/ab" timeout 300 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab/summary.txt" 2>&1
mark "ab rc=$?"
cp "$work/timeline.txt" "$out/timeline.txt"
cat "$work/tests/summary.txt" "$work/ab/summary.txt" > "$out/summary.txt" 2>/dev/null
tar -cJf "$out/all.tar.xz" -C "$work" .
cat "$out/timeline.txt" "$out/summary.txt"
