#!/usr/bin/env bash
# `make run`: the whole marketplace on http://127.0.0.1:8080, with local PostgreSQL
# (installed and started if none answers) and a local Apache Kafka broker on 127.0.0.1:9092
# (its log kept in .data/kafka across restarts). Set KAFKA_BROKERS to use a broker of your
# own instead. What this script started, it stops when the server stops.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

BROKER_DIR=.data/kafka
started_broker=""
cleanup() {
  stop_background
  if [ -n "$started_broker" ]; then scripts/kafka.sh stop "$BROKER_DIR"; fi
  stop_started_services
}
trap cleanup EXIT
phase "PostgreSQL"
require_postgres
# The broker's jars are fetched and the broker started while the code compiles.
if [ -z "${KAFKA_BROKERS:-}" ]; then
  started_broker=1
  background kafka scripts/kafka.sh start 9092 "$BROKER_DIR"
fi
phase "building sneakerstop (the first build compiles every dependency: a few minutes)"
cargo build --bin sneakerstop
if [ -n "$started_broker" ]; then
  phase "Apache Kafka on 127.0.0.1:9092 (data in $BROKER_DIR)"
  await kafka
  export KAFKA_BROKERS=127.0.0.1:9092
fi
phase_summary "ready to serve"

export LOG_FORMAT="${LOG_FORMAT:-pretty}"
log "serving the marketplace at http://${HOST:-127.0.0.1}:${PORT:-8080} (API docs at /docs; ctrl-c stops)"
# Not exec: when the server stops (ctrl-c, SIGTERM) the trap stops what we started.
target/debug/sneakerstop serve --dev "$@" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' INT TERM
wait $server || true
wait $server 2>/dev/null || true
