#!/usr/bin/env bash
# The GPU run: GPU tests, kvq-bench-kernels and kvq-bench-service, from a
# bundled folder, on the lent GPU machine (which has no gRPC libraries).
#
# Here (build machine, no GPU), after building with CUDA:
#   bench/run-device.sh bundle BUILD_DIR [BUNDLE_DIR=.device] [EXTRA...]
#     copies every test binary labelled gpu (per ctest), kvq-server, kvqctl,
#     kvq-bench-kernels and kvq-bench-service, and the EXTRA programs (other
#     builds to compare, each under a name of its own, or wrapper scripts
#     that set an environment and exec a bundled program: `ab` below),
#     with the shared libraries the
#     GPU machine lacks, into BUNDLE_DIR (git-ignored) via
#     ../shared/tools/bundle-device, and writes BUNDLE_DIR/gpu-tests.txt: one
#     line per test binary, "NAME [VAR=VALUE...]" (the environment ctest
#     gives it, e.g. KVQ_TEST_DEVICE=cuda for the integration suite), and
#     BUNDLE_DIR.tar.xz: carry that (the bundle itself is over the device
#     tool's 64 MiB) and unpack it there first (tar -xJf .device.tar.xz).
# There (GPU machine, device tool, repository root; carry BUNDLE_DIR):
#   bench/run-device.sh run [--bundle=DIR] PHASE...
#     PHASE: tests | kernels | service | profile | ab. Writes into $OUT (or
#     /tmp/kvq-device-out when OUT is unset):
#       environment.txt        nvidia-smi, driver, CPU
#       gpu-tests.log          tests: every GPU test binary's output
#       kernels-<gpu>.md/.csv  kernels: kvq-bench-kernels --shapes=all
#       service-<gpu>.md/.csv  service: kvq-bench-service --device=cuda
#                              $KVQ_SERVICE_ARGS (e.g. --repeats=3)
#       profile-<case>.txt     profile: Nsight Compute (ncu) on the kernels
#                              of each kvq-bench-kernels --case in
#                              $KVQ_PROFILE_CASES (space-separated)
#       ab.tgz                 ab: builds side by side, $KVQ_AB_ROUNDS
#                              (default 2) alternating rounds: each server
#                              in $KVQ_AB_SERVERS (bundled program names)
#                              under kvq-bench-service --device=cuda
#                              --server_binary=it $KVQ_SERVICE_ARGS, and each
#                              kernel benchmark in $KVQ_AB_KERNELS on every
#                              --case in $KVQ_AB_CASES; ab/service-NAME-R.md
#                              are the reports, ab/rows.txt every row tagged
#                              with its build and round, "stages" after the
#                              round for the per-stage table (also printed)
#       bench.log              the benchmarks' progress (stderr)
#     and prints a short summary last. Exit status: non-zero if a test or a
#     benchmark failed. KVQ_KERNELS_TIMEOUT / KVQ_SERVICE_TIMEOUT (seconds)
#     bound the benchmarks; the kernel report is rewritten after each of its
#     sections, so a cut-short run still returns what it finished.
#
# Not run there: the tests that start a real Prometheus (the GPU machine has
# none); they run against the CPU backend in CI.
set -uo pipefail

