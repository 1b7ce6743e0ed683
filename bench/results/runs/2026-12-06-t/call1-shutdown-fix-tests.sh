#!/usr/bin/env bash
# Twentieth session, call 1: the server that exits at most a second past its
# grace, without gRPC's library shutdown (main.cc), against CUDA: the
# round-trip, bad-input and operations suites whole, with each test's time
# (the two cancelled-Get tests took 12.4 s in the nineteenth session's call
# 4, 10 s of it the process's exit), then the two cancelled-Get tests and the
# new shutdown test 4 times each, and every other GPU test binary.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}; mkdir -p "$out/t"
nvidia-smi -L
export KVQ_TEST_DEVICE=cuda KVQ_TEST_SERVER_BIN="$b/bin/kvq-server" KVQ_TEST_KVQCTL_BIN="$b/bin/kvqctl"
for t in server_roundtrip_test server_bad_input_test server_operations_test; do
  timeout 200 "$b/run" $t --gtest_color=no > "$out/t/$t.log" 2>&1
  echo "== $t rc=$?"
  grep -E "^\[ +OK \]" "$out/t/$t.log" | sed -E 's/.*\] (.*) \(([0-9]+) ms\)/\2 \1/' | sort -n | tail -4
  grep -E "^\[  (PASSED|FAILED) |FAILED  \]" "$out/t/$t.log"
done
for f in 'server_roundtrip_test:ServerTest.AGetAlone*' 'server_bad_input_test:*VanishingMidGet*' 'server_operations_test:*StoppedReading*'; do
  t=${f%%:*}
  timeout 120 "$b/run" $t --gtest_color=no --gtest_filter="${f#*:}" --gtest_repeat=4 > "$out/t/$t-repeat.log" 2>&1
  echo "== $f x4 rc=$?"; grep -E "^\[ +(OK|FAILED) \]|actual" "$out/t/$t-repeat.log" | cut -c1-200
done
for t in cuda_backend_test backend_crosscheck_test server_cache_ops_test server_eviction_test server_concurrency_test kvqctl_test; do
  timeout 240 "$b/run" $t --gtest_color=no > "$out/t/$t.log" 2>&1
  echo "== $t rc=$?"; grep -E "^\[  (PASSED|FAILED) |FAILED  \]" "$out/t/$t.log"
done
tar -czf "$out/tests.tgz" -C "$out" t && rm -rf "$out/t"
