#!/usr/bin/env bash
# For the next session: GroupQuantize with half a step of cost per chunk
# (branch group-quant-chunk-cost, one commit) against main, 3 rounds
# alternating: does FP16 / BF16 group32 quantize at 256 MiB go from 87-88%
# back to the 92-93% the third session measured with 2-step chunks, while
# 16384 x 8 x 128 keeps its 1-step balance? Then the kernel GPU tests on
# the branch's build.
# Here: git checkout group-quant-chunk-cost && (cd build && ninja
#   kvq-bench-kernels quantize_cuda_test paged_kernels_test) &&
#   cp build/bin/kvq-bench-kernels /tmp/ab/kvq-bench-kernels-chunk-cost &&
#   cp build/tests/quantize_cuda_test /tmp/ab/quantize_cuda_test-chunk-cost &&
#   cp build/tests/paged_kernels_test /tmp/ab/paged_kernels_test-chunk-cost &&
#   git checkout main && (cd build && ninja) &&
#   ../shared/tools/bundle-device .device build/bin/kvq-bench-kernels
#   /tmp/ab/*-chunk-cost, this script into .device/bin, tar -cJf
#   .device.tar.xz .device
# There: tar -xJf .device.tar.xz && .device/bin/next-call-group-quant-chunk-cost.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out"
for t in quantize_cuda_test paged_kernels_test; do
  timeout 240 "$b/run" "$t-chunk-cost" --gtest_brief=1 > "$out/$t.log" 2>&1
  echo "$t-chunk-cost rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$out/$t.log" | tail -1)" >> "$out/summary.txt"
done
KVQ_AB_ROUNDS=3 KVQ_AB_KERNELS="kvq-bench-kernels kvq-bench-kernels-chunk-cost" \
KVQ_AB_CASES="fp16:group32:1x16384x8x128 fp16:group32:1x131072x8x128 \
bf16:group32:1x131072x8x128 fp32:group32:1x131072x8x128 \
fp16:group32:1x1048576x8x128 fp16:per_token_head:1x131072x8x128 \
fp16:per_token_head:1x262144x8x64 fp16:per_token_head:1x4096x8x4096" \
  bench/run-device.sh run --bundle="$b" ab >> "$out/summary.txt" 2>&1
cat "$out/summary.txt"