usage() { sed -n '2,46p' "$0"; exit 2; }
[ $# -ge 1 ] || usage
mode=$1; shift
repo=$(cd "$(dirname "$0")/.." && pwd)

bundle_mode() {
  [ $# -ge 1 ] || usage
  local build bundle tests
  build=$(cd "$1" && pwd); bundle=${2:-.device}
  local extras=("${@:3}")
  # "path<TAB>env..." per GPU test binary, from ctest's own test list.
  tests=$(ctest --test-dir "$build" -L gpu --show-only=json-v1 2>/dev/null |
    python3 -c 'import json, sys
seen = {}
for t in json.load(sys.stdin).get("tests", []):
    if not t.get("command"):
        continue
    env = next((p["value"] for p in t.get("properties", [])
                if p["name"] == "ENVIRONMENT"), [])
    seen[(t["command"][0], " ".join(env))] = True
for path, env in seen:
    if "/prometheus_" in path:
        continue  # needs a Prometheus server, which the GPU machine lacks
    print(path + "\t" + env)')
  [ -n "$tests" ] || echo "run-device.sh: no GPU tests found in $build (ctest -L gpu)" >&2
  local programs=()
  for p in kvq-server kvqctl kvq-bench-kernels kvq-bench-service; do
    [ -x "$build/bin/$p" ] || { echo "run-device.sh: $build/bin/$p not built" >&2; exit 1; }
    programs+=("$build/bin/$p")
  done
  # Programs go through bundle-device (which copies their libraries, and
  # stops at anything ldd cannot read); wrapper scripts are copied after.
  local binaries=() scripts=() extra
  for extra in "${extras[@]}"; do
    if [ "$(head -c 4 "$extra" 2>/dev/null)" = $'\x7fELF' ]; then
      binaries+=("$extra")
    else
      scripts+=("$extra")
    fi
  done
  rm -rf "$bundle"
  # shellcheck disable=SC2046
  "$repo/../shared/tools/bundle-device" "$bundle" \
    $(printf '%s\n' "$tests" | cut -f1 | sort -u) "${programs[@]}" \
    "${binaries[@]}" || exit 1
  [ ${#scripts[@]} -eq 0 ] || cp "${scripts[@]}" "$bundle/bin/"
  printf '%s\n' "$tests" |
    awk -F'\t' '{n = split($1, p, "/"); print p[n] ($2 == "" ? "" : " " $2)}' \
    > "$bundle/gpu-tests.txt"
  strip "$bundle"/bin/* 2>/dev/null || true
  du -sh "$bundle"
  # The bundle is larger than what the device tool carries (64 MiB); its
  # xz archive is about a quarter of it.
  tar -cJf "$bundle.tar.xz" "$bundle" && du -sh "$bundle.tar.xz"
}

run_mode() {
  local bundle=.device phases=()
  for arg in "$@"; do
    case "$arg" in
      --bundle=*) bundle=${arg#--bundle=} ;;
      tests|kernels|service|profile|ab) phases+=("$arg") ;;
      *) usage ;;
    esac
  done
  [ ${#phases[@]} -gt 0 ] || usage
  bundle=$(cd "$bundle" 2>/dev/null && pwd) ||
    { echo "run-device.sh: no bundle" >&2; exit 1; }
  [ -x "$bundle/run" ] || { echo "run-device.sh: no bundle at $bundle" >&2; exit 1; }
  local out=${OUT:-/tmp/kvq-device-out}
  mkdir -p "$out"
  local gpu tag
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  case "$gpu" in
    *H100*) tag=h100 ;; *H200*) tag=h200 ;; *) tag=gpu ;;
  esac
  {
    nvidia-smi 2>&1
    echo; cat /proc/driver/nvidia/version 2>/dev/null
    echo; lscpu 2>/dev/null | head -20
  } > "$out/environment.txt"

  local status=0 summary="" rc
  # run_bench PROGRAM TIMEOUT REPORT ARGS...: writes $out/REPORT-<gpu>.md
  # and .csv, its progress to bench.log, and records its exit status.
  run_bench() {
    local program=$1 limit=$2 report=$3
    shift 3
    timeout "$limit" "$bundle/run" "$program" "$@" \
      --markdown="$out/$report-$tag.md" --csv="$out/$report-$tag.csv" \
      > /dev/null 2>> "$out/bench.log"
    rc=$?
    summary+="$program: rc=$rc"$'\n'
    [ $rc -eq 0 ] || status=1
  }
  for phase in "${phases[@]}"; do
    case "$phase" in
    tests)
      : > "$out/gpu-tests.log"
      local name env line
      while read -r name env; do
        [ -n "$name" ] || continue
        echo "=== $name $env" >> "$out/gpu-tests.log"
        # shellcheck disable=SC2086
        env $env KVQ_TEST_SERVER_BIN="$bundle/bin/kvq-server" \
          KVQ_TEST_KVQCTL_BIN="$bundle/bin/kvqctl" \
          timeout 240 "$bundle/run" "$name" --gtest_color=no \
          >> "$out/gpu-tests.log" 2>&1
        rc=$?
        line=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$out/gpu-tests.log" |
               tail -1)
        summary+="test $name${env:+ ($env)}: rc=$rc ${line}"$'\n'
        [ $rc -eq 0 ] || status=1
      done < "$bundle/gpu-tests.txt"
      ;;
    kernels)
      run_bench kvq-bench-kernels "${KVQ_KERNELS_TIMEOUT:-420}" kernels \
        --shapes=all
      if [ -f "$out/kernels-$tag.md" ]; then
        summary+=$(sed -n '/^## Issue 3/,/^## 1\./p' "$out/kernels-$tag.md" |
                   head -30)$'\n'
      fi
      ;;
    service)
      # shellcheck disable=SC2086
      run_bench kvq-bench-service "${KVQ_SERVICE_TIMEOUT:-420}" service \
        --device=cuda ${KVQ_SERVICE_ARGS:-}
      ;;
    profile)
      # Hardware counters where the runtime lets ncu read them; the clocks
      # are left alone (the device notes: --clock-control none).
      local case_name
      for case_name in ${KVQ_PROFILE_CASES:-}; do
        timeout 240 ncu --clock-control none --target-processes all \
          --section SpeedOfLight --section MemoryWorkloadAnalysis \
          --section Occupancy --section WarpStateStats \
          --section LaunchStats --section SchedulerStats \
          "$bundle/run" kvq-bench-kernels --case="$case_name" --repeats=1 \
          > "$out/profile-${case_name//[:]/_}.txt" 2>&1
        rc=$?
        summary+="profile $case_name: rc=$rc"$'\n'
      done
      ;;
    ab)
      # Alternating rounds, so that the machine's drift between runs falls
      # on every build alike; a difference counts when every round shows it.
      mkdir -p "$out/ab"
      : > "$out/ab/rows.txt"
      local round name row
      for round in $(seq 1 "${KVQ_AB_ROUNDS:-2}"); do
        for name in ${KVQ_AB_SERVERS:-}; do
          # shellcheck disable=SC2086
          timeout "${KVQ_SERVICE_TIMEOUT:-420}" "$bundle/run" \
            kvq-bench-service --device=cuda \
            --server_binary="$bundle/bin/$name" ${KVQ_SERVICE_ARGS:-} \
            --markdown="$out/ab/service-$name-$round.md" \
            > /dev/null 2>> "$out/bench.log"
          rc=$?
          summary+="ab service $name round $round: rc=$rc"$'\n'
          [ $rc -eq 0 ] || status=1
          # The main table's rows, then the stage table's, tagged.
          sed '/^## Server stages/,$d' "$out/ab/service-$name-$round.md" \
            2>/dev/null | grep -E '^\| (put|get) ' |
            sed "s/^/$name $round /" >> "$out/ab/rows.txt"
          sed -n '/^## Server stages/,$p' "$out/ab/service-$name-$round.md" \
            2>/dev/null | grep -E '^\| (put|get) ' |
            sed "s/^/$name $round stages /" >> "$out/ab/rows.txt"
        done
        for name in ${KVQ_AB_KERNELS:-}; do
          for case_name in ${KVQ_AB_CASES:-}; do
            row=$(timeout 120 "$bundle/run" "$name" --case="$case_name" \
                    --repeats=30 2>> "$out/bench.log" |
                  grep -E '^\| (fp16|bf16|fp32) ')
            rc=$?
            [ $rc -eq 0 ] || { status=1; summary+="ab $name $case_name: no row"$'\n'; }
            printf '%s %s %s\n' "$name" "$round" "$row" >> "$out/ab/rows.txt"
          done
        done
      done
      summary+=$(cat "$out/ab/rows.txt")$'\n'
      tar -czf "$out/ab.tgz" -C "$out" ab
      ;;
    esac
  done
  echo "----- summary ($gpu)"
  printf '%s' "$summary"
  tail -3 "$out/bench.log" 2>/dev/null
  exit $status
}

case "$mode" in
  bundle) bundle_mode "$@" ;;
  run) run_mode "$@" ;;
  *) usage ;;
esac
