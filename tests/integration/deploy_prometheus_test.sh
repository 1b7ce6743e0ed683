#!/usr/bin/env bash
# deploy/prometheus: the config (with the rule files it loads) passes
# `promtool check config`, the rules pass `promtool check rules`, and the
# alert unit tests (deploy_alerts_test.yml) fire exactly as written there.
set -euo pipefail
root=${KVQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v promtool >/dev/null || {
  echo "FAIL: promtool not found: run ./scripts/setup (Debian package prometheus)" >&2
  exit 1; }
cd "$root"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/kvq-alerts.yml
promtool test rules "$here/deploy_alerts_test.yml"
echo "PASS: deploy/prometheus passes promtool"
