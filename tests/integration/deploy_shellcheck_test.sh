#!/usr/bin/env bash
# Every shell script of the project (a bash or sh shebang, anywhere but the
# archived results) passes shellcheck with no finding at any level: the
# scripts CI, the Dockerfile and the GPU runs depend on stay free of the
# quoting and word-splitting bugs it finds.
set -euo pipefail
root=${KVQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"
scripts=()
while IFS= read -r -d '' file; do
  if head -n 1 "$file" | grep -Eq '^#!.*\b(bash|sh)\b'; then
    scripts+=("$file")
  fi
done < <(find .ci scripts bench tests deploy -type f -not -path 'bench/results/*' \
           -not -name '*.md' -print0)
if [ ${#scripts[@]} -eq 0 ]; then
  echo "FAIL: no shell scripts found under $root" >&2
  exit 1
fi
"$here/deploy_venv.sh" shellcheck --version
"$here/deploy_venv.sh" shellcheck --severity=style "${scripts[@]}"
echo "PASS: ${#scripts[@]} shell scripts: no shellcheck findings"
