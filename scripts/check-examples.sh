#!/usr/bin/env bash
# Every example passes `terraform fmt -check` and `terraform validate`
# against the provider built from this tree (dev_overrides: nothing is
# downloaded). Usage: scripts/check-examples.sh PROVIDER_BIN_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
bindir=$(cd "${1:-bin}" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
printf 'provider_installation {\n  dev_overrides {\n    "openbaremetal/baremetal" = "%s"\n  }\n  direct {}\n}\n' "$bindir" > "$scratch/dev.tfrc"
export TF_CLI_CONFIG_FILE=$scratch/dev.tfrc TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1

terraform fmt -check -recursive examples
n=0
for dir in examples/provider examples/resources/* examples/data-sources/* examples/ephemeral-resources/* examples/quickstart examples/etcd-cluster examples/modules/*; do
  work=$scratch/$(echo "$dir" | tr / _)
  mkdir -p "$work"
  cp -r "$dir/." "$work/"
  # The quickstart and the etcd cluster call ../modules/cluster: keep that
  # relative path valid.
  case $dir in
  examples/quickstart | examples/etcd-cluster)
    work=$scratch/tree/$(basename "$dir")
    mkdir -p "$scratch/tree" && cp -r "$dir" "$scratch/tree/" && cp -r examples/modules "$scratch/tree/"
    (cd "$work" && terraform get >/dev/null)
    ;;
  esac
  if ! grep -qs 'required_providers' "$work"/*.tf; then
    printf 'terraform {\n  required_providers {\n    baremetal = { source = "openbaremetal/baremetal" }\n  }\n}\n' > "$work/zz_providers.tf"
  fi
  if ! out=$(cd "$work" && terraform validate -no-color 2>&1); then
    echo "terraform validate failed in $dir:" >&2
    echo "$out" >&2
    exit 1
  fi
  n=$((n + 1))
done

# Reusable modules are in the Registry's layout: a README that documents
# every input and output, versions.tf, and examples/ that work from a fresh
# directory holding nothing but a copy of the module.
for mod in examples/modules/*/; do
  mod=${mod%/}
  for f in README.md main.tf variables.tf outputs.tf versions.tf; do
    [ -f "$mod/$f" ] || { echo "$mod: missing $f (registry module layout)" >&2; exit 1; }
  done
  for name in $(sed -nE 's/^(variable|output) "([^"]+)".*/\2/p' "$mod/variables.tf" "$mod/outputs.tf"); do
    grep -q "^| \`$name\` |" "$mod/README.md" || { echo "$mod/README.md: no row for input/output $name" >&2; exit 1; }
  done
  ls -d "$mod"/examples/*/ >/dev/null 2>&1 || { echo "$mod: no examples/ (registry module layout)" >&2; exit 1; }
  for ex in "$mod"/examples/*/; do
    ex=${ex%/}
    fresh=$scratch/fresh-$(basename "$mod")-$(basename "$ex")
    mkdir -p "$fresh" && cp -r "$mod" "$fresh/module"
    work=$fresh/module/examples/$(basename "$ex")
    if ! out=$({ cd "$work" && terraform get -no-color && terraform validate -no-color; } 2>&1); then
      echo "terraform validate failed in $ex (from a fresh directory):" >&2
      echo "$out" >&2
      exit 1
    fi
    n=$((n + 1))
  done
done
echo "examples: $n directories formatted and valid"
