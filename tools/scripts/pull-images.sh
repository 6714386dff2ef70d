#!/usr/bin/env bash
# Pre-pulls the images the platform API starts as jobs (they are not
# compose services, so `docker compose pull` does not fetch them):
# K6_IMAGE, PUMBA_IMAGE and PUMBA_NETTOOLS_IMAGE, from the environment or
# else from .env. An image the engine already has is not pulled again.
# Run it while online before an offline workshop; the platform also pulls
# them itself at start-up and before a job (GET /api/status shows them).
set -euo pipefail
cd "$(dirname "$0")/../.."

value() {
	local v="${!1:-}"
	if [ -z "$v" ] && [ -f .env ]; then
		v="$(sed -n "s/^$1=//p" .env | tail -n 1)"
	fi
	printf '%s' "$v"
}

status=0
for k in K6_IMAGE PUMBA_IMAGE PUMBA_NETTOOLS_IMAGE; do
	img="$(value "$k")"
	if [ -z "$img" ]; then
		echo "$k: not set (environment or .env)" >&2
		status=1
		continue
	fi
	if docker image inspect "$img" >/dev/null 2>&1; then
		echo "$k=$img: present"
	elif docker pull "$img"; then
		echo "$k=$img: pulled"
	else
		echo "$k=$img: pull failed" >&2
		status=1
	fi
done
exit $status
