#!/usr/bin/env bash
# Fifteenth session, call 3. Call 2's staged kernel (first step direct)
# gained from 256 MiB (FP16 group32 87% -> 92%, 2 GiB 89% -> 94%) and lost
# at 32-64 MiB (FP16 group32 64 MiB 90-91% -> 85%, FP32 94% -> 87-88%),
# where a CTA takes 2-5 steps. Between them: where does staging start to
# pay, in steps per CTA? 3 alternating rounds, main against the staged
# build (kvq-bench-kernels, staged for every one-vector-lane launch), on
# inputs of 7.8 to 20.7 steps for the busiest of 396 CTAs. No tests: the
# kernels are call 2's, whose tests passed.
# Here: bench/run-device.sh bundle build .device /tmp/ab/kvq-bench-kernels-main,
#   this script into .device/bin, tar -cJf .device.tar.xz .device
# There: tar -xJf .device.tar.xz && .device/bin/call3-staging-threshold.sh
set -u
b=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
work=$(mktemp -d)
mkdir -p "$work/ab"
KVQ_AB_ROUNDS=3 KVQ_AB_KERNELS="kvq-bench-kernels-main kvq-bench-kernels" \
KVQ_AB_CASES="fp16:group32:1x49152x8x128 fp16:group32:1x65536x8x128 \
fp16:group32:1x98304x8x128 bf16:group32:1x65536x8x128 \
fp16:per_token_head:1x131072x8x64 fp16:per_token_head:1x196608x8x64 \
fp32:group32:1x32768x8x128 fp32:group32:1x65536x8x128" \
  OUT="$work/ab" timeout 400 bench/run-device.sh run --bundle="$b" ab \
  > "$work/ab/summary.txt" 2>&1
echo "ab rc=$?" >> "$work/ab/summary.txt"
cp "$work/ab/summary.txt" "$out/summary.txt"
tar -cJf "$out/all.tar.xz" -C "$work" .
cat "$out/summary.txt"
