#!/usr/bin/env bash
# Call 3, on the build to land (the first key of a Get that is the server's
# only data call answered in four chunks):
#  1. service A/B, one stream, FP16 / FP32, 1 and 4 MiB, window 4, gets of
#     one key and of four, 4 rounds alternating: kvq-server-70b8378 (main)
#     against kvq-server-front;
#  2. the one-stream table (bench/results/service-h200-one-stream.md's
#     command);
#  3. the many-streams table (service-h200.md's command).
# Everything packed into $OUT/call3.tgz.
# Bundle: bench/run-device.sh bundle build .device /tmp/ab/kvq-server-70b8378 /tmp/ab/kvq-server-front
# There: tar -xJf .device.tar.xz && .device/bin/call3-front-ab-and-service-tables.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
start=$(date +%s)
mark() { echo "$1 +$(( $(date +%s) - start )) s" >> "$work/timeline.txt"; }
pack() { tar -czf "$out/call3.tgz" -C "$work" .; }
KVQ_AB_ROUNDS=4 KVQ_AB_SERVERS="kvq-server-70b8378 kvq-server-front" \
KVQ_SERVICE_ARGS="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,4194304 --put_windows=4 --get_keys=1,4 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512" \
KVQ_SERVICE_TIMEOUT=60 OUT="$work/ab" timeout 200 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab-summary.txt" 2>&1
mark "ab rc=$?"
pack
mkdir -p "$work/one-stream" "$work/many"
timeout 150 "$b/run" kvq-bench-service --device=cuda --server_binary="$b/bin/kvq-server" \
  --streams=1 --block_sizes=1048576,4194304,16777216,33554432 --put_windows=4,all \
  --get_keys=1,4 --bytes_per_cell=1073741824 --max_blocks=1024 --repeats=3 \
  --markdown="$work/one-stream/service-h200-one-stream.md" \
  --csv="$work/one-stream/service-h200-one-stream.csv" > "$work/one-stream/log.txt" 2>&1
mark "one-stream table rc=$?"
pack
timeout 300 "$b/run" kvq-bench-service --device=cuda --server_binary="$b/bin/kvq-server" \
  --streams=1,2,4,8,16 --block_sizes=65536,1048576,16777216 --put_windows=4 \
  --get_keys=1,4 --repeats=2 \
  --markdown="$work/many/service-h200.md" --csv="$work/many/service-h200.csv" \
  > "$work/many/log.txt" 2>&1
mark "many-streams table rc=$?"
pack
cat "$work/timeline.txt"
