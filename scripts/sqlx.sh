#!/usr/bin/env bash
# The compile-time checked SQL's metadata (`crates/<crate>/.sqlx`, committed).
#
#   scripts/sqlx.sh install   sqlx-cli, pinned to the sqlx version in Cargo.lock, once per machine
#   scripts/sqlx.sh prepare   regenerate every crate's .sqlx after changing a query or a migration
#   scripts/sqlx.sh check     fail if any crate's .sqlx does not match its queries and the migrations
#
# Builds compile `sqlx::query!` offline from .sqlx (SQLX_OFFLINE=true in .cargo/config.toml), so
# no database is needed to build. prepare/check compile each crate against a real database
# instead: a fresh one, each schema migrated with sqlx-cli from the same migration folders the
# service's `migrations()` lists (the binary cannot do it: building it needs the metadata
# this makes), reached with its `search_path` set to the schema the crate's SQL runs in —
# each service's tables live in a schema of its own name, and two services have tables of
# the same name (their replicas), so each crate is checked against its own schema.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

SQLX_CLI_VERSION=0.8.6
root="${SNEAKERSTOP_TOOLS:-$HOME/.cache/sneakerstop}/sqlx-cli-$SQLX_CLI_VERSION"
export PATH="$root/bin:$PATH"

# schema → its migration folders, in the order its service's `migrations()` applies them.
SCHEMAS=(
  "identity:crates/identity/migrations crates/messaging/migrations crates/auth/migrations"
  "catalog:crates/catalog/migrations crates/idempotency/migrations crates/messaging/migrations crates/auth/migrations"
  "orders:crates/orders/migrations crates/idempotency/migrations crates/messaging/migrations crates/auth/migrations"
  "payments:crates/payments/migrations crates/idempotency/migrations crates/messaging/migrations crates/auth/migrations"
  "market:crates/market/migrations crates/idempotency/migrations crates/messaging/migrations crates/auth/migrations"
)

# crate directory → the schema its queries run in (the shared crates run in every service's
# schema; any one that has their tables will do).
CRATES=(
  "crates/auth:identity"
  "crates/messaging:identity"
  "crates/idempotency:orders"
  "crates/identity:identity"
  "crates/catalog:catalog"
  "crates/orders:orders"
  "crates/payments:payments"
  "crates/market:market"
)

install() {
  if "$root/bin/cargo-sqlx" sqlx --version 2>/dev/null | grep -q " $SQLX_CLI_VERSION\$"; then return 0; fi
  log "installing sqlx-cli $SQLX_CLI_VERSION from crates.io into $root (once per machine)"
  cargo install sqlx-cli --version "$SQLX_CLI_VERSION" --locked --no-default-features \
    --features postgres,rustls --root "$root" --quiet
}

# The scratch database, dropped on exit.
db="sneakerstop_sqlx_$$"
cleanup() {
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  stop_started_services
}

run() {
  local mode=$1
  install
  require_postgres
  trap cleanup EXIT
  local base="${PG_ADMIN_URL%/*}/$db?sslmode=disable"
  log "migrating a scratch database with this tree's migrations"
  psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $db" >/dev/null
  local entry dir schema source failed=""
  for entry in "${SCHEMAS[@]}"; do
    schema=${entry%%:*}
    psql "${PG_ADMIN_URL%/*}/$db" -qc "CREATE SCHEMA $schema" >/dev/null
    for source in ${entry#*:}; do
      cargo-sqlx sqlx migrate run --ignore-missing --source "$source" \
        --database-url "$base&options=-c%20search_path%3D$schema" >/dev/null
    done
  done
  for entry in "${CRATES[@]}"; do
    dir=${entry%%:*}
    schema=${entry##*:}
    log "sqlx $mode: $dir (schema $schema)"
    # No other crate is recompiled against this schema: only the package in $dir is.
    if ! (cd "$dir" && DATABASE_URL="$base&options=-c%20search_path%3D$schema" SQLX_OFFLINE=false \
        cargo sqlx prepare ${mode/prepare/} -- --all-targets); then
      failed="$failed $dir"
    fi
  done
  [ -z "$failed" ] || die "query metadata out of date in:$failed — run scripts/sqlx.sh prepare and commit .sqlx"
}

case "${1:-}" in
  install) install ;;
  prepare) run prepare ;;
  check) run --check ;;
  *) die "usage: scripts/sqlx.sh install|prepare|check" ;;
esac
