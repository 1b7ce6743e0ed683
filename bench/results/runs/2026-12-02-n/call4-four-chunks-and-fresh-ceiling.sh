#!/usr/bin/env bash
# Fourteenth session, call 4: two questions on one-key 1 MiB gets, 4
# rounds of 4 runs crossing them, in a rotating order:
#  A. kvq-server as built (a0c6ac0's server code) against kvq-server-four,
#     the same with the twelfth session's patch that answers a block of up
#     to four chunks in four (runs/2026-12-02-l/call3-answer-in-four-chunks.patch,
#     server parts only): a 1 MiB block goes out in chunks of 256 KiB, the
#     first while the GPU still copies the rest back. Call 3 put the fetch
#     (0.076 ms) on the critical path of a 0.65 ms get; sending the front
#     early may hide half of it. The stage table's rpc column says whether
#     the server's call got shorter.
#  B. the bare ceiling as sync against sync-fresh (memory no cache holds):
#     two calls said 5-18% lower, one said no.
# FP16 / FP32, 1 and 4 MiB, one key a Get call, window 4 for puts.
# Here: ../shared/tools/bundle-device .device build/bin/kvq-server
#   build/bin/kvq-bench-service /tmp/ab/kvq-server-four, this script into
#   .device/bin.
# There: tar -xJf .device.tar.xz && .device/bin/call4-four-chunks-and-fresh-ceiling.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
start=$(date +%s)
run() {  # SERVER BARE_API ROUND; none begun past 420 s
  local server=$1 api=$2 round=$3
  local tag="$server+$api $round"
  [ $(( $(date +%s) - start )) -lt 420 ] || return 0
  timeout 90 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/$server" --streams=1 --dtypes=fp16,fp32 \
    --block_sizes=1048576,4194304 --put_windows=4 --get_keys=1 --repeats=1 \
    --bytes_per_cell=536870912 --max_blocks=512 --bare_api="$api" \
    --markdown="$out/r/x.md" > /dev/null 2>> "$out/r/bench.log"
  echo "$tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| get' | sed "s/^/$tag | /" >> "$out/rows.txt"
  sed -n '/^## Server stages/,$p' "$out/r/x.md" | grep '^| get' | sed "s/^/$tag | /" >> "$out/stage-rows.txt"
}
runs=("kvq-server sync" "kvq-server-four sync-fresh" "kvq-server-four sync" "kvq-server sync-fresh")
for round in 1 2 3 4; do
  for k in 0 1 2 3; do
    run ${runs[$(( (k + round - 1) % 4 ))]} "$round"
  done
done
rm -f "$out/r/x.md"
cat "$out/timeline.txt"
