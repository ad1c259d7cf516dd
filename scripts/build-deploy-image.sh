#!/usr/bin/env bash
# Builds the agent's deploy ramdisk: OUTDIR/vmlinuz and OUTDIR/initrd.img.
#
# The ramdisk is what an image deploy boots (DESIGN.md, "Two ways to install
# a machine", 2): it reports the machine's disks to the agent, streams the
# chosen image onto one while hashing it, writes a NoCloud config drive and
# calls back. deploy-image/init is the protocol; this script packs it.
#
# Same construction as the lab image (scripts/build-lab-image.sh): Debian's
# kernel, busybox-static, and the kernel's own NIC, disk and FAT modules,
# fetched with `apt-get download` (no root install, no dpkg state touched) and
# cached under OUTDIR/debs. Three tools come from Debian instead of busybox,
# with exactly the shared libraries they need (resolved by the packaged
# dynamic loader itself, so a missing one fails the build, not a deploy):
#   zstd    (package zstd)  - zstd-compressed images;
#   tee     (package coreutils) - the image stream's tees to the hasher and
#                             the byte counter: busybox's tee copies 1 KiB
#                             per read and write, coreutils' 8 KiB, and the
#                             syscalls and process switches per KiB were
#                             most of a deploy's time (BENCHMARKS.md,
#                             "Deploy ramdisk write throughput");
#   sfdisk  (package fdisk) - moving the GPT's backup header to the end of a
#                             disk larger than the image, and adding the
#                             config drive's partition to GPT or MBR.
# Kernel modules are copied with their dependencies (read from each module's
# .modinfo), in load order, since busybox insmod resolves none.
#
# Idempotent: a stamp records the .debs and the hashes of the repo inputs; when
# it matches and both outputs exist, the script does nothing.
#
# Usage: scripts/build-deploy-image.sh [OUTDIR]   (default .cache/deploy-image)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/.cache/deploy-image}"
mkdir -p "$out/debs"
out="$(cd "$out" && pwd)"
debs="$out/debs"

need() { command -v "$1" >/dev/null 2>&1 || { echo "build-deploy-image: $1 not found; install it (apt-get install $2)" >&2; exit 1; }; }
need apt-get apt
need apt-cache apt
need dpkg-deb dpkg
need cpio cpio
need gzip gzip
need xz xz-utils
need zstd zstd

kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 ~ /Depends:$/ && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

kpkg="$(kernel_package)"
if [ -z "$kpkg" ]; then
	echo "build-deploy-image: apt has no package lists; running apt-get update" >&2
	apt-get update -qq
	kpkg="$(kernel_package)"
fi
[ -n "$kpkg" ] || { echo "build-deploy-image: cannot resolve the kernel package behind linux-image-amd64" >&2; exit 1; }

# fetch PKG downloads PKG's .deb into the cache unless the candidate version is
# already there, and prints the .deb's path.
fetch() {
	local pkg="$1" ver file
	ver="$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2; exit }')"
	[ -n "$ver" ] && [ "$ver" != "(none)" ] || { echo "build-deploy-image: apt knows no candidate for $pkg" >&2; exit 1; }
	file="$(ls "$debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)"
	if [ -z "$file" ]; then
		echo "build-deploy-image: downloading $pkg $ver" >&2
		(cd "$debs" && apt-get download -q "$pkg=$ver" >&2)
		# Architecture-independent packages end in _all.deb.
		file="$(ls "$debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)"
	fi
	[ -n "$file" ] && [ -s "$file" ] || { echo "build-deploy-image: $pkg's .deb missing after apt-get download" >&2; exit 1; }
	echo "$file"
}

# The userland packages: busybox, then the two Debian tools and the libraries
# they link (libc6 brings the dynamic loader).
userland="busybox-static zstd fdisk coreutils libc6 libfdisk1 libsmartcols1 libblkid1 libuuid1 libreadline8 libtinfo6 zlib1g liblzma5 liblz4-1"
kdeb="$(fetch "$kpkg")"
udebs=()
for p in $userland; do udebs+=("$(fetch "$p")"); done

stamp="$(
	for f in "$kdeb" "${udebs[@]}"; do basename "$f"; done
	sha256sum "$here/deploy-image/init" "$here/lab-image/udhcpc.script" "$here/scripts/build-deploy-image.sh" | awk '{print $1}'
)"
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ]; then
	echo "build-deploy-image: $out is up to date ($kpkg)"
	exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$kdeb" "$work/kernel"
mkdir -p "$work/user"
for d in "${udebs[@]}"; do dpkg-deb -x "$d" "$work/user"; done

kver="${kpkg#linux-image-}"
moddir="$work/kernel/lib/modules/$kver/kernel"
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,etc,lib/modules,root,mnt}

# Modules: NICs (QEMU's e1000 and virtio-net, real e1000e/igb/ixgbe-class
# hardware is out of scope for the lab), disks (virtio-blk, virtio-scsi,
# AHCI/IDE through sd_mod, NVMe) and FAT with the code pages vfat mounts
# with. crct10dif/crc64-rocksoft are sd_mod's and t10-pi's crypto providers,
# loaded by name at run time, so no "depends=" names them. A module the
# kernel builds in is absent from the package and skipped.
wanted="e1000 virtio_pci virtio_net virtio_blk virtio_scsi ata_piix ahci crct10dif_generic crc64_rocksoft_generic sd_mod nvme vfat nls_cp437 nls_ascii nls_utf8 nls_iso8859_1"

