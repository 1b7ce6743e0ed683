#!/usr/bin/env bash
# For the next session: three of the prepared calls in one device call (one
# machine start instead of three), each into a folder of its own under $OUT,
# in order of what they decide: the GPU tests (the client's new Get path
# and the pinned heap sized to memory have run on the CPU backend only),
# the many-streams table, jemalloc's options. About 7 minutes; a step that
# runs long is cut by its own timeout. The GroupQuantize chunk A/B
# (next-call-group-quant-chunk-cost.sh, about 4 minutes) is a call of its
# own: together they would pass the 10 minutes a call may take.
# Here:
#   git checkout group-quant-chunk-cost && (cd build && ninja
#     kvq-bench-kernels quantize_cuda_test paged_kernels_test) &&
#   for f in bin/kvq-bench-kernels tests/quantize_cuda_test \
#       tests/paged_kernels_test; do
#     cp build/$f /tmp/ab/$(basename $f)-chunk-cost; done &&
#   git checkout main && (cd build && ninja) &&
#   bench/run-device.sh bundle build .device /tmp/ab/*-chunk-cost &&
#   cp bench/results/runs/2026-12-02-l/next-*.sh .device/bin/ &&
#   rm -f .device.tar.xz && tar -cJf .device.tar.xz .device
# There: tar -xJf .device.tar.xz && .device/bin/next-session-first-call.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
start=$(date +%s)
step() {  # NAME LIMIT COMMAND...
  local name=$1 limit=$2; shift 2
  mkdir -p "$out/$name"
  OUT="$out/$name" timeout "$limit" "$@" > "$out/$name/log.txt" 2>&1
  echo "$name rc=$? +$(( $(date +%s) - start )) s" >> "$out/timeline.txt"
}
step tests 240 bench/run-device.sh run --bundle="$b" tests
step table 150 "$b/bin/next-call-many-streams-table.sh"
step jemalloc 150 "$b/bin/next-call-jemalloc-options.sh"
cat "$out/timeline.txt"
