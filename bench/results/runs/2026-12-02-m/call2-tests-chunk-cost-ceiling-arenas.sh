#!/usr/bin/env bash
# Thirteenth session, call 2, three steps each under its own timeout, every
# output packed into one archive (the device tool brings back only a few
# files):
#  1. every GPU test on a0c6ac0 + the bench's sync-fresh ceiling (call 1's
#     tests step ran past its 240 s before the integration suite was done);
#  2. GroupQuantize with half a step of cost per chunk
#     (/tmp/chunk-cost.patch of this session, kernels built into
#     *-chunk-cost) against main: its kernel tests, then 2 rounds of
#     KVQ_AB over group32 and per-token-head cases;
#  3. one stream, 2 rounds of 4 runs crossing kvq-server's jemalloc
#     (defaults against narenas:1, through MALLOC_CONF, which call 1 put
#     highest) with the bare ceiling (sync, one cache-hot block sent again
#     and again, against sync-fresh, each block from the next stretch of
#     512 MiB, as kvq sends blocks the GPU just wrote).
# Here: bench/run-device.sh bundle build .device /tmp/ab/*-chunk-cost,
#   this script into .device/bin, tar -cJf .device.tar.xz .device
# There: tar -xJf .device.tar.xz && .device/bin/call2-tests-chunk-cost-ceiling-arenas.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$work/timeline.txt"; }

mkdir -p "$work/tests"
OUT="$work/tests" timeout 300 bench/run-device.sh run --bundle="$b" tests \
  > "$work/tests/log.txt" 2>&1
mark "tests rc=$?"

mkdir -p "$work/chunk"
for t in quantize_cuda_test paged_kernels_test; do
  timeout 100 "$b/run" "$t-chunk-cost" --gtest_brief=1 > "$work/chunk/$t.log" 2>&1
  echo "$t-chunk-cost rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$work/chunk/$t.log" | tail -1)" >> "$work/chunk/summary.txt"
done
mark "chunk tests"
KVQ_AB_ROUNDS=2 KVQ_AB_KERNELS="kvq-bench-kernels kvq-bench-kernels-chunk-cost" \
KVQ_AB_CASES="fp16:group32:1x16384x8x128 fp16:group32:1x131072x8x128 \
bf16:group32:1x131072x8x128 fp32:group32:1x131072x8x128 \
fp16:group32:1x1048576x8x128 fp16:per_token_head:1x131072x8x128 \
fp16:per_token_head:1x262144x8x64 fp16:per_token_head:1x4096x8x4096" \
  OUT="$work/chunk" timeout 150 bench/run-device.sh run --bundle="$b" ab \
  >> "$work/chunk/summary.txt" 2>&1
mark "chunk rc=$?"

mkdir -p "$work/svc/r"
rows="$work/svc/rows.txt"; : > "$rows"
cells="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
run() {  # TAG MALLOC_CONF BARE_API; none begun past 550 s
  [ $(( $(date +%s) - start )) -lt 550 ] || return 0
  MALLOC_CONF=$2 timeout 40 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/kvq-server" $cells --bare_api="$3" \
    --markdown="$work/svc/r/x.md" > /dev/null 2>> "$work/svc/r/bench.log"
  mark "$1 rc=$?"
  sed '/^## Server stages/,$d' "$work/svc/r/x.md" | grep '^| put\|^| get' | sed "s/^/$1 | /" >> "$rows"
}
for round in 1 2; do
  run "default+sync $round" "" sync
  run "narenas1+fresh $round" "narenas:1" sync-fresh
  run "default+fresh $round" "" sync-fresh
  run "narenas1+sync $round" "narenas:1" sync
done
cp "$work/timeline.txt" "$out/timeline.txt"
{ sed -n '/^----- summary/,$p' "$work/tests/log.txt"; cat "$work/chunk/summary.txt"; } > "$out/summary.txt" 2>/dev/null
cp "$rows" "$out/svc-rows.txt"
tar -cJf "$out/all.tar.xz" -C "$work" .
cat "$out/timeline.txt"
