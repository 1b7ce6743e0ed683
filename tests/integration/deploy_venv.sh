#!/usr/bin/env bash
# Runs a deploy validation tool from the project's virtual environment
# (.venv/, made by scripts/setup; KVQ_VENV overrides), or fails saying how to
# get it.
#   deploy_venv.sh TOOL [ARGS...]
set -euo pipefail
root=${KVQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
venv=${KVQ_VENV:-$root/.venv}
tool=$1; shift
if [ ! -x "$venv/bin/$tool" ]; then
  echo "FAIL: $venv/bin/$tool not found: run ./scripts/setup" >&2
  exit 1
fi
exec "$venv/bin/$tool" "$@"
