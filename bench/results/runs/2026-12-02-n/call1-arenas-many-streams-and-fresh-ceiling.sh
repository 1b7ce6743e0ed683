#!/usr/bin/env bash
# Fourteenth session, call 1: the thirteenth session's call 3
# (runs/2026-12-02-m/call3-arenas-many-streams-and-fresh-ceiling.sh), whose
# outputs were lost with that session's machine, run again as it was
# (about 5 minutes; no run begins past 430 s):
#  A. kvq-server's jemalloc with one arena (MALLOC_CONF=narenas:1) against
#     its defaults at 8 and 16 streams, 3 rounds alternating: that
#     session's call 2 put one-stream puts 3-5% higher with it; one arena
#     may instead contend where many streams allocate at once;
#  B. the one-stream get ceiling two ways, 5 rounds alternating: bare sync
#     (one cache-hot block sent again and again) against sync-fresh (each
#     block from the next stretch of 512 MiB), 1 / 4 / 16 MiB, one key.
# Here: ../shared/tools/bundle-device .device build/bin/kvq-server
#   build/bin/kvq-bench-service, this script into .device/bin, tar -cJf
#   .device.tar.xz .device
# There: tar -xJf .device.tar.xz && .device/bin/call1-arenas-many-streams-and-fresh-ceiling.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
start=$(date +%s)
run() {  # ROWS TAG MALLOC_CONF BARE_API CELLS...; none begun past 430 s
  local rows=$1 tag=$2 conf=$3 api=$4; shift 4
  [ $(( $(date +%s) - start )) -lt 430 ] || return 0
  MALLOC_CONF=$conf timeout 60 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/kvq-server" "$@" --bare_api="$api" \
    --markdown="$out/r/x.md" > /dev/null 2>> "$out/r/bench.log"
  echo "$tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put\|^| get' | sed "s/^/$tag | /" >> "$out/$rows"
}
many="--streams=8,16 --dtypes=fp16,fp32 --block_sizes=1048576,16777216 --put_windows=4 --get_keys=1 --repeats=1"
one="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,4194304,16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
for round in 1 2 3; do
  if [ $((round % 2)) -eq 1 ]; then
    run arenas-rows.txt "default $round" "" sync $many
    run arenas-rows.txt "narenas1 $round" "narenas:1" sync $many
  else
    run arenas-rows.txt "narenas1 $round" "narenas:1" sync $many
    run arenas-rows.txt "default $round" "" sync $many
  fi
done
for round in 1 2 3 4 5; do
  run ceiling-rows.txt "sync $round" "" sync $one
  run ceiling-rows.txt "fresh $round" "" sync-fresh $one
done
rm -rf "$out/r/x.md"
cat "$out/timeline.txt"
