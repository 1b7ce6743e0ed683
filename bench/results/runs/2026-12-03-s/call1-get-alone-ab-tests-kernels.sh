#!/usr/bin/env bash
# Call 1 of the nineteenth session, one machine start:
#  1. service A/B, one stream, FP16 / FP32, 1 and 4 MiB, window 4, gets of
#     one key and of four, 4 rounds alternating: kvq-server-70b8378 (main)
#     against kvq-server-alone (a Get that is the server's only data call
#     answers a block of up to four chunks in four: AnswerChunkBytes);
#  2. the GPU tests the changes touch: the round-trip suite against CUDA
#     (with the new chunking test), quantize_cuda_test's dequantize tests
#     (PhasedDequantize's 128-value slabs, never run there yet),
#     cuda_backend_test;
#  3. the same A/B at 8 and 16 streams, 1 MiB, 2 rounds (there the two
#     builds answer alike: a control, and the counter's cost);
#  4. the kernel table (bench/run-device.sh run kernels).
# Everything is packed into $OUT/call1.tgz (many files under $OUT come back
# as none).
# Bundle: bench/run-device.sh bundle build .device /tmp/ab/kvq-server-70b8378 /tmp/ab/kvq-server-alone
# There: tar -xJf .device.tar.xz && .device/bin/call1-get-alone-ab-tests-kernels.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$work/timeline.txt"; }
pack() { tar -czf "$out/call1.tgz" -C "$work" .; }
servers="kvq-server-70b8378 kvq-server-alone"

KVQ_AB_ROUNDS=4 KVQ_AB_SERVERS="$servers" \
KVQ_SERVICE_ARGS="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,4194304 --put_windows=4 --get_keys=1,4 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512" \
KVQ_SERVICE_TIMEOUT=100 OUT="$work/ab1" timeout 200 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab1-summary.txt" 2>&1
mark "one-stream ab rc=$?"
pack

KVQ_TEST_DEVICE=cuda KVQ_TEST_SERVER_BIN="$b/bin/kvq-server" \
  timeout 90 "$b/run" server_roundtrip_test --gtest_color=no > "$work/roundtrip.log" 2>&1
mark "server_roundtrip_test (cuda) rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$work/roundtrip.log" | tr '\n' ' ')"
timeout 120 "$b/run" quantize_cuda_test --gtest_color=no \
  --gtest_filter='PhasedDequantize*:*Dequantize*' > "$work/quantize_cuda_test.log" 2>&1
mark "quantize_cuda_test rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$work/quantize_cuda_test.log" | tr '\n' ' ')"
timeout 90 "$b/run" cuda_backend_test --gtest_color=no > "$work/cuda_backend_test.log" 2>&1
mark "cuda_backend_test rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$work/cuda_backend_test.log" | tr '\n' ' ')"
pack

KVQ_AB_ROUNDS=2 KVQ_AB_SERVERS="$servers" \
KVQ_SERVICE_ARGS="--streams=8,16 --dtypes=fp16,fp32 --block_sizes=1048576 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=1073741824 --max_blocks=1024" \
KVQ_SERVICE_TIMEOUT=60 OUT="$work/ab16" timeout 130 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab16-summary.txt" 2>&1
mark "many-streams ab rc=$?"
pack

OUT="$work/k" KVQ_KERNELS_TIMEOUT=280 timeout 290 bench/run-device.sh run --bundle="$b" kernels \
  > "$work/kernels-summary.txt" 2>&1
mark "kernels rc=$?"
pack
cat "$work/timeline.txt"
grep -F "| get |" "$work/ab1/ab/rows.txt" | grep -v stages | cut -d'|' -f1-11,16
grep -F "| get |" "$work/ab16/ab/rows.txt" | grep -v stages | cut -d'|' -f1-11,16
sed -n '/^## Issue 3/,/^## 1\./p' "$work/k/kernels-h200.md" | head -30
