#!/usr/bin/env bash
# For the next session: on the H200, ServerTest.AGetAlone... and
# BadInputTest.ClientVanishingMidGetOfManyKeys (both cancel a Get the
# server is still answering) took 12.4 s against ~2.3 s for the suites'
# other tests (call 4); in call 1 the first took 1.9 s. 10 s is
# --shutdown_grace_seconds: the server's shutdown may be waiting out a call
# still in flight. This runs both with the server's log kept (through
# kvq-server-logged, in the bundle's bin/) and prints its last lines: the
# time between "received SIGTERM" and "kvq-server stopped", and any call
# logged as cancelled at the grace. Since e611c87 both tests also wait (up
# to 20 s) for kvq_rpcs_in_flight{rpc="get"} to reach 0 and fail if it
# does not: a handler that outlives its cancelled call fails them.
# Bundle: bench/run-device.sh bundle build .device, then copy this script
# and kvq-server-logged into .device/bin.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
export KVQ_TEST_DEVICE=cuda DIAG_SERVER_LOG=/tmp/diag-server.log
: > "$DIAG_SERVER_LOG"
KVQ_TEST_SERVER_BIN="$b/bin/kvq-server-logged" timeout 60 "$b/run" server_roundtrip_test \
  --gtest_color=no --gtest_filter='ServerTest.AGetAlone*' 2>&1 | grep -E "OK|FAIL" | tail -3
KVQ_TEST_SERVER_BIN="$b/bin/kvq-server-logged" timeout 60 "$b/run" server_bad_input_test \
  --gtest_color=no --gtest_filter='*VanishingMidGet*' 2>&1 | grep -E "OK|FAIL" | tail -3
grep -vE '"level":"debug"' "$DIAG_SERVER_LOG" | cut -c1-300 | tail -60
