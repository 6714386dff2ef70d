#!/usr/bin/env bash
# make e2e-netem: the netem part of the e2e suite, for real, in the netem
# VM (Debian's kernel has sch_netem; this machine's has not):
#   1. the VM image (vm-image.sh: built once, then reused by its hash);
#   2. the images the VM's engine needs, built on the host (test/e2e/images.sh
#      with E2E_IMAGES="analyzer pumba nettools", tagged with
#      $NETEM_TAG_PREFIX) and saved as one tarball (their common layers
#      once) for its images folder;
#   3. the test binary (go test -c -tags netemvm ./test/e2e/netem/, static);
#   4. vm-run.sh boots the VM, the job loads the images into its engine
#      and runs the tests; the exit code and the logs come back.
# Artifacts: test/e2e/artifacts/netem/ (the test's log, the VM's console, the
# platform API's log). Needs root (the VM image) and `make build`.
#
# NETEM_SUBSET=ci runs every test with smaller samples, the same checks
# (see netem_test.go); NETEM_RUN is a -test.run pattern; NETEM_PRESETS=1
# also runs the link-loss and service-delay presets (presets_test.go; needs
# make tools otelcol; the services' binaries are bind-mounted from the
# checkout's bin/, only Prometheus and k6 go in as images); NETEM_SERIES=1
# logs each preset's metric series every 5 s (logged anyway when its
# verdict fails).
set -euo pipefail
cd "$(dirname "$0")/../../.."
prefix=${NETEM_TAG_PREFIX:-netem-}
art=test/e2e/artifacts/netem
mkdir -p "$art"
log() { echo "e2e-netem: $(date -u +%T) $*" >&2; }
t0=$(date +%s)

img=$(test/e2e/netem/vm-image.sh | tail -1)
t1=$(date +%s)
log "VM image $img ($((t1 - t0)) s)"

work=$(mktemp -d "${TMPDIR:-/tmp}/dsplab-e2e-netem.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/images" "$work/job"
# The fault tests need the first three; the presets (NETEM_PRESETS=1,
# presets_test.go) Prometheus and k6 as images (the services' binaries
# come from the checkout, bind-mounted).
images="analyzer pumba nettools"
tags=("${prefix}dsplab/analyzer:dev" "${prefix}dsplab-e2e/pumba:standin" "${prefix}dsplab-e2e/nettools:debian")
if [ "${NETEM_PRESETS:-}" = 1 ]; then
	images="$images prometheus k6"
	tags+=("${prefix}dsplab-e2e/prometheus:debian" "${prefix}dsplab-e2e/k6:1.8.1")
	[ -x bin/tools/otelcol-dsplab ] && [ -x "${TOOLS:-bin/tools}/k6" ] || { log "NETEM_PRESETS=1 needs bin/tools/otelcol-dsplab and k6 (make tools otelcol)"; exit 2; }
fi
E2E_IMAGES="$images" E2E_TAG_PREFIX="$prefix" test/e2e/images.sh >&2
docker save -o "$work/images/netem-images.tar" "${tags[@]}"
CGO_ENABLED=0 go test -c -tags netemvm -o "$work/job/netem.test" ./test/e2e/netem/
t2=$(date +%s)
log "images and test binary ($((t2 - t1)) s, $(du -sh "$work/images" | cut -f1) of tarballs)"

run=
[ -n "${NETEM_RUN:-}" ] && run="-test.run '$NETEM_RUN'"
cat >"$work/job/run.sh" <<JOB
set -u
echo "boot: dockerd ready at \$(cat /job/ready) s of uptime"
for t in /images/*.tar; do
	s=\$(cut -d' ' -f1 /proc/uptime)
	docker load -q -i "\$t" || exit 1
	echo "loaded \$t (\$s .. \$(cut -d' ' -f1 /proc/uptime) s)"
done
modprobe sch_netem
export NETEM_PUMBA_IMAGE=${tags[1]} NETEM_NETTOOLS_IMAGE=${tags[2]} NETEM_TARGET_IMAGE=${tags[0]} NETEM_PLATFORM_BIN=/src/bin/platform-api
export NETEM_PRESETS=${NETEM_PRESETS:-} NETEM_PROMETHEUS_IMAGE=${tags[3]:-} NETEM_K6_IMAGE=${tags[4]:-}
export NETEM_SUBSET=${NETEM_SUBSET:-} NETEM_SERIES=${NETEM_SERIES:-}
./netem.test -test.v -test.count=1 -test.timeout ${NETEM_TEST_TIMEOUT:-40m} $run
JOB
rc=0
NETEM_IMAGE_DIR=$img NETEM_IMAGES=$work/images test/e2e/netem/vm-run.sh "$work/job" || rc=$?
cp "$work/job/log" "$art/test.log" 2>/dev/null || true
cp "$work/job/console.log" "$art/console.log" 2>/dev/null || true
cp "$work/job/platform-api.log" "$art/platform-api.log" 2>/dev/null || true
cp "$work/job/platform-presets.log" "$work/job/"*-report.md "$art/" 2>/dev/null || true
t3=$(date +%s)
grep -E '^(=== RUN|--- |    netem_test.go|    presets_test.go|PASS|FAIL|ok )' "$art/test.log" 2>/dev/null | grep -v '^=== RUN' || true
grep -E '^(boot:|loaded )' "$art/test.log" 2>/dev/null | sed 's/^/e2e-netem: VM /' >&2 || true
log "exit $rc; VM run $((t3 - t2)) s, total $((t3 - t0)) s${NETEM_SUBSET:+ (subset $NETEM_SUBSET)} (artifacts: $art/)"
exit "$rc"
