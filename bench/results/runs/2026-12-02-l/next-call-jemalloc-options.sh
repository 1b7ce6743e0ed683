#!/usr/bin/env bash
# For the next session: which of jemalloc's behaviours slows gRPC's
# receive? The bare service ran 5-15% slower with jemalloc preloaded (call
# 1: lower in 18 of 24 put pairs) and kvq-server's malloc is jemalloc (its
# region heap needs the extent hooks). Each run gives jemalloc to the bare
# service (--bare_preload) under one MALLOC_CONF, which kvq-server, a child
# of the bench, inherits as well (on top of its compiled-in
# oversize_threshold:0,retain:false): the bare column says what the option
# does to the ceiling, the kvq column what it does to kvq. 2 rounds,
# alternating, plus the bare service on glibc. On the CPU box (2 threads,
# so 8 arenas where the H200 machine's 16 make 64) jemalloc did not slow
# the bare service: medians of 5 rounds within 4% either way
# (cpu-box-bare-glibc-jemalloc-rows.txt), so the arena options come first.
# Here: ../shared/tools/bundle-device .device build/bin/kvq-server
#   build/bin/kvq-bench-service (libjemalloc.so.2 comes along as
#   kvq-server's), this script into .device/bin, tar -cJf .device.tar.xz
#   .device
# There: tar -xJf .device.tar.xz && .device/bin/next-call-jemalloc-options.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
rows="$out/rows.txt"; : > "$rows"
start=$(date +%s)
cells="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
run() {  # TAG MALLOC_CONF PRELOAD
  local tag=$1 conf=$2 preload=$3
  MALLOC_CONF=$conf timeout 150 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/kvq-server" $cells ${preload:+--bare_preload="$preload"} \
    --markdown="$out/r/x.md" > /dev/null 2>> "$out/r/bench.log"
  echo "$tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put\|^| get' | sed "s/^/$tag | /" >> "$rows"
}
je="$b/lib/libjemalloc.so.2"
for round in 1 2; do
  run "glibc $round" "" ""
  run "jemalloc $round" "" "$je"
  run "tcache8m $round" "tcache_max:8388608" "$je"
  run "narenas1 $round" "narenas:1" "$je"
  run "percpu $round" "percpu_arena:percpu" "$je"
  run "nodecay $round" "dirty_decay_ms:-1,muzzy_decay_ms:-1" "$je"
done
cat "$out/timeline.txt"
