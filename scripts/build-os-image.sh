#!/usr/bin/env bash
# Builds the lab's real operating system: a Debian 12 (bookworm) raw disk
# image that boots under BIOS (SeaBIOS) and UEFI (OVMF) alike, with cloud-init
# reading a NoCloud config drive, etcd, openssh-server and curl.
#
# Outputs, in OUTDIR (default .cache/os-image):
#   debian-12-amd64.raw          the disk image (sparse)
#   debian-12-amd64.raw.sha256   its sha256, in `sha256sum -c` format
#   debian-12-amd64.raw.zst      zstd copy (+ .sha256 of the compressed file)
#   debian-12-amd64.qcow2        qcow2 copy (+ .sha256)
#   debian-12-amd64.manifest     partition layout, UUIDs, package versions
#
# Disk layout (GPT, 1 MiB aligned; the root filesystem is last so it can grow
# into space behind it):
#   1  BIOS boot   1 MiB    grub's i386-pc core.img (boot.img in the MBR)
#   2  ESP       100 MiB    FAT32 label ESP, EFI/BOOT/BOOTX64.EFI (removable path)
#   3  root                 ext4 label debian-root, found by filesystem UUID
# Both grub images find the root filesystem by its UUID and read
# /boot/grub/grub.cfg there, which boots /vmlinuz and /initrd.img (the
# symlinks Debian's kernel packages keep current) with a serial console on
# ttyS0; grub itself is not installed in the image.
#
# No loop devices or mounts: mmdebstrap builds the root tree in a directory,
# `mke2fs -d` turns it into an ext4 filesystem, mtools fills the ESP, sgdisk
# partitions the image file, and boot.img/core.img are written into the image
# the way grub-bios-setup would (it cannot target a plain file).
#
# Idempotent: a stamp records the hashes of this script and os-image/; when it
# matches and the outputs exist the script does nothing. The mirror's package
# versions are not part of the stamp (checking them would need the network on
# every run): OS_IMAGE_REBUILD=1 forces a build with today's packages.
# Downloaded .debs are kept in OUTDIR/debs, so a forced rebuild downloads only
# what changed.
#
# Usage: scripts/build-os-image.sh [OUTDIR]   (as root; Debian 12 host)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/.cache/os-image}"
name=debian-12-amd64
suite=bookworm
mirror="${OS_IMAGE_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${OS_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
packages=(
	linux-image-amd64 initramfs-tools zstd e2fsprogs
	systemd systemd-sysv systemd-resolved udev dbus
	cloud-init openssh-server curl ca-certificates sudo
	etcd-server etcd-client
	iproute2 iputils-ping netbase procps less
)
esp_mib=100

log() { echo "build-os-image: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap's root mode and device nodes in the image need it)"

mkdir -p "$out/debs"
out="$(cd "$out" && pwd)"

stamp="$(
	printf '%s\n' "$suite" "$mirror" "$security_mirror" "${packages[*]}" "$esp_mib"
	sha256sum "$here/scripts/build-os-image.sh" | awk '{print $1}'
	(cd "$here/os-image" && find . -type f | LC_ALL=C sort | xargs sha256sum)
)"
outputs=("$out/$name.raw" "$out/$name.raw.sha256" "$out/$name.raw.zst" "$out/$name.qcow2" "$out/$name.manifest")
uptodate=1
for f in "${outputs[@]}"; do [ -s "$f" ] || uptodate=0; done
if [ "$uptodate" = 1 ] && [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -z "${OS_IMAGE_REBUILD:-}" ]; then
	log "$out/$name.raw is up to date"
	exit 0
fi

