#!/usr/bin/env bash
# Call 2: service A/B, one stream, FP16 / FP32, 1 MiB, window 4, gets of one
# key and of four, 4 rounds alternating: kvq-server-70b8378 (main),
# kvq-server-alone (call 1's candidate: every key of a Get that is the
# server's only data call answered in four chunks) and kvq-server-front
# (only the first key of such a call: a later key's fetch overlaps the send
# of the key before). Rows packed into $OUT/call2.tgz.
# Bundle: bench/run-device.sh bundle build .device /tmp/ab/kvq-server-70b8378 /tmp/ab/kvq-server-alone /tmp/ab/kvq-server-front
# There: tar -xJf .device.tar.xz && .device/bin/call2-first-key-ab.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
KVQ_AB_ROUNDS=4 KVQ_AB_SERVERS="kvq-server-70b8378 kvq-server-alone kvq-server-front" \
KVQ_SERVICE_ARGS="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576 --put_windows=4 --get_keys=1,4 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512" \
KVQ_SERVICE_TIMEOUT=60 OUT="$work/ab" timeout 400 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab-summary.txt" 2>&1
echo "ab rc=$?"
tar -czf "$out/call2.tgz" -C "$work" .
grep -F "| get |" "$work/ab/ab/rows.txt" | grep -v stages | cut -d'|' -f1-11,13,16
