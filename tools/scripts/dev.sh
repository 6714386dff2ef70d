#!/usr/bin/env bash
# Starts the dev stack on the host as separate processes, with the ports of
# the compose stack: devkafka on 127.0.0.1:9092, analyzer-1..3 on 9001..9003
# (weights 0.5/0.3/0.2) and the distributor on 8080. Ctrl-C stops them all;
# any one can be stopped or killed alone (kill <pid> from the list printed).
# KAFKA_BROKERS points everything at a real Kafka instead of devkafka.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
LOGS=${LOGS:-/tmp/dsplab-dev}
mkdir -p "$LOGS"
pids=()
stop() {
	trap - INT TERM EXIT
	echo; echo "stopping ${#pids[@]} processes"
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap stop INT TERM EXIT

start() { # name, then the command
	local name=$1; shift
	"$@" >"$LOGS/$name.log" 2>&1 &
	pids+=($!)
	printf '  %-12s pid %-7s log %s\n' "$name" "$!" "$LOGS/$name.log"
}

wait_port() { # host:port
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on $1" >&2; return 1
}

echo "DSP Lab dev stack (logs in $LOGS):"
if [ -z "${KAFKA_BROKERS:-}" ]; then
	start devkafka "$BIN/devkafka" -addr 127.0.0.1:9092
	wait_port 127.0.0.1:9092
	export KAFKA_BROKERS=127.0.0.1:9092
fi
i=1
for port in 9001 9002 9003; do
	start "analyzer-$i" env PORT=$port ANALYZER_ID=analyzer-$i "$BIN/analyzer"
	i=$((i+1))
done
start distributor env PORT=8080 \
	ANALYZERS="analyzer-1@http://127.0.0.1:9001=0.5,analyzer-2@http://127.0.0.1:9002=0.3,analyzer-3@http://127.0.0.1:9003=0.2" \
	"$BIN/distributor" ${DISTRIBUTOR_CONFIG:+-config.file "$DISTRIBUTOR_CONFIG"}
wait_port 127.0.0.1:8080
cat <<TXT

  distributor  http://127.0.0.1:8080  (POST /ingest, /loki/api/v1/push; GET /health, /metrics, /admin/analyzers)
  analyzers    http://127.0.0.1:9001 9002 9003  (GET /health, /stats, /metrics)
  kafka        ${KAFKA_BROKERS}

Ctrl-C stops everything.
TXT
wait -n "${pids[@]}" || true
echo "a process exited; the others keep running (Ctrl-C to stop)"
wait