# Build dependencies: installed from Debian when missing.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_file() { [ -e "$1" ] || missing+=("$2"); }
need mmdebstrap mmdebstrap
need sgdisk gdisk
need mke2fs e2fsprogs
need mkfs.vfat dosfstools
need mcopy mtools
need grub-mkimage grub-common
need_file /usr/lib/grub/i386-pc/boot.img grub-pc-bin
need_file /usr/lib/grub/x86_64-efi/linux.mod grub-efi-amd64-bin
need zstd zstd
need qemu-img qemu-utils
if [ ${#missing[@]} -gt 0 ]; then
	log "installing build dependencies: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

started=$(date +%s)
work="$(mktemp -d "$out/.build.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
rootfs="$work/rootfs"

root_uuid="$(cat /proc/sys/kernel/random/uuid)"
esp_volid="$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
esp_uuid="$(printf '%s-%s' "${esp_volid:0:4}" "${esp_volid:4:4}" | tr a-f A-F)"
root_label=debian-root

# 1. The root tree. Recommends are off (mmdebstrap's default); documentation,
# man pages and translations are never unpacked (the exclusions stay in the
# image's dpkg config, so later installs stay small too).
log "mmdebstrap $suite into $rootfs (packages: ${packages[*]})"
grub_cfg="$work/grub.cfg"
cat >"$grub_cfg" <<EOF
set timeout=1
set default=0
serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1
terminal_input serial console
terminal_output serial console
menuentry 'Debian GNU/Linux 12' {
	search --no-floppy --fs-uuid --set=root $root_uuid
	linux /vmlinuz root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200n8
	initrd /initrd.img
}
EOF
# fstab goes in before the packages so that the kernel's initramfs is built
# against the real root entry. The initramfs still boots without fsck ("fsck
# not present", its hook cannot probe the root device from a chroot): root is
# mounted read-only and systemd-fsck-root checks it before the remount.
cat >"$work/fstab" <<EOF
# The root filesystem by UUID: the disk is virtio in the lab, SATA or NVMe on hardware.
UUID=$root_uuid / ext4 errors=remount-ro 0 1
EOF
mmdebstrap --mode=root --variant=minbase --format=directory \
	--include="$(IFS=,; echo "${packages[*]}")" \
	--aptopt='Acquire::Retries "3"' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--skip=essential/unlink \
	--setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
	--setup-hook="sync-in '$out/debs' /var/cache/apt/archives/" \
	--setup-hook="cp -r '$here/os-image/overlay/.' \"\$1/\"" \
	--setup-hook="cp '$work/fstab' \"\$1/etc/fstab\"" \
	--customize-hook="sync-out /var/cache/apt/archives '$out/debs'" \
	--customize-hook='chroot "$1" systemctl enable systemd-networkd.service systemd-resolved.service' \
	--customize-hook='chroot "$1" systemctl disable etcd.service' \
	"$suite" "$rootfs" \
	"deb $mirror $suite main" \
	"deb $mirror $suite-updates main" \
	"deb $security_mirror $suite-security main" >&2

# 2. Per-machine identity removed; caches and logs emptied.
log "cleaning the root tree"
[ -L "$rootfs/vmlinuz" ] && [ -L "$rootfs/initrd.img" ] || die "the kernel package left no /vmlinuz and /initrd.img symlinks"
[ -e "$rootfs/$(readlink "$rootfs/initrd.img")" ] || die "no initramfs was generated"
install -d "$rootfs/boot/grub"
cp "$grub_cfg" "$rootfs/boot/grub/grub.cfg"
echo debian >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' >"$rootfs/etc/hosts"
# An empty machine-id (not a missing one) makes systemd generate a fresh one
# and treat the boot as a first boot.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$rootfs/var/lib/dbus/machine-id"
rm -f "$rootfs"/etc/ssh/ssh_host_*
rm -rf "$rootfs"/var/lib/cloud/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
	"$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
	"$rootfs"/tmp/* "$rootfs"/var/tmp/*
find "$rootfs/var/log" -type f -exec truncate -s 0 {} +
# systemd-resolved makes resolv.conf a link to its stub; mmdebstrap may have
# left the build host's file in its place.
ln -sf ../run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
kernel="$(basename "$(readlink "$rootfs/vmlinuz")")"
chroot "$rootfs" dpkg-query -W -f '${Package} ${Version}\n' >"$work/packages"

# 3. The root filesystem: sized to its content plus headroom, populated
# without mounting. metadata_csum_seed and orphan_file are refused by grub 2.06,
# so they stay off whatever this e2fsprogs defaults to.
used_mib=$(du -s -B1M "$rootfs" | awk '{print $1}')
root_mib=$(( (used_mib * 5 / 4 + 384 + 63) / 64 * 64 ))
log "root tree uses ${used_mib} MiB; root filesystem ${root_mib} MiB"
mke2fs -q -F -t ext4 -O ^metadata_csum_seed,^orphan_file -L "$root_label" -U "$root_uuid" \
	-E root_owner=0:0 -d "$rootfs" "$work/root.ext4" "${root_mib}M"
e2fsck -fn "$work/root.ext4" >/dev/null || die "e2fsck found errors in the root filesystem"

# 4. Grub: an early config embedded in both images finds the root filesystem
# by UUID; grub.cfg there does the rest. Modules are built in, so the image
# needs no /boot/grub/<platform> directory.
cat >"$work/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $root_uuid
set prefix=(\$root)/boot/grub
EOF
common_mods="part_gpt ext2 fat search search_fs_uuid search_label normal configfile linux echo test serial terminal gzio ls cat reboot halt"
grub-mkimage -O i386-pc -o "$work/core.img" -p /boot/grub -c "$work/early.cfg" biosdisk $common_mods
grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -p /boot/grub -c "$work/early.cfg" $common_mods efi_gop efi_uga all_video

# 5. The ESP (FAT32, EFI/BOOT/BOOTX64.EFI: the path firmware boots without
# any boot entry, as on a fresh disk).
mkfs.vfat -F 32 -n ESP -i "$esp_volid" -C "$work/esp.fat" $((esp_mib * 1024)) >/dev/null
mmd -i "$work/esp.fat" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.fat" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

# 6. The disk: GPT with the three partitions, 1 MiB free at the end for the
# backup GPT.
bios_start=2048
esp_start=4096
root_start=$(( esp_start + esp_mib * 2048 ))
root_sectors=$(( root_mib * 2048 ))
total_sectors=$(( root_start + root_sectors + 2048 ))
raw="$work/$name.raw"
truncate -s $(( total_sectors * 512 )) "$raw"
sgdisk --clear \
	-n 1:$bios_start:+1M -t 1:EF02 -c 1:bios-boot \
	-n 2:$esp_start:+${esp_mib}M -t 2:EF00 -c 2:ESP \
	-n 3:$root_start:+${root_mib}M -t 3:8304 -c 3:root \
	"$raw" >/dev/null
sgdisk -v "$raw" | grep -q 'No problems found' || die "sgdisk reports problems with the partition table"
dd if="$work/esp.fat" of="$raw" bs=1M seek=$(( esp_start / 2048 )) conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$raw" bs=1M seek=$(( root_start / 2048 )) conv=notrunc,sparse status=none

# 7. BIOS boot, as grub-bios-setup does it for a GPT disk (which needs a
# device, not a file): core.img goes into the BIOS boot partition, its first
# sector (diskboot) gets the block list of the rest; boot.img goes into the
# MBR keeping the protective MBR's partition table and told where core.img is.
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ "$core_sectors" -le 2048 ] || die "core.img ($core_sectors sectors) does not fit the 1 MiB BIOS boot partition"
le() { # le VALUE BYTES: VALUE as BYTES little-endian bytes, printf-escaped
	local v=$1 n=$2 s=""
	for ((i = 0; i < n; i++)); do s+="$(printf '\\x%02x' $(( (v >> (8 * i)) & 255 )))"; done
	printf '%s' "$s"
}
patch() { # patch FILE OFFSET ESCAPED-BYTES
	printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
cp "$work/core.img" "$work/core.patched"
# Block list entry at the end of diskboot's sector: start (8), length (2),
# load segment (2, 0x820 already). The entry below it stays the terminator.
patch "$work/core.patched" 500 "$(le $(( bios_start + 1 )) 8)$(le $(( core_sectors - 1 )) 2)"
dd if="$work/core.patched" of="$raw" bs=512 seek=$bios_start conv=notrunc status=none
mbr="$work/mbr"
cp /usr/lib/grub/i386-pc/boot.img "$mbr"
dd if="$raw" of="$mbr" bs=1 skip=3 seek=3 count=$(( 0x5a - 3 )) conv=notrunc status=none       # BPB area of the disk
dd if="$raw" of="$mbr" bs=1 skip=$((0x1b8)) seek=$((0x1b8)) count=$(( 0x1fe - 0x1b8 )) conv=notrunc status=none # disk signature + partition table
patch "$mbr" $((0x5c)) "$(le $bios_start 8)" # kernel sector: where core.img starts
patch "$mbr" $((0x64)) '\xff'                 # boot drive: the one the BIOS says
patch "$mbr" $((0x66)) '\x90\x90'             # no drive check: some BIOSes pass a wrong drive number
dd if="$mbr" of="$raw" bs=512 count=1 conv=notrunc status=none
sgdisk -v "$raw" | grep -q 'No problems found' || die "the MBR write damaged the partition table"

# 8. Outputs: sha256, zstd and qcow2 copies, and a manifest for the deploy side.
log "writing checksums and compressed copies"
(cd "$work" && sha256sum "$name.raw" >"$name.raw.sha256")
zstd -q -T0 -6 --sparse -o "$work/$name.raw.zst" "$raw" 2>/dev/null || zstd -q -T0 -6 -o "$work/$name.raw.zst" "$raw"
(cd "$work" && sha256sum "$name.raw.zst" >"$name.raw.zst.sha256")
qemu-img convert -f raw -O qcow2 "$raw" "$work/$name.qcow2"
(cd "$work" && sha256sum "$name.qcow2" >"$name.qcow2.sha256")
{
	echo "image: $name.raw"
	echo "size_bytes: $(stat -c %s "$raw")"
	echo "sha256: $(awk '{print $1}' "$work/$name.raw.sha256")"
	echo "kernel: $kernel"
	echo "root_fs_uuid: $root_uuid"
	echo "root_fs_label: $root_label"
	echo "esp_fs_uuid: $esp_uuid"
	echo "kernel_cmdline: root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200n8"
	echo "cloud_init_datasources: NoCloud, None"
	echo "partitions:"
	sgdisk -p "$raw" | sed -n '/^Number/,$p' | sed 's/^/  /'
	echo "packages:"
	sed 's/^/  /' "$work/packages"
} >"$work/$name.manifest"

for f in "$name.raw" "$name.raw.sha256" "$name.raw.zst" "$name.raw.zst.sha256" "$name.qcow2" "$name.qcow2.sha256" "$name.manifest"; do
	mv -f "$work/$f" "$out/$f"
done
echo "$stamp" >"$out/stamp"
log "built $out/$name.raw in $(( $(date +%s) - started )) s: raw $(du -h --apparent-size "$out/$name.raw" | cut -f1) (allocated $(du -h "$out/$name.raw" | cut -f1)), zst $(du -h "$out/$name.raw.zst" | cut -f1), qcow2 $(du -h "$out/$name.qcow2" | cut -f1); root UUID $root_uuid"
