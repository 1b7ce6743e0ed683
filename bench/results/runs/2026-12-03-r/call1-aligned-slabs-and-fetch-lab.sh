#!/usr/bin/env bash
# Call 1:
#  1. get_fetch_lab: the real CudaBackend's DequantizeFrom of 1 and 4 MiB
#     into page-locked memory, host time and kernel events, with the buffer
#     untouched / read by the CPU / written by the CPU between gets, and the
#     CUDA calls around the kernel one at a time;
#  2. quantize_cuda_test's PhasedDequantize and FP32 dequantize tests, and
#     cuda_host_test (EvenSlabValues), on the a512 build;
#  3. kernel A/B, 2 alternating rounds: kvq-bench-kernels-main (fd725d7:
#     48 Ki-value slabs, phased from 2^26 values) against -a128 and -a512
#     (even slabs, EvenSlabValues, rounded up to 128 / 512 values, phased
#     from 2^24), FP32 64 MiB .. 4 GiB. The seventeenth session's even slabs
#     rounded to 16 values lost exactly where the slab came out an odd
#     multiple of 16 (47664, 46224, 48432) and won where it came out a
#     multiple of 128 (42368).
# Bundle: bench/run-device.sh bundle build .device /tmp/ab/kvq-bench-kernels-{main,a128,a512} /tmp/ab/get_fetch_lab
# There: tar -xJf .device.tar.xz && .device/bin/call1-aligned-slabs-and-fetch-lab.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
mkdir -p "$out"
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"; }
timeout 120 "$b/run" get_fetch_lab > "$out/fetch-lab.txt" 2>&1
mark "fetch lab rc=$?"
timeout 150 "$b/run" quantize_cuda_test \
  --gtest_filter='PhasedDequantize*:*Dequantize*fp32*:*Dequantize*Fp32*' \
  > "$out/phased-tests.log" 2>&1
mark "quantize_cuda_test rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$out/phased-tests.log" | tr '\n' ' ')"
timeout 60 "$b/run" cuda_host_test > "$out/host-tests.log" 2>&1
mark "cuda_host_test rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$out/host-tests.log" | tr '\n' ' ')"
KVQ_AB_ROUNDS=2 KVQ_AB_KERNELS="kvq-bench-kernels-main kvq-bench-kernels-a128 kvq-bench-kernels-a512" \
KVQ_AB_CASES="fp32:per_token_head:1x16384x8x128 fp32:per_token_head:1x32768x8x128 \
fp32:per_token_head:1x49152x8x128 fp32:per_token_head:1x65536x8x128 \
fp32:per_token_head:1x131072x8x128 fp32:per_token_head:1x262144x8x128 \
fp32:per_token_head:1x1048576x8x128 fp32:per_channel:1x32768x8x128 \
fp32:per_channel:1x262144x8x128 fp32:group32:1x65536x8x128" \
  OUT="$out/ab" timeout 400 bench/run-device.sh run --bundle="$b" ab \
  > "$out/ab-summary.txt" 2>&1
mark "ab rc=$?"
cp "$out/ab/ab/rows.txt" "$out/kernel-ab-rows.txt" 2>/dev/null
cat "$out/timeline.txt" "$out/fetch-lab.txt"
grep -E "^kvq-bench" "$out/kernel-ab-rows.txt" | cut -d'|' -f1-4,6-13
