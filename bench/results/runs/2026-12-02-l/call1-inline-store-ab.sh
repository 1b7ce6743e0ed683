#!/usr/bin/env bash
# For the next session's first device call (not run yet): the inline-store
# branch against main, and the bare ceiling with jemalloc alone.
#
# Here, before the call:
#   git checkout inline-store && (cd build && ninja kvq-server) &&
#     cp build/bin/kvq-server /tmp/ab/kvq-server-inline && git checkout main &&
#     (cd build && ninja)
#   bench/run-device.sh bundle build .device /tmp/ab/kvq-server-inline
#   cp bench/results/runs/2026-12-01-k/next-call-inline-store-ab.sh .device/bin/
#   rm -f .device.tar.xz && tar -cJf .device.tar.xz .device
# There: tar -xJf .device.tar.xz && .device/bin/next-call-inline-store-ab.sh
# (about 6 minutes; GPU tests first, since the branch's server has not run
# on a GPU).
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
rows="$out/rows.txt"; : > "$rows"
start=$(date +%s)
bench/run-device.sh run --bundle="$b" tests > "$out/tests-summary.txt" 2>&1
echo "tests rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
# The integration suite (the tests gpu-tests.txt runs against a CUDA server)
# against the inline server as well.
while read -r name env; do
  case "$env" in *KVQ_TEST_DEVICE=cuda*) ;; *) continue ;; esac
  # shellcheck disable=SC2086
  env $env KVQ_TEST_SERVER_BIN="$b/bin/kvq-server-inline" \
    KVQ_TEST_KVQCTL_BIN="$b/bin/kvqctl" timeout 240 "$b/run" "$name" \
    --gtest_brief=1 > "$out/r/inline-$name.log" 2>&1
  echo "inline $name rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$out/r/inline-$name.log" | tail -1)" >> "$out/tests-summary.txt"
done < "$b/gpu-tests.txt"
one="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,4194304,16777216,33554432 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
many="--streams=8,16 --dtypes=fp16 --block_sizes=1048576,16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=2147483648 --max_blocks=512"
run() {  # TAG SERVER ARGS...
  local tag=$1 server=$2; shift 2
  timeout 150 "$b/run" kvq-bench-service --device=cuda --server_binary="$b/bin/$server" \
    "$@" --markdown="$out/r/x.md" > /dev/null 2>> "$out/r/bench.log"
  echo "$tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put\|^| get' | sed "s/^/$tag | /" >> "$rows"
  sed -n '/^## Server stages/,$p' "$out/r/x.md" | grep '^| put' | sed "s/^/$tag stages | /" >> "$rows"
}
for round in 1 2 3; do
  run "main one $round" kvq-server $one
  run "inline one $round" kvq-server-inline $one
done
for round in 1 2; do
  run "main many $round" kvq-server $many
  run "inline many $round" kvq-server-inline $many
done
for round in 1 2 3; do
  run "bare-glibc $round" kvq-server $one
  run "bare-jemalloc $round" kvq-server $one --bare_preload="$b/lib/libjemalloc.so.2"
done
cat "$out/timeline.txt"
grep "rc=" "$out/tests-summary.txt" | grep -v "rc=0"
