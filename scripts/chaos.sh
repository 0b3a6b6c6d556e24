#!/usr/bin/env bash
# `make chaos`: the chaos suite (crates/sneakerstop/tests/chaos.rs) for CHAOS_SECONDS
# (default 180) of load with CHAOS_TTL (default 30) second reservations: two servers on one
# database and a private Apache Kafka with the shipped settings, a purchase load with buyers
# who pay and buyers who never do, kill -9 of each server twice and of the broker once, the
# pause each crash caused, then every guarantee of docs/reliability.md checked and the
# figures printed. `make test` runs the same suite for 30 s with 10 s reservations.
# CHAOS_CRASHES replaces the schedule (e.g. `broker,broker,broker`); with
# KAFKA_DEBUG=cgrp,broker and RUST_LOG=info,librdkafka=debug the servers log what their
# Kafka clients do through each crash.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

trap stop_started_services EXIT
require_postgres
scripts/kafka.sh install
export TEST_DATABASE_URL="${PG_ADMIN_URL%%\?*}?sslmode=disable"
export CHAOS_SECONDS="${CHAOS_SECONDS:-180}" CHAOS_TTL="${CHAOS_TTL:-30}"
log "chaos: $CHAOS_SECONDS s of purchases ($CHAOS_TTL s reservations), each server killed twice and the broker once"
cargo test -p sneakerstop --test chaos -- --nocapture
