#!/usr/bin/env bash
# Call 4: 8 and 16 streams of 16 MiB puts with the page-locked region at
# its default (1 GiB) and at 4 GiB, 2 rounds alternating: does the heap
# outgrowing the region (puts copied, assemble 2-5 ms a block at 16
# streams) cost the GB/s there?
# (kvq-server-main: e063b89, main at the time.)
# There: tar -xJf .device.tar.xz && .device/bin/call4-pinned-heap-ab.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
rows="$out/rows.txt"; : > "$rows"
start=$(date +%s)
cells="--streams=8,16 --dtypes=fp16,fp32 --block_sizes=16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=2147483648 --max_blocks=512"
run() {  # TAG ARGS...
  local tag=$1; shift
  timeout 150 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/kvq-server-main" $cells "$@" --markdown="$out/r/x.md" \
    > /dev/null 2>> "$out/r/bench.log"
  echo "$tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put\|^| get' | sed "s/^/$tag | /" >> "$rows"
  sed -n '/^## Server stages/,$p' "$out/r/x.md" | grep '^| put' | sed "s/^/$tag stages | /" >> "$rows"
}
for round in 1 2; do
  run "heap1g $round"
  run "heap4g $round" --server_flags=--pinned_heap_bytes=4294967296
done
cat "$out/timeline.txt"
