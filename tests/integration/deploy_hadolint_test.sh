#!/usr/bin/env bash
# The Dockerfile passes hadolint with no finding at any level (style and up);
# the only rule waived is the one the Dockerfile waives inline, with its reason.
set -euo pipefail
root=${KVQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
here=$(dirname "${BASH_SOURCE[0]}")
cd "$root"
"$here/deploy_venv.sh" hadolint --version
"$here/deploy_venv.sh" hadolint --no-color --failure-threshold style Dockerfile
echo "PASS: Dockerfile: no hadolint findings"
