#!/usr/bin/env bash
# Twentieth session, call 2: kvq-server's jemalloc arena count, given by
# MALLOC_CONF to kvq-server alone (the bare ceiling stays on glibc):
# narenas:1, narenas:4 and the default (4 per CPU: 64 here), alternating.
# One arena put one-stream puts 3-10% up in the thirteenth and fourteenth
# sessions and was mixed at 8-16 streams (16 MiB puts 12.6-13.0 against
# 13.4-14.2 GB/s); four may keep the first without the second.
#  A. one stream, FP16 / FP32, 1 and 4 MiB, puts (window 4) and one-key
#     gets, 3 rounds;
#  B. 16 streams of 16 MiB puts and gets, FP16 / FP32, 2 rounds.
# No run begins past 500 s.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
start=$(date +%s)
run() {  # ROWS TAG MALLOC_CONF CELLS...
  local rows=$1 tag=$2 conf=$3; shift 3
  [ $(( $(date +%s) - start )) -lt 500 ] || return 0
  MALLOC_CONF=$conf timeout 90 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/kvq-server" "$@" \
    --markdown="$out/r/x.md" > /dev/null 2>> "$out/r/bench.log"
  echo "$tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put\|^| get' | sed "s/^/$tag | /" >> "$out/$rows"
}
one="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,4194304 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
many="--streams=16 --dtypes=fp16,fp32 --block_sizes=16777216 --put_windows=4 --get_keys=1 --repeats=1"
confs=("default|" "narenas1|narenas:1" "narenas4|narenas:4")
for round in 1 2 3; do
  for i in 0 1 2; do
    c=${confs[$(( (i + round) % 3 ))]}
    run one-stream-rows.txt "${c%%|*} $round" "${c#*|}" $one
  done
done
for round in 1 2; do
  for i in 0 1 2; do
    c=${confs[$(( (i + round) % 3 ))]}
    run many-streams-rows.txt "${c%%|*} $round" "${c#*|}" $many
  done
done
rm -f "$out/r/x.md"; mv "$out/r/bench.log" "$out/bench.log" 2>/dev/null; rmdir "$out/r"
cat "$out/timeline.txt"
