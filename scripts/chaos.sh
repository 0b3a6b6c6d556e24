#!/usr/bin/env bash
# `make chaos`: the chaos suite (crates/sneakerstop/tests/chaos.rs) for CHAOS_SECONDS
# (default 180) of load: two servers on one database and a private Apache Kafka, a purchase
# load with buyers who never pay, kill -9 of a server, of the broker and of a server again,
# then every guarantee of docs/reliability.md checked and the figures printed. `make test`
# runs the same suite for 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

trap stop_started_services EXIT
require_postgres
scripts/kafka.sh install
export TEST_DATABASE_URL="${PG_ADMIN_URL%%\?*}?sslmode=disable"
export CHAOS_SECONDS="${CHAOS_SECONDS:-180}"
log "chaos: $CHAOS_SECONDS s of purchases with a server, the broker and a server killed"
cargo test -p sneakerstop --test chaos -- --nocapture
