#!/usr/bin/env bash
# Unpacks Debian's cloud-init into DIR (default .cache/cloud-init) for the
# stock-template tests, which run its `cloud-init schema` from there
# (internal/boot/validators_test.go). Unpacked, not installed: installing
# the package enables its units, so the host's next boot would run
# cloud-init against the host, and it pulls in a DHCP client and ifupdown.
# Its Python modules come from Debian packages that .ci/run installs.
set -euo pipefail
dir=${1:-.cache/cloud-init}
[ -x "$dir/root/usr/bin/cloud-init" ] && exit 0
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/download.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt-get download fetches as the _apt user when it can
if id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
if ! (cd "$tmp" && apt-get download -q cloud-init); then
  apt-get update -q
  (cd "$tmp" && apt-get download -q cloud-init)
fi
rm -rf "$dir/root"
dpkg-deb -x "$tmp"/cloud-init_*.deb "$dir/root"
echo "cloud-init $(dpkg-deb -f "$tmp"/cloud-init_*.deb Version) unpacked into $dir/root"