# module_src NAME finds NAME.ko (maybe compressed; '-' and '_' are one in
# module names) in the kernel package.
module_src() {
	local pat="${1//[-_]/[-_]}"
	find "$moddir" -name "$pat.ko*" | head -n1
}
declare -A have=()
order=""
# add_module NAME copies NAME's dependencies, then NAME, decompressed (busybox
# insmod reads plain .ko), appending each to the load order once.
add_module() {
	local name="${1//-/_}" src dst dep
	[ -z "${have[$name]:-}" ] || return 0
	have[$name]=1
	src="$(module_src "$name")"
	[ -n "$src" ] || return 0
	dst="$work/mod/$name.ko"
	mkdir -p "$work/mod"
	case "$src" in
	*.xz) xz -dc "$src" >"$dst" ;;
	*.zst) zstd -qdc "$src" >"$dst" ;;
	*.gz) gzip -dc "$src" >"$dst" ;;
	*) cp "$src" "$dst" ;;
	esac
	for dep in $(tr '\0' '\n' <"$dst" | sed -n 's/^depends=//p' | head -n1 | tr ',' ' '); do
		add_module "$dep"
	done
	cp "$dst" "$root/lib/modules/$name.ko"
	order="$order $name"
}
for m in $wanted; do add_module "$m"; done
for m in e1000 virtio_net virtio_blk sd_mod vfat; do
	[ -f "$root/lib/modules/$m.ko" ] || { echo "build-deploy-image: module $m not found in $kpkg" >&2; exit 1; }
done
echo "$order" >"$root/lib/modules/order"

cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"

cp "$work/user/bin/busybox" "$root/bin/busybox"
"$root/bin/busybox" --list-full | while read -r applet; do
	[ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# Debian binaries and their libraries, at the paths the packaged loader
# searches. The loader lists what each binary needs from the packaged
# libraries only; "not found" there means a library package is missing above.
ldso="$work/user/lib64/ld-linux-x86-64.so.2"
[ -e "$ldso" ] || { echo "build-deploy-image: libc6 has no /lib64/ld-linux-x86-64.so.2" >&2; exit 1; }
libpath="$work/user/lib/x86_64-linux-gnu:$work/user/usr/lib/x86_64-linux-gnu"
mkdir -p "$root/lib64" "$root/lib/x86_64-linux-gnu"
cp -L "$ldso" "$root/lib64/ld-linux-x86-64.so.2"
for bin in usr/bin/zstd sbin/sfdisk usr/bin/tee; do
	[ -x "$work/user/$bin" ] || { echo "build-deploy-image: $bin missing from its package" >&2; exit 1; }
	libs="$("$ldso" --library-path "$libpath" --list "$work/user/$bin")"
	if grep -q 'not found' <<<"$libs"; then
		echo "build-deploy-image: $bin needs libraries no listed package holds:" >&2
		grep 'not found' <<<"$libs" >&2
		exit 1
	fi
	awk '$2 == "=>" && $3 ~ /^\// { print $3 }' <<<"$libs" | while read -r lib; do
		cp -L "$lib" "$root/lib/x86_64-linux-gnu/$(basename "$lib")"
	done
	# Replace busybox's applet of the same name, if any: these are the real
	# tools the init relies on.
	rm -f "$root/$bin" "$root/bin/$(basename "$bin")" "$root/sbin/$(basename "$bin")" "$root/usr/bin/$(basename "$bin")" "$root/usr/sbin/$(basename "$bin")"
	cp "$work/user/$bin" "$root/$bin"
done
# zstd must really decompress here, with the libraries packed, not the host's.
printf 'deploy-image zstd check\n' | zstd -q | "$root/lib64/ld-linux-x86-64.so.2" --library-path "$root/lib/x86_64-linux-gnu" "$root/usr/bin/zstd" -dc | grep -q 'deploy-image zstd check' ||
	{ echo "build-deploy-image: the packed zstd does not decompress" >&2; exit 1; }

# And tee must really copy to both its outputs.
printf 'deploy-image tee check\n' | "$root/lib64/ld-linux-x86-64.so.2" --library-path "$root/lib/x86_64-linux-gnu" "$root/usr/bin/tee" "$work/tee.out" | grep -q 'deploy-image tee check' &&
	grep -q 'deploy-image tee check' "$work/tee.out" || { echo "build-deploy-image: the packed tee does not copy" >&2; exit 1; }

install -m 0755 "$here/deploy-image/init" "$root/init"
install -m 0755 "$here/lab-image/udhcpc.script" "$root/etc/udhcpc.script"
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) | gzip -9n >"$work/initrd.img"

mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img"
echo "$stamp" >"$out/stamp"
echo "build-deploy-image: built $out/vmlinuz and $out/initrd.img ($kpkg, $(du -k "$out/initrd.img" | cut -f1) KiB initrd; modules:$order)"
