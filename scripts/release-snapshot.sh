#!/usr/bin/env bash
# Build every release artifact locally (no signing, no upload) with the
# pinned goreleaser, then check them: the Registry's names and checksums,
# baremetalctl's archives, and the agent's .deb and .rpm (the .deb installed
# into a scratch root). Usage: scripts/release-snapshot.sh GORELEASER_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
goreleaser=$1

# The package checks read .rpm files with rpm and install the .deb with
# dpkg and systemd-sysusers; systemd-analyze verifies the unit.
need=()
command -v rpm >/dev/null || need+=(rpm)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "release-snapshot: install ${need[*]} (Debian packages) first" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

"$goreleaser" release --snapshot --clean --skip=sign,publish
BAREMETAL_DIST=$PWD/dist BAREMETAL_REQUIRE_TOOLS=1 go test -count=1 -v -run 'TestRelease' ./packaging/
echo "release-snapshot: artifacts in dist/:"
ls -1 dist/*.zip dist/*.tar.gz dist/*.deb dist/*.rpm dist/*SHA256SUMS
