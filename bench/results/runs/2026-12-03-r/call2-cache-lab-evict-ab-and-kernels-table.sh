#!/usr/bin/env bash
# Call 2:
#  1. cache_state_lab: a get's kernel writes into / a put's DMA reads from a
#     page-locked buffer the CPU has just read / written, with the lines
#     pushed out of the CPU's caches first (clflushopt, cldemote), during
#     the GPU's work, or not at all;
#  2. service A/B, one stream, FP16 / FP32, 1 and 4 MiB, window 4, one-key
#     gets, 3 rounds alternating: kvq-server-base (this session's kernels,
#     the get path as on main) against kvq-server-evict (the get's output
#     buffer evicted from the CPU's caches while the GPU writes it);
#  3. the kernel table (bench/run-device.sh run kernels) on the build that
#     keeps 128-value even slabs for PhasedDequantize.
# Bundle: bench/run-device.sh bundle build .device /tmp/ab/cache_state_lab /tmp/ab/kvq-server-base /tmp/ab/kvq-server-evict
# There: tar -xJf .device.tar.xz && .device/bin/call2-cache-lab-evict-ab-and-kernels-table.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
mkdir -p "$out"
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"; }
timeout 90 "$b/run" cache_state_lab > "$out/cache-lab.txt" 2>&1
mark "cache lab rc=$?"
KVQ_AB_ROUNDS=3 KVQ_AB_SERVERS="kvq-server-base kvq-server-evict" \
KVQ_SERVICE_ARGS="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,4194304 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512" \
KVQ_SERVICE_TIMEOUT=100 OUT="$out/ab" timeout 220 bench/run-device.sh run --bundle="$b" ab \
  > "$out/ab-summary.txt" 2>&1
mark "service ab rc=$?"
cp "$out/ab/ab/rows.txt" "$out/service-ab-rows.txt" 2>/dev/null
OUT="$out/k" KVQ_KERNELS_TIMEOUT=280 timeout 290 bench/run-device.sh run --bundle="$b" kernels \
  > "$out/kernels-summary.txt" 2>&1
mark "kernels rc=$?"
cat "$out/timeline.txt" "$out/cache-lab.txt"
grep -F "| get |" "$out/service-ab-rows.txt" | head -30
sed -n '/^## Issue 3/,/^## 1\./p' "$out/k/kernels-h200.md" | head -30
