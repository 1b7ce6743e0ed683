#!/usr/bin/env bash
# Call 3, on the build to land (128-value even slabs for PhasedDequantize,
# the get path as on main): the GPU tests the kernel change touches
# (quantize_cuda_test, backend_crosscheck_test, the round-trip suite against
# CUDA), then the kernel table (bench/run-device.sh run kernels); every
# result packed into one archive (call 2's table was lost: too many files
# under $OUT came back as none).
# Bundle: bench/run-device.sh bundle build .device
# There: tar -xJf .device.tar.xz && .device/bin/call3-tests-and-kernels-table.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$work/timeline.txt"; }
timeout 150 "$b/run" quantize_cuda_test --gtest_color=no \
  --gtest_filter='PhasedDequantize*:*Dequantize*' > "$work/quantize_cuda_test.log" 2>&1
mark "quantize_cuda_test rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$work/quantize_cuda_test.log" | tr '\n' ' ')"
KVQ_TEST_DEVICE=cuda KVQ_TEST_SERVER_BIN="$b/bin/kvq-server" \
  timeout 90 "$b/run" server_roundtrip_test --gtest_color=no > "$work/roundtrip.log" 2>&1
mark "server_roundtrip_test (cuda) rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$work/roundtrip.log" | tr '\n' ' ')"
OUT="$work/k" KVQ_KERNELS_TIMEOUT=300 timeout 310 bench/run-device.sh run --bundle="$b" kernels \
  > "$work/kernels-summary.txt" 2>&1
mark "kernels rc=$?"
tar -czf "$out/call3.tgz" -C "$work" .
cat "$work/timeline.txt"
sed -n '/^## Issue 3/,/^## 1\./p' "$work/k/kernels-h200.md" | head -30
