#!/usr/bin/env bash
# Builds (or reuses) the VM image of `make e2e-netem`: a Debian root file
# system made by debootstrap from Debian's packages only, with Debian's
# kernel (linux-image-amd64: sch_netem, veth, overlay, br_netfilter,
# nf_tables as modules), docker.io, iproute2 and iputils-ping, in a sparse
# ext4 image, plus that kernel and its initrd for qemu's -kernel/-initrd.
#
#   test/e2e/netem/vm-image.sh        # prints the image's directory on its last line
#
# The image is keyed by a hash of its inputs (this script, the guest files
# in test/e2e/netem/guest/, the suite, the package list) under
# $DSPLAB_NETEM_CACHE (/var/cache/dsplab-netem): a matching image is reused
# as it is; older keys are removed. Unattended, as root, no prompts; it
# installs what it needs on the host with apt-get (qemu-system-x86,
# qemu-utils, debootstrap, e2fsprogs) when missing.
#
# The chroot never sees the host's /dev: the build runs in a private mount
# namespace (unshare -m, private propagation) where the root file system's
# /dev is a tmpfs of its own with the few nodes debootstrap makes, so no
# package script can touch the host's devices; no service is started in
# the chroot (policy-rc.d answers 101).
#
# Built for speed from nothing (CI has no cache): dpkg unpacks without
# fsync (force-unsafe-io: the tree is throwaway until mkfs) and skips what
# a headless VM with virtio devices never uses (docs, man pages, locales;
# the kernel's sound, GPU, media, wireless, USB, SCSI, InfiniBand and
# physical-NIC drivers: 300 of its 391 MB of modules), and the initramfs
# is built once (not twice by the kernel's postinst and then the
# initramfs-tools trigger) with only the modules that mount the root disk
# (MODULES=list: virtio_pci, virtio_blk, ext4, crc32c).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${DSPLAB_NETEM_CACHE:-/var/cache/dsplab-netem}
suite=${DSPLAB_NETEM_SUITE:-bookworm}
size=${DSPLAB_NETEM_DISK:-8G}
packages=linux-image-amd64,systemd-sysv,udev,kmod,iproute2,iputils-ping,docker.io
log() { echo "vm-image: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot, mkfs)"; exit 1; }

