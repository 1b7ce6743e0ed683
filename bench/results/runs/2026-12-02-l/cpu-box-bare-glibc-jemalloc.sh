#!/usr/bin/env bash
# The bare ceiling on glibc against jemalloc (--bare_preload) on the CPU
# box (2 threads), ROUNDS alternating rounds; the bare GB/s is the column
# to read. Run from the repository root after a build:
#   ROUNDS=5 cpu-box-bare-glibc-jemalloc.sh OUT "glibc=" "jemalloc=" ["NAME=MALLOC_CONF" ...]
je=/lib/x86_64-linux-gnu/libjemalloc.so.2
cells="--device=cpu --server_binary=build/bin/kvq-server --streams=1 --dtypes=fp16 --block_sizes=1048576,16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=1073741824 --max_blocks=1024"
out=$1; shift; : > $out
for r in $(seq 1 $ROUNDS); do
  for v in "$@"; do
    tag=${v%%=*}; conf=${v#*=}
    if [ "$tag" = glibc ]; then pre=""; else pre="--bare_preload=$je"; fi
    MALLOC_CONF=$conf build/bin/kvq-bench-service $cells $pre --markdown=/tmp/x.md > /dev/null 2>&1
    sed '/^## Server stages/,$d' /tmp/x.md | grep '^| put\|^| get' | sed "s/^/$tag $r | /" >> $out
  done
done
