#!/usr/bin/env bash
# Sixteenth session, call 4: PhasedDequantize after the knobs lab (call 3):
# the slab's words converted in a loop of shared-memory loads of their own,
# the tail in a second loop (one loop with a select between the two loads
# ran at 68% in the lab, two loops at 92%).
#  1. quantize_cuda_test's PhasedDequantizeTest;
#  2. 2 alternating rounds, main (c82d339) against this build (phased from
#     2^26 values), FP32 64 MiB .. 4 GiB;
#  3. 2 rounds of phased-low (the same from 2^24) on 64 and 128 MiB.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$work/timeline.txt"; }
mkdir -p "$work/tests" "$work/ab" "$work/ab-low"
timeout 90 "$b/run" quantize_cuda_test --gtest_filter='PhasedDequantize*' \
  > "$work/tests/phased.log" 2>&1
mark "PhasedDequantizeTest rc=$?"
KVQ_AB_ROUNDS=2 KVQ_AB_KERNELS="kvq-bench-kernels-main kvq-bench-kernels" \
KVQ_AB_CASES="fp32:per_token_head:1x16384x8x128 fp32:per_token_head:1x32768x8x128 \
fp32:per_token_head:1x65536x8x128 fp32:per_token_head:1x131072x8x128 \
fp32:per_token_head:1x262144x8x128 fp32:per_token_head:1x1048576x8x128 \
fp32:per_channel:1x1048576x8x128 fp32:per_tensor:1x1048576x8x128 \
fp32:group32:1x1048576x8x128" \
  OUT="$work/ab" timeout 330 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab/summary.txt" 2>&1
mark "ab rc=$?"
KVQ_AB_ROUNDS=2 KVQ_AB_KERNELS="kvq-bench-kernels-phased-low" \
KVQ_AB_CASES="fp32:per_token_head:1x16384x8x128 fp32:per_token_head:1x32768x8x128" \
  OUT="$work/ab-low" timeout 60 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab-low/summary.txt" 2>&1
mark "ab-low rc=$?"
cp "$work/timeline.txt" "$out/timeline.txt"
tar -cJf "$out/all.tar.xz" -C "$work" .
cat "$out/timeline.txt"; grep -E '^\[  (PASSED|FAILED)|FAILED' "$work"/tests/*.log
cat "$work"/ab*/ab/rows.txt | awk -F'|' '{print $1,$3,$4,$10,$12}'