key=$( {
	cat "$0" "$here"/guest/*
	echo "$suite $size $packages"
} | sha256sum | cut -c1-16)
out=$cache/$key
if [ -f "$out/ready" ]; then
	log "reusing $out (key $key)"
	echo "$out"
	exit 0
fi

need=()
for p in qemu-system-x86 qemu-utils debootstrap e2fsprogs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Debian mirror the host's apt already uses (no host is named here).
host_mirror() {
	{ cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" {print $2}'
	  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {print $2}'; } |
		grep -v security | grep '/debian/\?$' | head -1 || true
}
mirror=${DSPLAB_NETEM_MIRROR:-$(host_mirror)}
[ -n "$mirror" ] || { log "no Debian mirror in the host's apt sources: set DSPLAB_NETEM_MIRROR"; exit 1; }

mkdir -p "$cache"
tmp=$cache/$key.tmp
# A finished debootstrap (the long part) of the same key is resumed.
[ -f "$tmp/root/.dsplab-debootstrapped" ] || rm -rf "$tmp"
mkdir -p "$tmp/root/dev"
start=$(date +%s)
log "building $key ($suite, from $mirror) in $tmp"
# Everything mounted below lives in this private namespace and goes with it.
unshare -m --propagation private bash -euo pipefail -s "$tmp/root" "$suite" "$mirror" "$packages" "$here/guest" <<'BUILD'
root=$1 suite=$2 mirror=$3 packages=$4 guest=$5
# dpkg_trim ROOT: dpkg in ROOT writes without fsync and leaves out what
# this VM never uses (dpkg's own path-exclude; the kernel's depmod then
# indexes what is there).
dpkg_trim() {
	mkdir -p "$1/etc/dpkg/dpkg.cfg.d"
	{
		echo force-unsafe-io
		for p in /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale; do echo "path-exclude=$p/*"; done
		for d in sound drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/net/usb drivers/net/can \
			drivers/scsi drivers/usb drivers/infiniband drivers/iio drivers/staging drivers/hwmon drivers/hid drivers/comedi \
			drivers/mtd drivers/target drivers/mmc drivers/video drivers/ata drivers/isdn drivers/bluetooth \
			net/wireless net/mac80211 net/bluetooth; do
			echo "path-exclude=/lib/modules/*/kernel/$d/*"
			echo "path-exclude=/usr/lib/modules/*/kernel/$d/*"
		done
	} >"$1/etc/dpkg/dpkg.cfg.d/dsplab"
}
# initramfs_list ROOT: initramfs-tools in ROOT puts only the root disk's
# modules in the initramfs (a drop-in and a modules.d list, not its
# conffiles).
initramfs_list() {
	mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
	echo MODULES=list >"$1/etc/initramfs-tools/conf.d/dsplab"
	printf 'virtio_pci\nvirtio_blk\ncrc32c_generic\next4\n' >"$1/usr/share/initramfs-tools/modules.d/dsplab"
}
mount -t tmpfs -o mode=755,nosuid dsplab-dev "$root/dev"
if [ ! -f "$root/.dsplab-debootstrapped" ]; then
	echo "vm-image: $(date -u +%T) debootstrap (download and unpack)" >&2
	debootstrap --foreign --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2
	# No service starts in the chroot (docker.io's postinst would start dockerd).
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod +x "$root/usr/sbin/policy-rc.d"
	dpkg_trim "$root"
	initramfs_list "$root"
	echo "vm-image: $(date -u +%T) debootstrap --second-stage (install)" >&2
	# INITRD=No: the kernel's postinst builds no initramfs (built once below).
	chroot "$root" env INITRD=No /debootstrap/debootstrap --second-stage >&2
	touch "$root/.dsplab-debootstrapped"
fi
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod +x "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
inroot() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
echo dsplab-netem >"$root/etc/hostname"
echo "/dev/vda / ext4 rw,noatime 0 1" >"$root/etc/fstab"
install -m 755 "$guest/dsplab-job" "$root/usr/local/sbin/dsplab-job"
install -m 644 "$guest/dsplab-job.service" "$root/etc/systemd/system/dsplab-job.service"
install -D -m 644 "$guest/docker-tcp.conf" "$root/etc/systemd/system/docker.service.d/tcp.conf"
inroot systemctl enable dsplab-job.service docker.service containerd.service >&2
# A serial login prompt is of no use to a one-shot job; neither are the
# units that would run at every boot of a fresh overlay (ConditionNeedsUpdate,
# ConditionFirstBoot: hwdb, ldconfig, catalog; each seconds under TCG) nor
# the maintenance timers. A fixed machine-id: no first-boot setup.
inroot systemctl mask serial-getty@ttyS0.service getty@tty1.service systemd-hwdb-update.service ldconfig.service \
	systemd-journal-catalog-update.service systemd-update-done.service systemd-firstboot.service \
	apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer >&2 || true
inroot systemd-machine-id-setup >&2
# 9p and netem are modules; load the 9p ones early for the job's mounts.
printf '9p\n9pnet_virtio\nsch_netem\n' >"$root/etc/modules-load.d/dsplab.conf"
# The one initramfs (the initramfs-tools trigger may have built it already,
# with the list above; then it is not built again).
ls "$root"/boot/initrd.img-* >/dev/null 2>&1 || inroot update-initramfs -c -k all >&2
echo "vm-image: initramfs $(du -h "$root"/boot/initrd.img-* | cut -f1), $(du -sm "$root/lib/modules" | cut -f1) MB of modules" >&2
inroot apt-get clean
rm -f "$root/usr/sbin/policy-rc.d" "$root/.dsplab-debootstrapped"
umount "$root/proc"
umount "$root/dev"
BUILD
cp "$tmp"/root/boot/vmlinuz-* "$tmp/vmlinuz"
cp "$tmp"/root/boot/initrd.img-* "$tmp/initrd.img"
log "$(date -u +%T) packages installed ($(( $(date +%s) - start )) s); making the ext4 image"
truncate -s "$size" "$tmp/rootfs.img"
mkfs.ext4 -q -F -L dsplab-netem -d "$tmp/root" "$tmp/rootfs.img"
rm -rf "$tmp/root"
echo "$suite $packages" >"$tmp/inputs"
touch "$tmp/ready"
# Older keys are of no use any more.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name "$key.tmp" -exec rm -rf {} +
mv "$tmp" "$out"
log "built $out in $(( $(date +%s) - start )) s: $(du -sh --apparent-size "$out/rootfs.img" | cut -f1) apparent, $(du -sh "$out/rootfs.img" | cut -f1) used"
echo "$out"
