#!/bin/sh
# Installs the benchmark's peer servers from Debian, only the ones missing.
# The benchmark starts its own instances on loopback ports with generated
# config in a temp dir, so the system services the packages start are
# stopped again: they would only compete for the CPUs being measured.
set -eu

missing=""
command -v in.tftpd >/dev/null 2>&1 || [ -x /usr/sbin/in.tftpd ] || missing="$missing tftpd-hpa"
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing="$missing dnsmasq-base"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
# TFTP clients other than curl, for the real-client check of bootbench.
command -v atftp >/dev/null 2>&1 || missing="$missing atftp"
command -v tftp >/dev/null 2>&1 || missing="$missing tftp-hpa"

if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		SUDO=sudo
	else
		SUDO=
	fi
	echo "bench/setup.sh: installing$missing" >&2
	$SUDO apt-get update -qq
	# dnsmasq-base rather than dnsmasq: the latter starts a system DNS service.
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
	for svc in tftpd-hpa nginx; do
		if [ -x "/etc/init.d/$svc" ]; then
			$SUDO service "$svc" stop >/dev/null 2>&1 || true
		fi
		if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
			$SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
		fi
	done
fi
