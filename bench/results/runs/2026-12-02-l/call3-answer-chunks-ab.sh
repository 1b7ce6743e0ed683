#!/usr/bin/env bash
# Call 3: small blocks answered in four chunks (AnswerChunkBytes) against
# main (kvq-server-main: e063b89), one stream, gets of one key and of four,
# 3 rounds alternating; and the new server with the client's chunks at
# 256 KiB, for the client's put chunk size. GPU tests of the service first.
# There: tar -xJf .device.tar.xz && .device/bin/call3-answer-chunks-ab.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
rows="$out/rows.txt"; : > "$rows"
start=$(date +%s)
for t in server_roundtrip_test server_bad_input_test; do
  KVQ_TEST_DEVICE=cuda KVQ_TEST_SERVER_BIN="$b/bin/kvq-server" \
    KVQ_TEST_KVQCTL_BIN="$b/bin/kvqctl" timeout 120 "$b/run" $t --gtest_brief=1 > "$out/r/$t.log" 2>&1
  echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$out/r/$t.log" | tail -1)" >> "$out/timeline.txt"
done
cells="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,2097152,4194304,16777216 --put_windows=4 --get_keys=1,4 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
run() {  # TAG SERVER ARGS...
  local tag=$1 server=$2; shift 2
  timeout 150 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/$server" "$@" --markdown="$out/r/x.md" \
    > /dev/null 2>> "$out/r/bench.log"
  echo "$tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put\|^| get' | sed "s/^/$tag | /" >> "$rows"
  sed -n '/^## Server stages/,$p' "$out/r/x.md" | grep '^| get' | sed "s/^/$tag stages | /" >> "$rows"
}
for round in 1 2 3; do
  run "main $round" kvq-server-main $cells
  run "four $round" kvq-server $cells
  run "four-c256k $round" kvq-server $cells --chunk_bytes=262144
done
cat "$out/timeline.txt"
