#!/usr/bin/env bash
# The final build's integration suites touched by the change, against CUDA.
b=$(cd "$(dirname "$0")/.." && pwd)
export KVQ_TEST_DEVICE=cuda KVQ_TEST_SERVER_BIN="$b/bin/kvq-server"
for t in server_roundtrip_test server_bad_input_test; do
  timeout 100 "$b/run" $t --gtest_color=no > /tmp/$t.log 2>&1
  echo "$t rc=$?"; grep -E "^\[  (PASSED|FAILED) |FAILED|AGetAlone|Vanishing" /tmp/$t.log | head -12
done
