#!/usr/bin/env bash
# Twentieth session, call 1 at its smallest (~4 min of device time were
# left): the tests whose teardowns took 10-12 s on the H200, and the new
# shutdown tests, against CUDA with the fixed server (1adf6f2's main.cc).
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
nvidia-smi -L
export KVQ_TEST_DEVICE=cuda KVQ_TEST_SERVER_BIN="$b/bin/kvq-server"
for f in 'server_roundtrip_test:ServerTest.AGetAlone*:ServerTest.BlocksFrom*' \
         'server_bad_input_test:*VanishingMidGet*' 'server_operations_test:*Shutdown*'; do
  t=${f%%:*}
  timeout 60 "$b/run" $t --gtest_color=no --gtest_filter="${f#*:}" 2>&1 | grep -E "^\[ +(OK|FAILED) \]|PASSED|actual"
done
