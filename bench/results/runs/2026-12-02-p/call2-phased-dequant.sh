#!/usr/bin/env bash
# Sixteenth session, call 2: PhasedDequantize (FP32, one big contiguous
# block, rounds of bulk-copied slabs, grid.sync after the writes).
#  1. quantize_cuda_test's new PhasedDequantizeTest and the big-block tests;
#  2. 2 alternating rounds of kvq-bench-kernels: main (c82d339), this build
#     (phased from 2^26 values) and phased-low (the same, from 2^24), FP32
#     64 MiB .. 4 GiB, every granularity;
#  3. paged_kernels_test and cuda_backend_test (not run on c82d339's build).
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$work/timeline.txt"; }
mkdir -p "$work/tests" "$work/ab"
timeout 200 "$b/run" quantize_cuda_test \
  --gtest_filter='PhasedDequantize*:SmallGroups*:PerChannelDequantizeChunks*' \
  > "$work/tests/quantize-subset.log" 2>&1
mark "quantize_cuda_test subset rc=$?"
KVQ_AB_ROUNDS=2 KVQ_AB_KERNELS="kvq-bench-kernels-main kvq-bench-kernels kvq-bench-kernels-phased-low" \
KVQ_AB_CASES="fp32:per_token_head:1x16384x8x128 fp32:per_token_head:1x32768x8x128 \
fp32:per_token_head:1x65536x8x128 fp32:per_token_head:1x131072x8x128 \
fp32:per_token_head:1x262144x8x128 fp32:per_token_head:1x1048576x8x128 \
fp32:per_channel:1x131072x8x128 fp32:per_channel:1x1048576x8x128 \
fp32:per_tensor:1x1048576x8x128 fp32:group32:1x131072x8x128 \
fp32:group32:1x1048576x8x128" \
  OUT="$work/ab" timeout 280 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab/summary.txt" 2>&1
mark "ab rc=$?"
timeout 50 "$b/run" paged_kernels_test --gtest_brief=1 > "$work/tests/paged.log" 2>&1
mark "paged_kernels_test rc=$?"
timeout 50 "$b/run" cuda_backend_test --gtest_brief=1 > "$work/tests/cuda-backend.log" 2>&1
mark "cuda_backend_test rc=$?"
cp "$work/timeline.txt" "$out/timeline.txt"
{ grep -E '^\[  (PASSED|FAILED)|^\[       OK \]|FAILED' "$work"/tests/*.log; cat "$work/ab/summary.txt"; } > "$out/summary.txt" 2>/dev/null
tar -cJf "$out/all.tar.xz" -C "$work" .
cat "$out/timeline.txt" "$out/summary.txt" | tail -120
