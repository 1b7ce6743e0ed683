#!/usr/bin/env bash
# Fourteenth session, call 2: the one-stream tables again, on ade4389 (the
# committed ones are the tenth and ninth sessions', on 9be4663 and
# 543ed8d), with their own commands: against the plain ceiling (3
# repeats; bench/results/service-h200-one-stream.md) and, if there is
# time, against the one-copy ceiling (2 repeats; ...-one-copy-ceiling.md).
# Here: the bundle of call 1 (kvq-server, kvq-bench-service) with this
#   script in .device/bin.
# There: tar -xJf .device.tar.xz && .device/bin/call2-one-stream-tables.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
start=$(date +%s)
table() {  # NAME LIMIT FLAGS...
  local name=$1 limit=$2; shift 2
  mkdir -p "$out/$name"
  timeout "$limit" "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/kvq-server" --streams=1 \
    --block_sizes=1048576,4194304,16777216,33554432 --put_windows=4,all \
    --get_keys=1,4 --bytes_per_cell=1073741824 --max_blocks=1024 "$@" \
    --markdown="$out/$name/service-h200.md" --csv="$out/$name/service-h200.csv" \
    > "$out/$name/log.txt" 2>&1
  echo "$name rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
}
table one-stream 400 --repeats=3
left=$(( 560 - ($(date +%s) - start) ))
[ "$left" -gt 60 ] && table one-copy-ceiling "$left" --repeats=2 --bare_api=sync-copy
cat "$out/timeline.txt"
