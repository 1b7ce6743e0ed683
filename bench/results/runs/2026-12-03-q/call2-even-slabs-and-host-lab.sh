#!/usr/bin/env bash
# Call 2:
#  1. get_kernel_host_lab: the real get kernels into device and host memory
#     against a plain copy kernel, 256 KiB .. 4 MiB (why 0.04 ms for 1 MiB);
#  2. quantize_cuda_test's PhasedDequantizeTest (now with blocks of one and
#     two rounds of shorter slabs) and every dequantize test of FP32;
#  3. kernel A/B, 2 alternating rounds: kvq-bench-kernels-main (1ce62a9:
#     48 Ki-value slabs, phased from 2^26 values) against
#     kvq-bench-kernels-even (slabs sized per launch so every round is full,
#     EvenSlabValues; phased from 2^24), FP32 64 MiB .. 4 GiB.
# There: tar -xJf .device.tar.xz && .device/bin/call2-even-slabs-and-host-lab.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
mkdir -p "$out"
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"; }
timeout 120 "$b/run" get_kernel_host_lab > "$out/host-lab.txt" 2>&1
mark "host lab rc=$?"
timeout 150 "$b/run" quantize_cuda_test \
  --gtest_filter='PhasedDequantize*:*Dequantize*fp32*:*Dequantize*Fp32*' \
  > "$out/phased-tests.log" 2>&1
mark "quantize_cuda_test rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$out/phased-tests.log" | tr '\n' ' ')"
KVQ_AB_ROUNDS=2 KVQ_AB_KERNELS="kvq-bench-kernels-main kvq-bench-kernels-even" \
KVQ_AB_CASES="fp32:per_token_head:1x16384x8x128 fp32:per_token_head:1x32768x8x128 \
fp32:per_token_head:1x49152x8x128 fp32:per_token_head:1x65536x8x128 \
fp32:per_token_head:1x131072x8x128 fp32:per_token_head:1x262144x8x128 \
fp32:per_token_head:1x1048576x8x128 fp32:per_channel:1x32768x8x128 \
fp32:group32:1x65536x8x128" \
  OUT="$out/ab" timeout 330 bench/run-device.sh run --bundle="$b" ab \
  > "$out/ab-summary.txt" 2>&1
mark "ab rc=$?"
cp "$out/ab/ab/rows.txt" "$out/kernel-ab-rows.txt" 2>/dev/null
cat "$out/timeline.txt" "$out/host-lab.txt"
grep -E "^kvq-bench" "$out/kernel-ab-rows.txt"
