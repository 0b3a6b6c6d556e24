#!/usr/bin/env bash
# The compile-time checked SQL's metadata (`crates/<crate>/.sqlx`, committed).
#
#   scripts/sqlx.sh prepare   regenerate every crate's .sqlx after changing a query or a migration
#   scripts/sqlx.sh check     fail if any crate's .sqlx does not match its queries and the migrations
#   scripts/sqlx.sh lint      clippy -D warnings, with the check above done in the same pass
#                             (what `make test` runs: one compile of the workspace, not two)
#
# Builds compile `sqlx::query!` offline from .sqlx (SQLX_OFFLINE=true in .cargo/config.toml), so
# no database is needed to build. The check compiles the crates online instead, against a
# fresh scratch database whose schemas are migrated (with psql) from the same migration
# folders each service's `migrations()` lists: the query macros then describe every query to
# PostgreSQL and write what it said (SQLX_OFFLINE_DIR), which must equal what is committed.
# Each crate reaches its own schema (a `.env` beside its Cargo.toml names the database with
# `search_path` set, for the length of the run): each service's tables live in a schema of
# its own name, and two services have tables of the same name (their replicas).
#
# No sqlx-cli: the macros write the metadata themselves, so checking needs nothing but the
# compile `make test` does anyway. A check that passed is remembered (target/sqlx-check.ok,
# keyed by a hash of the queries' sources, the migrations, the metadata, Cargo.lock and the
# server's version); with none of those changed, the next run lints offline and skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

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

admin="${PG_ADMIN_URL%%\?*}"
db="sneakerstop_sqlx_$$"
url() { echo "${admin%/*}/$db?sslmode=disable&options=-c%20search_path%3D$1"; }
work=""
cleanup() {
  local entry
  for entry in "${CRATES[@]}"; do
    if [ -f "${entry%%:*}/.env" ] && grep -q '^# scripts/sqlx.sh' "${entry%%:*}/.env"; then rm -f "${entry%%:*}/.env"; fi
  done
  [ -n "$work" ] && rm -rf "$work"
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  stop_started_services
}

# A scratch database with every schema migrated as the services migrate theirs: each
# migration file in version order, each in a transaction of its own.
scratch_database() {
  require_postgres
  trap cleanup EXIT
  work=$(mktemp -d -t sneakerstop-sqlx.XXXXXX)
  log "migrating a scratch database with this tree's migrations"
  psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
  local entry schema folder file
  for entry in "${SCHEMAS[@]}"; do
    schema=${entry%%:*}
    psql "${admin%/*}/$db" -qc "CREATE SCHEMA $schema" >/dev/null
    for folder in ${entry#*:}; do
      for file in "$folder"/*.sql; do
        PGOPTIONS="-c search_path=$schema -c client_min_messages=warning" \
          psql "${admin%/*}/$db" -q -v ON_ERROR_STOP=1 --single-transaction -f "$file" >/dev/null ||
          die "migration $file failed in schema $schema"
      done
    done
  done
}

# What the check's outcome depends on: the crates' sources (every query is in them), the
# migrations, the committed metadata, the locked sqlx version and the server's version.
inputs_hash() {
  {
    local entry
    for entry in "${CRATES[@]}"; do
      find "${entry%%:*}" -path '*/target' -prune -o -type f \( -name '*.rs' -o -name '*.sql' -o -name '*.json' \) -print
    done | sort | xargs sha256sum
    sha256sum Cargo.lock
    psql "$admin" -qtAc 'SHOW server_version'
  } | sha256sum | cut -d' ' -f1
}

