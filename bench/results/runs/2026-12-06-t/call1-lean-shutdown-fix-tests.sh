#!/usr/bin/env bash
# Twentieth session, call 1 (lean: little device time was left): the server
# that exits at most a second past its grace (1adf6f2's main.cc) against
# CUDA: the round-trip, bad-input and operations suites whole, each test's
# time (the two cancelled-Get tests took 12.4 s in the nineteenth
# session's call 4), then the kernel tests touched by 3b0a1e3.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/t"
nvidia-smi -L
export KVQ_TEST_DEVICE=cuda KVQ_TEST_SERVER_BIN="$b/bin/kvq-server" KVQ_TEST_KVQCTL_BIN="$b/bin/kvqctl"
for t in server_roundtrip_test server_bad_input_test server_operations_test quantize_cuda_test paged_kernels_test; do
  timeout 100 "$b/run" $t --gtest_color=no > "$out/t/$t.log" 2>&1
  echo "== $t rc=$?"
  grep -E "^\[ +OK \]" "$out/t/$t.log" | sed -E 's/.*\] (.*) \(([0-9]+) ms\)/\2 \1/' | sort -n | tail -4
  grep -E "^\[  (PASSED|FAILED) |FAILED  \]" "$out/t/$t.log"
done
tar -czf "$out/tests.tgz" -C "$out" t && rm -rf "$out/t"
