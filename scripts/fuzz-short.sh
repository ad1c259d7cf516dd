#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short budget ($1: executions
# such as 20000x, or a duration; default 20000x).
# The committed seed corpora also run as plain tests in `go test`.
set -euo pipefail
fuzztime=${1:-20000x}
cd "$(dirname "$0")/.."
found=0
while IFS= read -r file; do
  pkg="./$(dirname "$file")"
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
    found=$((found + 1))
    budget=$fuzztime
    # Each input of FuzzStockTemplateParams goes through pykickstart, about
    # 40 inputs a second on 2 cores against thousands for the others.
    [ "$target" != FuzzStockTemplateParams ] || budget=${FUZZTIME_EXTERNAL:-4000x}
    echo "fuzz: $pkg $target ($budget)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$budget" "$pkg"
  done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
echo "fuzz: $found targets run"
