#!/usr/bin/env bash
# Call 5: every GPU test on the split CUDA backend (cuda_stream_contexts,
# cuda_upload), then the bare ceiling answering inline (sync) against
# answering from a thread of the stream's own (sync-answer-thread),
# alternating, 3 rounds, one stream.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
rows="$out/rows.txt"; : > "$rows"
start=$(date +%s)
bench/run-device.sh run --bundle="$b" tests > "$out/tests-summary.txt" 2>&1
echo "tests rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
cells="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
for round in 1 2 3; do
  for api in sync sync-answer-thread; do
    timeout 120 "$b/run" kvq-bench-service --device=cuda $cells --bare_api=$api \
      --markdown="$out/r/x.md" > /dev/null 2>> "$out/r/bench.log"
    echo "$api $round rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
    sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put' | sed "s/^/$api $round | /" >> "$rows"
  done
done
rm -f "$out/gpu-tests.log.gz"; gzip -f "$out/gpu-tests.log" 2>/dev/null
cat "$out/timeline.txt"
grep "rc=" "$out/tests-summary.txt"
awk -F'|' '{print $1, $4, $5, "kvq", $9, "bare", $10}' "$rows"
