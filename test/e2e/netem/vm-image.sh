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
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${DSPLAB_NETEM_CACHE:-/var/cache/dsplab-netem}
suite=${DSPLAB_NETEM_SUITE:-bookworm}
size=${DSPLAB_NETEM_DISK:-8G}
packages=linux-image-amd64,systemd-sysv,udev,kmod,iproute2,iputils-ping,procps,docker.io,ca-certificates
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
mount -t tmpfs -o mode=755,nosuid dsplab-dev "$root/dev"
if [ ! -f "$root/.dsplab-debootstrapped" ]; then
	debootstrap --foreign --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2
	# No service starts in the chroot (docker.io's postinst would start dockerd).
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod +x "$root/usr/sbin/policy-rc.d"
	chroot "$root" /debootstrap/debootstrap --second-stage >&2
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
# A serial login prompt is of no use to a one-shot job.
inroot systemctl mask serial-getty@ttyS0.service getty@tty1.service >&2 || true
# 9p and netem are modules; load the 9p ones early for the job's mounts.
printf '9p\n9pnet_virtio\nsch_netem\n' >"$root/etc/modules-load.d/dsplab.conf"
inroot apt-get clean
rm -f "$root/usr/sbin/policy-rc.d" "$root/.dsplab-debootstrapped"
umount "$root/proc"
umount "$root/dev"
BUILD
cp -L "$tmp/root/vmlinuz" "$tmp/vmlinuz"
cp -L "$tmp/root/initrd.img" "$tmp/initrd.img"
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
