#!/usr/bin/env bash
# Call 6 (the budget's last ~170 s): puts stored and answered on the
# reading thread itself (no storing thread) against HEAD, A B A, one stream.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
rows="$out/rows.txt"; : > "$rows"
cells="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=268435456 --max_blocks=256"
start=$(date +%s)
for name in kvq-server-inline kvq-server kvq-server-inline kvq-server; do
  timeout 40 "$b/run" kvq-bench-service --device=cuda --server_binary="$b/bin/$name" $cells \
    --markdown="$out/r/x.md" > /dev/null 2>> "$out/r/bench.log"
  echo "$name rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put' | sed "s/^/$name | /" >> "$rows"
  sed -n '/^## Server stages/,$p' "$out/r/x.md" | grep '^| put' | sed "s/^/$name stages | /" >> "$rows"
done
cat "$out/timeline.txt"
awk -F'|' '$0 !~ /stages/ {print $1, $4, $5, "kvq", $9, "bare", $10, $11}' "$rows"
