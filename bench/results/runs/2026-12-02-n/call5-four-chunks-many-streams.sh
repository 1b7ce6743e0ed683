#!/usr/bin/env bash
# Fourteenth session, call 5: does answering small blocks in four chunks
# (kvq-server-four, as in call 4) cost the many-stream gets? Four messages
# a block take the server longer to send (call 4: send 0.29-0.31 against
# 0.20 ms per 1 MiB block) while the client gets the block sooner; with 8
# and 16 streams the server's CPU is shared. 1 MiB gets (and the puts that
# fill them), one key a call and four, FP16 / FP32, 3 rounds alternating.
# There: tar -xJf .device.tar.xz && .device/bin/call5-four-chunks-many-streams.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
start=$(date +%s)
run() {  # SERVER ROUND; none begun past 230 s
  local server=$1 round=$2
  [ $(( $(date +%s) - start )) -lt 230 ] || return 0
  timeout 90 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/$server" --streams=8,16 --dtypes=fp16,fp32 \
    --block_sizes=1048576 --put_windows=4 --get_keys=1,4 --repeats=1 \
    --markdown="$out/r/x.md" > /dev/null 2>> "$out/r/bench.log"
  echo "$server $round rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| get' | sed "s/^/$server $round | /" >> "$out/rows.txt"
}
for round in 1 2 3; do
  if [ $((round % 2)) -eq 1 ]; then
    run kvq-server $round; run kvq-server-four $round
  else
    run kvq-server-four $round; run kvq-server $round
  fi
done
rm -f "$out/r/x.md"
cat "$out/timeline.txt"
