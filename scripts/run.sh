#!/usr/bin/env bash
# `make run`: the whole marketplace on http://127.0.0.1:8080, with local PostgreSQL and a
# local Tansu broker on 127.0.0.1:9092 (its log kept in .data/tansu across restarts).
# Set KAFKA_BROKERS to use a broker of your own instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

require_postgres
scripts/broker.sh install
log "building sneakerstop"
cargo build --bin sneakerstop

BROKER_DIR=.data/tansu
if [ -z "${KAFKA_BROKERS:-}" ]; then
  log "starting the Tansu broker on 127.0.0.1:9092 (data in $BROKER_DIR)"
  scripts/broker.sh start 9092 sqlite://tansu.db "$BROKER_DIR" >/dev/null
  trap 'scripts/broker.sh stop "$BROKER_DIR"' EXIT
  export KAFKA_BROKERS=127.0.0.1:9092
fi

export LOG_FORMAT="${LOG_FORMAT:-pretty}"
log "serving the marketplace at http://${HOST:-127.0.0.1}:${PORT:-8080} (API docs at /docs; ctrl-c stops)"
# Not exec: when the server stops (ctrl-c, SIGTERM) the trap stops the broker we started.
target/debug/sneakerstop serve --dev "$@" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' INT TERM
wait $server || true
wait $server 2>/dev/null || true
