#!/usr/bin/env bash
# Fifteenth session, call 5: the landed build's small-group tests (the
# many-chunks test shrunk to FP16 / BF16 at 64 Mi values: call 4's version,
# 100 Mi values for every dtype, passed in 95 s and left the rest of the
# suite short of time) and paged_kernels_test, which call 4 did not reach.
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
timeout 60 "$b/run" quantize_cuda_test --gtest_filter='SmallGroups*' > "$out/small-groups.log" 2>&1
echo "small groups rc=$?" | tee "$out/summary.txt"
timeout 40 "$b/run" paged_kernels_test --gtest_brief=1 > "$out/paged.log" 2>&1
echo "paged_kernels_test rc=$?" | tee -a "$out/summary.txt"
grep -E '^\[  (PASSED|FAILED)|^\[       OK \] SmallGroups' "$out/small-groups.log" "$out/paged.log" | tee -a "$out/summary.txt"
