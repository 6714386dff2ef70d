#!/usr/bin/env bash
# Builds every image of the e2e stack locally, with no registry (see
# test/e2e/README.md for what each one substitutes and why):
#   dsplab/{distributor,analyzer,service-a,service-b,platform-api}:dev
#       the binaries of `make build` FROM scratch, laid out as the
#       Dockerfile lays them out (its golang build stage cannot be pulled)
#   dsplab-e2e/kafka:kfake          devkafka (franz-go kfake) for apache/kafka
#   dsplab-e2e/otelcol:0.155.0      the OCB-built collector (make otelcol)
#   dsplab-e2e/prometheus:debian    Debian's prometheus binary and its libraries
#   dsplab-e2e/alertmanager:debian  Debian's prometheus-alertmanager, likewise
#   dsplab-e2e/k6:1.8.1             k6 v1.8.1 built from the module proxy
#   dsplab-e2e/pumba:standin        test/standins/pumba
#   dsplab-e2e/nettools:debian      Debian's iptables (nf_tables) with its
#       libraries and extensions, tc (iproute2) and tail, with the upstream
#       ENTRYPOINT ["tail","-f","/dev/null"]: the sidecar image Pumba's
#       iptables command runs in a target's network namespace (a partition
#       really drops), and the platform's cleanup execs tc/iptables in
#   dsplab-e2e/grafana:standin      test/standins/grafana (annotation API only)
# Needs: make build, make tools, make otelcol, Debian's prometheus,
# prometheus-alertmanager, iptables, iproute2 and coreutils packages.
#
# E2E_IMAGES="analyzer pumba nettools" builds only those (the names are
# the tags' last path element before the colon: distributor, analyzer,
# service-a, service-b, platform-api, kafka, otelcol, k6, pumba, grafana,
# prometheus, alertmanager, nettools); E2E_TAG_PREFIX="x-" tags them
# x-dsplab/... and x-dsplab-e2e/... (make e2e-netem's own images, which
# must not replace those of an e2e run under way).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=bin
tools=${TOOLS:-bin/tools} # make passes its TOOLS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
only=${E2E_IMAGES:-}
prefix=${E2E_TAG_PREFIX:-}
# want NAME: whether NAME's image is asked for.
want() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }

