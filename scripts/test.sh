#!/usr/bin/env bash
# `make test`: formatting, clippy with -D warnings, the check that the compile-time SQL
# metadata is current (scripts/sqlx.sh, which installs the pinned sqlx-cli once per machine),
# then every test against real services (PostgreSQL, installed and started if none answers,
# and an Apache Kafka broker this script starts in a temporary directory), the API
# conformance check (schemathesis against the real binary), then the offline checks of the
# deployment files. What it started, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

log "cargo fmt --check"
cargo fmt --all -- --check

BROKER_DIR=$(mktemp -d -t sneakerstop-broker.XXXXXX)
cleanup() {
  scripts/kafka.sh stop "$BROKER_DIR"
  rm -rf "$BROKER_DIR"
  stop_started_services
}
trap cleanup EXIT
require_postgres
scripts/kafka.sh install
ensure_chromium

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "compile-time SQL metadata matches the queries and the migrations"
scripts/sqlx.sh check

log "building the tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-run
else
  cargo test --workspace --no-run
fi

port=$(free_port)
log "starting Apache Kafka on 127.0.0.1:$port"
scripts/kafka.sh start "$port" "$BROKER_DIR" test >/dev/null
export KAFKA_BROKERS="127.0.0.1:$port"
# No TLS to the local server (libpq's default would negotiate it even over loopback).
export TEST_DATABASE_URL="${PG_ADMIN_URL%%\?*}?sslmode=disable"

log "tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

scripts/api-check.sh

log "deployment files"
scripts/check-deploy.sh
