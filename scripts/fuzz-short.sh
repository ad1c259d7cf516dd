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
    # FuzzStockTemplateParams still finds an open defect of issue 17 (a
    # param with invalid UTF-8 does not survive a stock template's YAML
    # as given); its seeds run in go test, its fuzzing waits for the fix.
    if [ "$target" = FuzzStockTemplateParams ]; then
      echo "fuzz: $pkg $target skipped: open defect (invalid UTF-8 in params), issue 17"
      continue
    fi
    found=$((found + 1))
    echo "fuzz: $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
  done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
echo "fuzz: $found targets run"
