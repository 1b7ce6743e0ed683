#!/usr/bin/env bash
# For the next session (refused here: no device time left): the
# many-streams table (service-h200.md) on 2abe67a or later, the pinned
# heap sized to memory (4 GiB on the H200 machine).
# There: tar -xJf .device.tar.xz && .device/bin/next-call-many-streams-table.sh
# Here: ../shared/tools/bundle-device .device build/bin/kvq-server
#   build/bin/kvq-bench-service, this script into .device/bin, tar -cJf.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/m"
timeout 280 "$b/run" kvq-bench-service --device=cuda \
  --server_binary="$b/bin/kvq-server" --streams=1,2,4,8,16 \
  --block_sizes=65536,1048576,16777216 --put_windows=4 --get_keys=1,4 \
  --repeats=2 --markdown="$out/m/service-h200.md" \
  --csv="$out/m/service-h200.csv" > "$out/m/log.txt" 2>&1
echo "rc=$?"
