#!/usr/bin/env bash
# Call 5: the pinned heap sized to memory by default (--pinned_heap_bytes=0):
# the integration suite against a CUDA server with the new default, then 16
# streams of 16 MiB puts with the default against --pinned_heap_bytes=1 GiB
# (the old default), and the start-up line that says what was locked.
# There: tar -xJf .device.tar.xz && .device/bin/call5-auto-pinned-heap.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
rows="$out/rows.txt"; : > "$rows"
start=$(date +%s)
while read -r name env; do
  case "$env" in *KVQ_TEST_DEVICE=cuda*) ;; *) continue ;; esac
  # shellcheck disable=SC2086
  env $env KVQ_TEST_SERVER_BIN="$b/bin/kvq-server" \
    KVQ_TEST_KVQCTL_BIN="$b/bin/kvqctl" timeout 240 "$b/run" "$name" \
    --gtest_brief=1 > "$out/r/$name.log" 2>&1
  echo "$name rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$out/r/$name.log" | tail -1) +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
done < "$b/gpu-tests.txt"
timeout 30 "$b/run" kvq-server --device=cuda --listen=127.0.0.1:0 \
  --metrics_listen=127.0.0.1:0 > "$out/r/server-start.log" 2>&1 &
sleep 8; kill %1 2>/dev/null; wait
grep -i "page-locked" "$out/r/server-start.log" >> "$out/timeline.txt"
cells="--streams=16 --dtypes=fp16,fp32 --block_sizes=16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=2147483648 --max_blocks=512"
run() {  # TAG ARGS...
  local tag=$1; shift
  timeout 150 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/kvq-server" $cells "$@" --markdown="$out/r/x.md" \
    > /dev/null 2>> "$out/r/bench.log"
  echo "$tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put\|^| get' | sed "s/^/$tag | /" >> "$rows"
  sed -n '/^## Server stages/,$p' "$out/r/x.md" | grep '^| put' | sed "s/^/$tag stages | /" >> "$rows"
}
run "auto 1"
run "heap1g 1" --server_flags=--pinned_heap_bytes=1073741824
cat "$out/timeline.txt"
