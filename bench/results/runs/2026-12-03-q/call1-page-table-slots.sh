#!/usr/bin/env bash
# Call 1: page-table slots (a put leaves its block's page ids in the slot
# of its first page, on the device; gets launch on them with no upload and
# no reads of host memory). The backend and service GPU tests (not the
# kernel tests: no kernel changed), then service A/B, one stream, FP16 /
# FP32, 1 and 4 MiB, window 4, one-key gets, 3 rounds alternating:
# kvq-server-main (a854883) against kvq-server-slots.
# There: tar -xJf .device.tar.xz && .device/bin/call1-page-table-slots.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
grep -v -E '^(quantize_cuda_test|paged_kernels_test|study_kernels_test)' \
  "$b/gpu-tests.txt" > "$b/gpu-tests.subset" && mv "$b/gpu-tests.subset" "$b/gpu-tests.txt"
export KVQ_AB_ROUNDS=3 KVQ_AB_SERVERS="kvq-server-main kvq-server-slots"
export KVQ_SERVICE_ARGS="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,4194304 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
export KVQ_SERVICE_TIMEOUT=150
exec bench/run-device.sh run --bundle="$b" tests ab
