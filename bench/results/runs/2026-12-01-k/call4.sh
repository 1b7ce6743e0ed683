#!/usr/bin/env bash
# Call 4: is the transport slower in kvq-server's process because of its
# page-locked region heap? receive - assemble per put under
# --put_buffers=received (region heap), page_locked and plain (no region),
# alternating, 2 rounds, one stream.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
rows="$out/rows.txt"; : > "$rows"
one="--streams=1 --dtypes=fp16,fp32 --block_sizes=4194304,16777216,33554432 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
start=$(date +%s)
for round in 1 2; do
  for mode in received page_locked plain; do
    timeout 150 "$b/run" kvq-bench-service --device=cuda $one \
      --server_flags=--put_buffers=$mode --markdown="$out/r/x.md" \
      > /dev/null 2>> "$out/r/bench.log"
    echo "$mode $round rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
    sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put' | sed "s/^/$mode $round | /" >> "$rows"
    sed -n '/^## Server stages/,$p' "$out/r/x.md" | grep '^| put' | sed "s/^/$mode $round stages | /" >> "$rows"
  done
done
cat "$out/timeline.txt"
