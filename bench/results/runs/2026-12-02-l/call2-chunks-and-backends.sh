#!/usr/bin/env bash
# Call 2: (a) the wire chunk size for one-stream puts and one-key gets
# (256 KiB, 512 KiB, 1 MiB), kvq and the bare ceiling at the same size;
# (b) kvq-server on the CPU backend against the CUDA one on the GPU machine,
# to see whether a put's receive is slower because the GPU reads the region.
# There: tar -xJf .device.tar.xz && .device/bin/call2-chunks-and-backends.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/r"
rows="$out/rows.txt"; : > "$rows"
start=$(date +%s)
cells="--streams=1 --dtypes=fp16,fp32 --block_sizes=1048576,4194304,16777216 --put_windows=4 --get_keys=1 --repeats=1 --bytes_per_cell=536870912 --max_blocks=512"
run() {  # TAG DEVICE ARGS...
  local tag=$1 device=$2; shift 2
  timeout 150 "$b/run" kvq-bench-service --device="$device" \
    --server_binary="$b/bin/kvq-server" "$@" --markdown="$out/r/x.md" \
    > /dev/null 2>> "$out/r/bench.log"
  echo "$tag rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
  sed '/^## Server stages/,$d' "$out/r/x.md" | grep '^| put\|^| get' | sed "s/^/$tag | /" >> "$rows"
  sed -n '/^## Server stages/,$p' "$out/r/x.md" | grep '^| put\|^| get' | sed "s/^/$tag stages | /" >> "$rows"
}
for round in 1 2; do
  for c in 262144 524288 1048576; do
    run "chunk$c $round" cuda $cells --chunk_bytes=$c
  done
  run "cpu-backend $round" cpu $cells
done
cat "$out/timeline.txt"
