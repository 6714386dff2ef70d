#!/usr/bin/env bash
# Boots the netem VM (test/e2e/netem/vm-image.sh) once, runs one job in it and
# powers it off:
#
#   test/e2e/netem/vm-run.sh JOBDIR
#
# JOBDIR/run.sh is run as root inside the VM (bash, cwd /job) once dockerd
# is ready; its output comes back in JOBDIR/log, its exit code in JOBDIR/rc
# and the VM's serial console in JOBDIR/console.log. This script exits
# with the job's code, or non-zero when the VM does not boot (no ready
# dockerd within NETEM_BOOT_TIMEOUT), the whole run passes NETEM_TIMEOUT,
# or no exit code came back.
#
# The VM: Debian's kernel and root file system (a throwaway qcow2 overlay
# on the cached image, so every run starts from the same disk), qemu's
# user network with restrict=on (no route out of the machine) and hostfwd
# on 127.0.0.1 only (NETEM_HOSTFWD, e.g. "tcp:127.0.0.1:24375-:2375"),
# virtio-9p folders: job (JOBDIR, read-write), src (the checkout,
# read-only), images (NETEM_IMAGES: image tarballs, read-only).
#
# Acceleration: NETEM_ACCEL=auto (default) boots Debian's kernel under KVM
# for at most 60 s first and uses KVM only if it really ran (a /dev/kvm
# that cannot run a stock kernel, such as PVM, hangs in decompression);
# otherwise TCG with a thread per vCPU. The log says which ran.
#
# Other knobs: NETEM_CPUS (2), NETEM_MEM (MiB, 3072), NETEM_TIMEOUT (s,
# 2400), NETEM_BOOT_TIMEOUT (s, 600), NETEM_SRC (the checkout),
# NETEM_IMAGE_DIR (vm-image.sh's output; built or reused if unset).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
job=$(cd "${1:?usage: vm-run.sh JOBDIR}" && pwd)
[ -f "$job/run.sh" ] || { echo "vm-run: $job/run.sh is missing" >&2; exit 2; }
src=${NETEM_SRC:-$(cd "$here/../../.." && pwd)}
cpus=${NETEM_CPUS:-2}
mem=${NETEM_MEM:-3072}
total=${NETEM_TIMEOUT:-2400}
boot=${NETEM_BOOT_TIMEOUT:-600}
log() { echo "vm-run: $(date -u +%T) $*" >&2; }

img=${NETEM_IMAGE_DIR:-$("$here/vm-image.sh" | tail -1)}
for f in rootfs.img vmlinuz initrd.img; do
	[ -f "$img/$f" ] || { log "no $img/$f: run test/e2e/netem/vm-image.sh"; exit 2; }
done

run=$(mktemp -d "${TMPDIR:-/tmp}/dsplab-netem-run.XXXXXX")
qpid=
cleanup() {
	[ -n "$qpid" ] && kill -9 "$qpid" 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT
rm -f "$job/rc" "$job/log" "$job/ready" "$job/console.log"

# probe_kvm: Debian's kernel under KVM with no root file system panics
# ("VFS: Unable to mount root fs") within seconds where KVM really works.
probe_kvm() {
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || { log "no usable /dev/kvm"; return 1; }
	local out
	out=$(timeout -k 5 60 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults -display none -no-reboot \
		-serial stdio -kernel "$img/vmlinuz" -append "console=ttyS0 panic=-1" 2>&1 || true)
	if grep -q "Unable to mount root fs\|Kernel panic" <<<"$out"; then
		return 0
	fi
	log "KVM did not run Debian's kernel within 60 s (last console line: $(tail -1 <<<"$out" | tr -d '\r'))"
	return 1
}
case ${NETEM_ACCEL:-auto} in
kvm) accel=(-accel kvm -cpu host) ;;
tcg) accel=(-accel tcg,thread=multi -cpu max) ;;
auto) if probe_kvm; then accel=(-accel kvm -cpu host); else accel=(-accel tcg,thread=multi -cpu max); fi ;;
*) log "NETEM_ACCEL must be auto, kvm or tcg"; exit 2 ;;
esac
log "accelerator: ${accel[1]} ($cpus vCPUs, $mem MiB)"

qemu-img create -q -f qcow2 -b "$img/rootfs.img" -F raw "$run/disk.qcow2"
net="user,id=n0,restrict=on"
if [ -n "${NETEM_HOSTFWD:-}" ]; then
	IFS=, read -ra fwds <<<"$NETEM_HOSTFWD"
	for f in "${fwds[@]}"; do
		[[ $f == tcp:127.0.0.1:* ]] || { log "NETEM_HOSTFWD: $f must bind tcp:127.0.0.1 (loopback only)"; exit 2; }
		net="$net,hostfwd=$f"
	done
fi
share=(-virtfs "local,path=$job,mount_tag=job,security_model=none,id=job")
share+=(-virtfs "local,path=$src,mount_tag=src,security_model=none,readonly=on,id=src")
[ -n "${NETEM_IMAGES:-}" ] && share+=(-virtfs "local,path=$NETEM_IMAGES,mount_tag=images,security_model=none,readonly=on,id=images")

start=$(date +%s)
qemu-system-x86_64 "${accel[@]}" -smp "$cpus" -m "$mem" -nodefaults -display none -no-reboot \
	-serial "file:$job/console.log" -monitor none \
	-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 apparmor=0 mitigations=off net.ifnames=0 panic=-1 systemd.show_status=0 quiet" \
	-drive "file=$run/disk.qcow2,if=virtio,format=qcow2,cache=unsafe" \
	-netdev "$net" -device virtio-net-pci,netdev=n0 -device virtio-rng-pci \
	"${share[@]}" &
qpid=$!
log "qemu $qpid booting (console: $job/console.log)"

ready=
while kill -0 "$qpid" 2>/dev/null; do
	now=$(( $(date +%s) - start ))
	if [ -z "$ready" ] && [ -f "$job/ready" ]; then
		ready=$now
		log "dockerd ready in the VM after ${now} s"
	fi
	if [ -z "$ready" ] && [ "$now" -ge "$boot" ]; then
		log "the VM did not boot to a ready dockerd within ${boot} s; console tail:"
		tail -20 "$job/console.log" >&2 || true
		exit 3
	fi
	if [ "$now" -ge "$total" ]; then
		log "timed out after ${total} s; console tail:"
		tail -20 "$job/console.log" >&2 || true
		exit 124
	fi
	sleep 1
done
wait "$qpid" || true
qpid=
elapsed=$(( $(date +%s) - start ))
if [ ! -f "$job/rc" ]; then
	log "the VM powered off after ${elapsed} s without an exit code; console tail:"
	tail -20 "$job/console.log" >&2 || true
	exit 3
fi
rc=$(cat "$job/rc")
log "job exited $rc; VM up ${elapsed} s (boot to dockerd ${ready:-?} s)"
exit "$rc"
