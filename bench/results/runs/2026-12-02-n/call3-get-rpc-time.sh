#!/usr/bin/env bash
# Fourteenth session, call 3: where a one-key get's time goes. The stage
# table's new `rpc` column (the server's time in the Get RPC, from
# kvq_rpc_duration_seconds) beside the client's latency and the fetch and
# send stages: one stream, one key a call, FP16 / FP32, 1 and 4 MiB, 5
# repeats (kvq and bare alternating), then the same with the bare service
# on sync-fresh.
# Here: bundle kvq-server and kvq-bench-service of the tree with the rpc
#   column, this script into .device/bin.
# There: tar -xJf .device.tar.xz && .device/bin/call3-get-rpc-time.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
start=$(date +%s)
cells() {  # NAME FLAGS...
  local name=$1; shift
  mkdir -p "$out/$name"
  timeout 200 "$b/run" kvq-bench-service --device=cuda \
    --server_binary="$b/bin/kvq-server" --streams=1 --dtypes=fp16,fp32 \
    --block_sizes=1048576,4194304 --put_windows=4 --get_keys=1 \
    --bytes_per_cell=536870912 --max_blocks=512 --repeats=5 "$@" \
    --markdown="$out/$name/service-h200.md" > "$out/$name/log.txt" 2>&1
  echo "$name rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
}
cells sync
cells fresh --bare_api=sync-fresh
cat "$out/timeline.txt"
