#!/usr/bin/env bash
# Call 1 of the eleventh session: every GPU test on HEAD, then one-stream
# service runs: HEAD's stages (the assemble stage now counts the upload
# hand-over), and the bare ceiling three ways, alternating.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/s"
start=$(date +%s)
bench/run-device.sh run --bundle="$b" tests > "$out/tests-summary.txt" 2>&1
echo "tests done at +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
cells="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,4194304,16777216,33554432 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
for round in 1 2; do
  for v in sync answer jemalloc; do
    api=sync; pre=""
    [ $v = answer ] && api=sync-answer-thread
    [ $v = jemalloc ] && pre="$b/lib/libjemalloc.so.2"
    LD_PRELOAD=$pre timeout 150 "$b/run" kvq-bench-service --device=cuda $cells \
      --bare_api=$api --markdown="$out/s/$v-$round.md" > /dev/null 2>> "$out/s/bench.log"
    echo "$v round $round rc=$? at +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  done
done
cat "$out/timeline.txt"
grep -h "rc=" "$out/tests-summary.txt" | grep -v "rc=0" | head
grep -c "rc=0" "$out/tests-summary.txt"
for f in "$out"/s/*.md; do echo "== $f"; grep "^| put\|^| get" "$f"; done
