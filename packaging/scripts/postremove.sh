#!/bin/sh
# After removal. The data dir (/var/lib/baremetal-agent: the store with its
# sealed BMC passwords and seal key) and the user are kept, so a reinstall
# finds its machines again; remove them by hand when retiring the site.
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
