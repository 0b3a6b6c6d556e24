#!/usr/bin/env bash
# `make test`: formatting, clippy with -D warnings, then every test against real services
# (the machine's PostgreSQL and a Tansu broker this script starts in memory and stops), then
# the offline checks of the deployment files.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

log "cargo fmt --check"
cargo fmt --all -- --check

require_postgres
scripts/broker.sh install

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "building the tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-run
else
  cargo test --workspace --no-run
fi

BROKER_DIR=$(mktemp -d -t sneakerstop-broker.XXXXXX)
trap 'scripts/broker.sh stop "$BROKER_DIR"; rm -rf "$BROKER_DIR"' EXIT
port=$(free_port)
log "starting an in-memory Tansu broker on 127.0.0.1:$port"
scripts/broker.sh start "$port" memory://tansu/ "$BROKER_DIR" >/dev/null
export KAFKA_BROKERS="127.0.0.1:$port"
# No TLS to the local server (libpq's default would negotiate it even over loopback).
export TEST_DATABASE_URL="${PG_ADMIN_URL%%\?*}?sslmode=disable"
export TANSU_BIN
TANSU_BIN=$(command -v tansu)

log "tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

log "deployment files"
scripts/check-deploy.sh