for src in tools/healthcheck/cmd/healthcheck test/standins/pumba/cmd/pumba-standin test/standins/grafana/cmd/grafana-standin; do
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/bin/${src##*/}" "./$src"
done

# image TAG DIR DOCKERFILE-LINES...: a context of its own with the
# healthcheck helper and a /tmp the services (user 65532) can write: COPY
# creates the directory as root 0755 whatever the source's mode, so it is
# chowned (the analyzers keep a run-time delivery mode in /tmp).
image() {
	local tag=$prefix$1 dir=$2
	shift 2
	cp "$work/bin/healthcheck" "$dir/healthcheck"
	mkdir -p "$dir/tmp" && chmod 1777 "$dir/tmp"
	{
		echo "FROM scratch"
		echo "COPY healthcheck /healthcheck"
		echo "COPY --chown=65532:65532 tmp /tmp"
		printf '%s\n' "$@"
	} >"$dir/Dockerfile"
	# (the legacy builder's deprecation notice is noise; errors are shown)
	if ! out=$(docker build -q -t "$tag" "$dir" 2>&1); then
		echo "$out" >&2
		return 1
	fi
	echo "built $tag"
}

for svc in distributor analyzer service-a service-b platform-api; do
	want "$svc" || continue
	d="$work/$svc" && mkdir -p "$d"
	cp "$bin/$svc" "$d/app"
	cp -r k6 experiments "$d/"
	image "dsplab/$svc:dev" "$d" "COPY app /app" "COPY k6 /k6" "COPY experiments /experiments" \
		"USER 65532:65532" 'ENTRYPOINT ["/app"]'
done

if want kafka; then
	d="$work/kafka" && mkdir -p "$d" && cp "$bin/devkafka" "$d/devkafka"
	image dsplab-e2e/kafka:kfake "$d" "COPY devkafka /devkafka" \
		'ENTRYPOINT ["/devkafka", "-addr", ":9092", "-advertise", "kafka:9092", "-partitions", "3"]'
fi

if want otelcol; then
	d="$work/otelcol" && mkdir -p "$d" && cp "$tools/otelcol-dsplab" "$d/otelcol"
	image dsplab-e2e/otelcol:0.155.0 "$d" "COPY otelcol /otelcol" 'ENTRYPOINT ["/otelcol"]'
fi

if want k6; then
	d="$work/k6" && mkdir -p "$d" && cp "$tools/k6" "$d/k6"
	image dsplab-e2e/k6:1.8.1 "$d" "COPY k6 /usr/bin/k6" "ENV HOME=/tmp" 'ENTRYPOINT ["/usr/bin/k6"]'
fi

if want pumba; then
	d="$work/pumba" && mkdir -p "$d" && cp "$work/bin/pumba-standin" "$d/pumba"
	image dsplab-e2e/pumba:standin "$d" "COPY pumba /pumba" 'ENTRYPOINT ["/pumba"]'
fi

if want grafana; then
	d="$work/grafana" && mkdir -p "$d" && cp "$work/bin/grafana-standin" "$d/grafana"
	image dsplab-e2e/grafana:standin "$d" "COPY grafana /grafana" 'ENTRYPOINT ["/grafana"]'
fi

# debian BINARY DIR: the Debian binary and every shared library ldd names,
# at the same paths, so it runs FROM scratch.
debian() {
	local exe=$1 dir=$2
	mkdir -p "$dir/rootfs"
	cp --parents "$exe" "$dir/rootfs/"
	ldd "$exe" | grep -o '/[^ ]*' | while read -r lib; do
		cp --parents -L "$lib" "$dir/rootfs/"
	done
}
if want prometheus; then
	d="$work/prometheus" && debian "$(command -v prometheus)" "$d"
	cp -r --parents /usr/share/prometheus/web "$d/rootfs/" 2>/dev/null || true # the web UI's assets
	mkdir -p "$d/rootfs/prometheus" && chmod 777 "$d/rootfs/prometheus"
	image dsplab-e2e/prometheus:debian "$d" "COPY rootfs /" 'ENTRYPOINT ["/usr/bin/prometheus"]'
fi

if want alertmanager; then
	d="$work/alertmanager" && debian "$(command -v prometheus-alertmanager)" "$d"
	cp -r --parents /usr/share/prometheus/alertmanager "$d/rootfs/" # default.tmpl, read at start
	mkdir -p "$d/rootfs/alertmanager" && chmod 777 "$d/rootfs/alertmanager"
	image dsplab-e2e/alertmanager:debian "$d" "COPY rootfs /" 'ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]'
fi

# nettools: what ghcr.io/alexei-led/pumba-alpine-nettools holds, from
# Debian: iptables (the multi-call binary under its name, its extensions,
# loaded at run time, with their libraries, and /run for its lock file),
# tc (iproute2, with its delay distribution tables) and coreutils' tail
# for the upstream ENTRYPOINT ["tail","-f","/dev/null"]: Pumba (and the
# platform's cleanup) start the sidecar idle and exec the tools in it.
if want nettools; then
	d="$work/nettools" && multi=$(readlink -f "$(command -v iptables-nft || command -v iptables)") && debian "$multi" "$d"
	for so in /usr/lib/x86_64-linux-gnu/xtables/*.so; do
		cp --parents "$so" "$d/rootfs/"
		ldd "$so" | grep -o '/[^ ]*' | while read -r lib; do cp --parents -L -n "$lib" "$d/rootfs/"; done
	done
	ln -sf "$(basename "$multi")" "$d/rootfs/usr/sbin/iptables"
	for exe in "$(command -v tail)" "$(command -v tc)"; do
		cp --parents -L "$exe" "$d/rootfs/"
		ldd "$exe" | grep -o '/[^ ]*' | while read -r lib; do cp --parents -L -n "$lib" "$d/rootfs/"; done
	done
	cp -r --parents /usr/lib/x86_64-linux-gnu/tc "$d/rootfs/" 2>/dev/null || true
	mkdir -p "$d/rootfs/run" "$d/rootfs/etc" && cp /etc/protocols "$d/rootfs/etc/" 2>/dev/null || true
	image dsplab-e2e/nettools:debian "$d" "COPY rootfs /" 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
		'ENTRYPOINT ["tail", "-f", "/dev/null"]'
fi
