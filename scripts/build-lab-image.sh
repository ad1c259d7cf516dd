#!/usr/bin/env bash
# Builds the lab's installer boot image: OUTDIR/vmlinuz and OUTDIR/initrd.img.
#
# The kernel is Debian's own (the package linux-image-amd64 currently depends
# on), so QEMU boots the same kernel a real Debian host would; the initrd is
# busybox-static plus e1000.ko from that same kernel package (QEMU's
# `-device e1000` NIC; the module must match the kernel exactly) and the
# installer script lab-image/init. Nothing binary is committed: everything is
# fetched with `apt-get download` (no root install, no dpkg state touched) and
# cached under OUTDIR/debs, so a rebuild works offline once the .debs are there.
#
# Idempotent: a stamp records the .debs and the hashes of the repo inputs; when
# it matches and both outputs exist, the script does nothing.
#
# Usage: scripts/build-lab-image.sh [OUTDIR]   (default .cache/lab-image)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/.cache/lab-image}"
mkdir -p "$out/debs"
out="$(cd "$out" && pwd)"
debs="$out/debs"

need() { command -v "$1" >/dev/null 2>&1 || { echo "build-lab-image: $1 not found; install it (apt-get install $2)" >&2; exit 1; }; }
need apt-get apt
need apt-cache apt
need dpkg-deb dpkg
need cpio cpio
need gzip gzip

# kernel_package prints the versioned kernel package linux-image-amd64 depends
# on (e.g. linux-image-6.1.0-56-amd64), or nothing when apt has no lists.
kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 ~ /Depends:$/ && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

kpkg="$(kernel_package)"
if [ -z "$kpkg" ]; then
	echo "build-lab-image: apt has no package lists; running apt-get update" >&2
	apt-get update -qq
	kpkg="$(kernel_package)"
fi
[ -n "$kpkg" ] || { echo "build-lab-image: cannot resolve the kernel package behind linux-image-amd64" >&2; exit 1; }

# fetch PKG downloads PKG's .deb into the cache unless the candidate version is
# already there, and prints the .deb's path.
fetch() {
	local pkg="$1" ver file
	ver="$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2; exit }')"
	[ -n "$ver" ] && [ "$ver" != "(none)" ] || { echo "build-lab-image: apt knows no candidate for $pkg" >&2; exit 1; }
	# .deb file names encode an epoch's ':' as %3a.
	file="$debs/${pkg}_${ver//:/%3a}_amd64.deb"
	if [ ! -s "$file" ]; then
		echo "build-lab-image: downloading $pkg $ver" >&2
		(cd "$debs" && apt-get download -q "$pkg=$ver" >&2)
	fi
	[ -s "$file" ] || { echo "build-lab-image: $file missing after apt-get download" >&2; exit 1; }
	echo "$file"
}

kdeb="$(fetch "$kpkg")"
bdeb="$(fetch busybox-static)"

stamp="$(printf '%s\n' "$(basename "$kdeb")" "$(basename "$bdeb")" \
	"$(sha256sum "$here/lab-image/init" "$here/lab-image/udhcpc.script" "$here/scripts/build-lab-image.sh" | awk '{print $1}')")"
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ]; then
	echo "build-lab-image: $out is up to date ($kpkg)"
	exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$kdeb" "$work/kernel"
dpkg-deb -x "$bdeb" "$work/busybox"

kver="${kpkg#linux-image-}"
moddir="$work/kernel/lib/modules/$kver/kernel"
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,etc,lib/modules,root}

# module_file NAME finds NAME.ko (maybe compressed) in the kernel package and
# copies it, decompressed, into the initrd; busybox insmod reads plain .ko.
add_module() {
	local name="$1" src
	src="$(find "$moddir" -name "$name.ko" -o -name "$name.ko.xz" -o -name "$name.ko.zst" -o -name "$name.ko.gz" | head -n1)"
	[ -n "$src" ] || return 1
	case "$src" in
	*.xz) xz -dc "$src" >"$root/lib/modules/$name.ko" ;;
	*.zst) zstd -qdc "$src" >"$root/lib/modules/$name.ko" ;;
	*.gz) gzip -dc "$src" >"$root/lib/modules/$name.ko" ;;
	*) cp "$src" "$root/lib/modules/$name.ko" ;;
	esac
}
add_module e1000 || { echo "build-lab-image: e1000 module not found in $kpkg" >&2; exit 1; }
# Disk drivers and virtio-net, in load order, so the installer can write its
# marker to a virtio or IDE/SATA disk when the lab gives the VM one, and can
# reach the agent through a virtio NIC (the lab's VMs that PXE boot with the
# UEFI firmware's own network stack have one, since QEMU's e1000 carries an
# iPXE ROM that would take over). Any that the kernel
# builds in are simply absent from the package; init loads what it finds.
modules="e1000"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk failover net_failover virtio_net \
	scsi_common scsi_mod libata ata_piix libahci ahci \
	crct10dif_common crct10dif_generic crc-t10dif crc64 crc64-rocksoft_generic crc64-rocksoft t10-pi sd_mod; do
	if add_module "$m"; then modules="$modules $m"; fi
done
echo "$modules" >"$root/lib/modules/order"

cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"

cp "$work/busybox/bin/busybox" "$root/bin/busybox"
# One symlink per applet, at the path busybox itself reports.
"$root/bin/busybox" --list-full | while read -r applet; do
	[ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
install -m 0755 "$here/lab-image/init" "$root/init"
install -m 0755 "$here/lab-image/udhcpc.script" "$root/etc/udhcpc.script"
# The kernel opens /dev/console before running init; without the node the
# installer's output would go nowhere until devtmpfs is mounted.
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) | gzip -9n >"$work/initrd.img"

mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img"
echo "$stamp" >"$out/stamp"
echo "build-lab-image: built $out/vmlinuz and $out/initrd.img ($kpkg; modules: $modules)"
