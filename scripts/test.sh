#!/usr/bin/env bash
# `make test`: formatting, clippy with -D warnings and the check that the compile-time SQL
# metadata is current (one pass, scripts/sqlx.sh lint), then every test against real
# services (PostgreSQL, installed and started if none answers, and an Apache Kafka broker
# this script starts in a temporary directory), the API conformance check (schemathesis
# against the real binary), and the offline checks of the deployment files. What it
# started, it stops.
#
# The compiler is what takes time here, so everything that does not need its output runs
# beside it: Chromium's and the browser tests' installs, fetching and starting Kafka, the
# checkers' installs and the deployment checks. Each phase says when it starts; the last line
# lists their times (docs/development.md explains them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

BROKER_DIR=$(mktemp -d -t sneakerstop-broker.XXXXXX)
cleanup() {
  local status=$?
  stop_background
  scripts/kafka.sh stop "$BROKER_DIR"
  rm -rf "$BROKER_DIR"
  stop_started_services
  phase_summary "make test $([ $status = 0 ] && echo passed || echo FAILED)"
}
trap cleanup EXIT

phase "set-up"
require_postgres
background browser ensure_browser
port=$(free_port)
background broker scripts/kafka.sh start "$port" "$BROKER_DIR" test
background api-checker scripts/api-check.sh install
background deployment-checks scripts/check-deploy.sh

phase "cargo fmt --check"
cargo fmt --all -- --check

phase "clippy -D warnings and the SQL metadata check"
scripts/sqlx.sh lint

phase "building the tests"
cargo test --workspace --no-run

phase "waiting for the broker and the browser"
await broker
await browser
export KAFKA_BROKERS="127.0.0.1:$port"
# No TLS to the local server (libpq's default would negotiate it even over loopback).
export TEST_DATABASE_URL="${PG_ADMIN_URL%%\?*}?sslmode=disable"

phase "tests"
scripts/run-tests.sh

phase "API conformance check"
await api-checker
scripts/api-check.sh

phase "deployment checks"
await deployment-checks show
