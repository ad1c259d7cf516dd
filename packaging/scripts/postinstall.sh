#!/bin/sh
# After install or upgrade (deb: configure; rpm: 1 or 2). DPKG_ROOT is set
# when dpkg installs into another root (dpkg --root), and empty otherwise.
set -e
root="${DPKG_ROOT:-}"

# The service user, from the sysusers.d file the package ships.
if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers --root="${root:-/}" "$root/usr/lib/sysusers.d/baremetal-agent.conf"
elif ! getent passwd baremetal-agent >/dev/null 2>&1; then
	useradd --system --user-group --home-dir /var/lib/baremetal-agent --no-create-home \
		--shell /usr/sbin/nologin --comment "baremetal-agent provisioning service" baremetal-agent
fi

# The config directory and file are readable by the service group and not
# by others: the token file lives there.
# The group is looked up in the target root's /etc/group, which is the
# host's own unless dpkg installs elsewhere.
gid="$(awk -F: '$1 == "baremetal-agent" {print $3}' "$root/etc/group")"
chown "root:$gid" "$root/etc/baremetal-agent" "$root/etc/baremetal-agent/config.yaml"
chmod 0750 "$root/etc/baremetal-agent"

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi

if [ ! -e "$root/etc/baremetal-agent/tokens" ]; then
	cat <<'MSG'
baremetal-agent: create the API token file before starting the service:
  umask 077; openssl rand -hex 32 > /etc/baremetal-agent/tokens
  chown baremetal-agent: /etc/baremetal-agent/tokens
then set boot-url in /etc/baremetal-agent/config.yaml and run
  systemctl enable --now baremetal-agent
(see /usr/share/doc/baremetal-agent/TOKENS.md)
MSG
fi
