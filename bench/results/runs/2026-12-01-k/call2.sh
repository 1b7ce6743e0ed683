#!/usr/bin/env bash
# Call 2: A/B of the put hand-over, alternating builds, one stream
# (3 rounds) and 8 streams of FP32 16 MiB puts (2 rounds).
#   kvq-server-head         HEAD (an append per 1 MiB chunk)
#   kvq-server-head-tcache  HEAD, jemalloc thread caches up to 1 MiB
#   kvq-server-appendonly   HEAD, the assemble stage counting only Append
#   kvq-server              appends of >= 4 MiB
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
rows="$out/rows.txt"; : > "$rows"
one="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,4194304,16777216,33554432 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
eight="--streams=8 --dtypes=fp32 --block_sizes=16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=2147483648 --max_blocks=512"
start=$(date +%s)
run() {  # NAME TAG ARGS...
  local name=$1 tag=$2; shift 2
  timeout 150 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/$name" "$@" --markdown="$out/r/x.md" \
    > /dev/null 2>> "$out/r/bench.log"
  echo "$name $tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put\|^| get' | sed "s/^/$name $tag | /" >> "$rows"
  sed -n '/^## Server stages/,$p' "$out/r/x.md" | grep '^| put' | sed "s/^/$name $tag stages | /" >> "$rows"
}
for round in 1 2 3; do
  for name in kvq-server-head kvq-server-head-tcache kvq-server-appendonly kvq-server; do
    run $name "one $round" $one
  done
done
for round in 1 2; do
  for name in kvq-server-head kvq-server; do
    run $name "eight $round" $eight
  done
done
cat "$out/timeline.txt"
grep -v stages "$rows" | grep "| put" | awk -F'|' '{print $1,$3,$4,$6,$8,$9,$10}'
grep stages "$rows" | awk -F'|' '{print $1,$3,$4,$6,$7,$8,$10}'
