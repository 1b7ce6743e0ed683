#!/usr/bin/env bash
# Fourteenth session, call 4: is the one-key get ceiling lower when the
# bare service sends memory no cache holds? The thirteenth session's call
# 2 and this session's call 3 (not alternated) said 5-18% lower at 1 MiB,
# this session's call 1 (5 rounds alternating) said no. Here 8 rounds
# alternating bare sync and sync-fresh, 1 MiB only, FP16 / FP32, one key
# a call (kvq runs beside each, as a control).
# There: tar -xJf .device.tar.xz && .device/bin/call4-fresh-ceiling-rounds.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
start=$(date +%s)
run() {  # TAG BARE_API; none begun past 400 s
  local tag=$1 api=$2
  [ $(( $(date +%s) - start )) -lt 400 ] || return 0
  timeout 60 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/kvq-server" --streams=1 --dtypes=fp16,fp32 \
    --block_sizes=1048576 --put_windows=4 --get_keys=1 --repeats=1 \
    --bytes_per_cell=536870912 --max_blocks=512 --bare_api="$api" \
    --markdown="$out/r/x.md" > /dev/null 2>> "$out/r/bench.log"
  echo "$tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| get' | sed "s/^/$tag | /" >> "$out/rows.txt"
  sed -n '/^## Server stages/,$p' "$out/r/x.md" | grep '^| get' | sed "s/^/$tag | /" >> "$out/stage-rows.txt"
}
for round in 1 2 3 4 5 6 7 8; do
  if [ $((round % 2)) -eq 1 ]; then
    run "sync $round" sync; run "fresh $round" sync-fresh
  else
    run "fresh $round" sync-fresh; run "sync $round" sync
  fi
done
rm -f "$out/r/x.md"
cat "$out/timeline.txt"