# Runs `cargo "$@"` with every crate's queries described online, written to $work/queries.
online() {
  local entry dir
  for entry in "${CRATES[@]}"; do
    dir=${entry%%:*}
    if [ -f "$dir/.env" ] && ! grep -q '^# scripts/sqlx.sh' "$dir/.env"; then
      die "$dir/.env exists and is not ours; move it away for the check"
    fi
    printf '# scripts/sqlx.sh: removed when the check ends\nDATABASE_URL=%s\n' "$(url "${entry##*:}")" >"$dir/.env"
    # A crate the compiler has checked before is not checked again unless a file changed:
    # its macros would not run. Make them.
    touch "$dir/src/lib.rs"
  done
  mkdir -p "$work/queries"
  SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$work/queries" cargo "$@"
}

# Every query the compile described must be committed, identical, in each crate's .sqlx
# that holds it (a crate reads its own), and every committed file must still be a query.
compare() {
  "${PYTHON:-python3}" - "$work/queries" "${CRATES[@]%%:*}" <<'PY'
import json, pathlib, sys
described = {p.name: json.loads(p.read_text()) for p in pathlib.Path(sys.argv[1]).glob("query-*.json")}
problems = []
committed = {}
for crate in sys.argv[2:]:
    for p in pathlib.Path(crate, ".sqlx").glob("query-*.json"):
        committed.setdefault(p.name, []).append((crate, json.loads(p.read_text())))
for name, data in sorted(described.items()):
    copies = committed.get(name)
    if not copies:
        problems.append(f"{data['query'].split()[0]} … ({name}) is described by no committed .sqlx")
    for crate, copy in copies or []:
        if copy != data:
            problems.append(f"{crate}/.sqlx/{name} differs from what PostgreSQL describes now")
for name, copies in sorted(committed.items()):
    if name not in described:
        problems.append(f"{', '.join(c for c, _ in copies)}: {name} is no longer a query of this tree")
for problem in problems:
    print(f"  {problem}", file=sys.stderr)
print(f"{len(described)} queries described; {len(problems)} problems")
sys.exit(1 if problems else 0)
PY
}

run_check() {
  local tool=("$@")
  local stamp="${CARGO_TARGET_DIR:-target}/sqlx-check.ok" hash
  trap cleanup EXIT
  require_postgres
  hash=$(inputs_hash)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
    log "SQL metadata: unchanged since the last check that passed ($stamp); not described again"
    cargo "${tool[@]}"
    return
  fi
  scratch_database
  log "cargo ${tool[*]}, describing every query to a migrated database"
  online "${tool[@]}"
  compare || die "query metadata out of date — run scripts/sqlx.sh prepare and commit crates/*/.sqlx"
  mkdir -p "$(dirname "$stamp")" && echo "$hash" >"$stamp"
}

# Regenerates each crate's .sqlx from its own queries only: a compiler wrapper for the
# workspace's crates gives each its schema's database and its own .sqlx as the output
# (changing the wrapper recompiles every crate of the workspace, so every macro runs).
prepare() {
  scratch_database
  local wrapper="$work/rustc-wrapper" entry map="" dir
  for entry in "${CRATES[@]}"; do
    mkdir -p "$work/out/${entry%%:*}"
    map="$map $(printf '%q' "$PWD/${entry%%:*}=$(url "${entry##*:}")")"
  done
  cat >"$wrapper" <<EOF
#!/usr/bin/env bash
# RUSTC_WORKSPACE_WRAPPER of scripts/sqlx.sh prepare: each crate with queries is compiled
# online against its schema and writes its own .sqlx.
for entry in $map; do
  if [ "\${entry%%=*}" = "\$CARGO_MANIFEST_DIR" ]; then
    export SQLX_OFFLINE=false DATABASE_URL="\${entry#*=}" SQLX_OFFLINE_DIR="$work/out/\${CARGO_MANIFEST_DIR#$PWD/}"
  fi
done
exec "\$@"
EOF
  chmod +x "$wrapper"
  log "describing every crate's queries"
  RUSTC_WORKSPACE_WRAPPER="$wrapper" cargo check --workspace --all-targets --quiet
  # Only a compile that succeeded replaces what is committed.
  for entry in "${CRATES[@]}"; do
    dir=${entry%%:*}
    mkdir -p "$dir/.sqlx"
    rm -f "$dir"/.sqlx/query-*.json
    cp "$work/out/$dir"/query-*.json "$dir/.sqlx/" 2>/dev/null || true
  done
  git status --short -- 'crates/*/.sqlx'
}

case "${1:-}" in
  prepare) prepare ;;
  check) run_check check --workspace --all-targets ;;
  lint) run_check clippy --workspace --all-targets -- -D warnings ;;
  *) die "usage: scripts/sqlx.sh prepare|check|lint" ;;
esac
