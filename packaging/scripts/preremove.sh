#!/bin/sh
# Before removal: stop the service, but not on an upgrade (deb: "upgrade";
# rpm: $1 is 1 when another version stays installed).
set -e
case "$1" in
upgrade | 1) exit 0 ;;
esac
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	systemctl disable --now baremetal-agent.service >/dev/null 2>&1 || true
fi
