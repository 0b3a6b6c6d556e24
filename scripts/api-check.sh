#!/usr/bin/env bash
# The API conformance check of `make test`: Schemathesis (from PyPI, pinned in
# tests/api/requirements.txt) drives every operation of the real binary's OpenAPI document,
# signed in, with a bounded number of generated requests, and fails on any server error,
# any response the document does not describe, any schema-valid request refused and any
# schema-invalid one accepted (tests/api/schemathesis.toml lists the state-dependent
# refusals a valid request may meet).
#
# Needs PostgreSQL at PG_ADMIN_URL and a broker at KAFKA_BROKERS (scripts/test.sh starts
# both) and a built target/debug/sneakerstop. API_CHECK_EXAMPLES (default 25) bounds the
# requests per operation and phase; API_CHECK_SEEDS (default two fixed seeds) picks them —
# each seed is a run of its own, so one seed's lucky draw cannot hide a disagreement. The
# first seed runs every phase; later seeds only the fuzzing phase, the one a seed changes
# (the examples and coverage phases derive their requests from the document alone).
#
# `scripts/api-check.sh install` only installs the checker (make test does it in the
# background while the code compiles).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

venv="${SNEAKERSTOP_TOOLS:-$HOME/.cache/sneakerstop}/api-venv"
stamp="$venv/.requirements"
if ! cmp -s tests/api/requirements.txt "$stamp" 2>/dev/null; then
  log "installing the API checker (schemathesis)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/api/requirements.txt
  cp tests/api/requirements.txt "$stamp"
fi
[ "${1:-}" = install ] && exit 0

: "${KAFKA_BROKERS:?set KAFKA_BROKERS (scripts/test.sh does)}"
bin=target/debug/sneakerstop
[ -x "$bin" ] || die "build the binary first (cargo build --bin sneakerstop)"

db="sneakerstop_api_check_$$"
admin="${PG_ADMIN_URL%%\?*}"
port=$(free_port)
workdir=$(mktemp -d -t sneakerstop-api-check.XXXXXX)
server=""
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$workdir"
}
trap cleanup EXIT

# The per-user write limit would turn most generated writes into 429s (documented, so
# allowed): it is raised here so that every write operation is exercised. Generated ids are
# random, so nearly every one is unknown and a read of it waits REPLICA_WAIT before its 404
# (for an id created a moment ago): a short wait keeps the same answers and saves minutes.
DATABASE_URL="${admin%/*}/$db?sslmode=disable" PORT="$port" RUST_LOG=warn LOG_FORMAT=json \
  WRITE_LIMIT_PER_SECOND=100000 WRITE_LIMIT_BURST=100000 REPLICA_WAIT=50ms ORDER_HOLD_WAIT=50ms \
  KAFKA_GROUP_PREFIX="api-check-$$" "$bin" serve --dev >"$workdir/server.log" 2>&1 &
server=$!
base="http://127.0.0.1:$port"
deadline=$((SECONDS + 60))
until curl -sf "$base/readyz" >/dev/null 2>&1; do
  kill -0 "$server" 2>/dev/null || { cat "$workdir/server.log" >&2; die "the server exited"; }
  [ $SECONDS -lt $deadline ] || die "the server was not ready within 60s; see $workdir/server.log"
  sleep 0.2
done

# A signed-in user per seed. Both ways of presenting the session are set, so Schemathesis
# does not invent the other (the server refuses a request whose credentials disagree).
sign_up() {
  curl -sf -D - -o /dev/null -H 'content-type: application/json' \
    -d "{\"email\":\"api-check-$1@example.com\",\"password\":\"api-check-password\"}" "$base/api/users/signup" |
    sed -n 's/^[Ss]et-[Cc]ookie: session=\([^;]*\).*/\1/p'
}

# The seeds run side by side, one checker process each (the checker is single-threaded
# Python and the server mostly waits for it, so two use the machine's two cores), each as
# its own user; the first runs every phase, the others only fuzzing.
phases=examples,coverage,fuzzing
pids=()
seeds=(${API_CHECK_SEEDS:-20261127 20261204})
for seed in "${seeds[@]}"; do
  token=$(sign_up "$seed")
  [ -n "$token" ] || die "could not sign up the API check's user"
  log "API conformance: every operation against $base (schemathesis, seed $seed, phases $phases)"
  # One worker each: CPython 3.11's ast module is not safe for the concurrent parsing
  # Hypothesis does when it describes its strategies ("AST constructor recursion depth
  # mismatch"); separate processes are.
  (cd "$workdir" && "$venv/bin/st" --config-file "$OLDPWD/tests/api/schemathesis.toml" run "$base/api-docs/openapi.json" \
    --header "Authorization: Bearer $token" --header "Cookie: session=$token" \
    --checks all --phases "$phases" --workers 1 \
    --max-examples "${API_CHECK_EXAMPLES:-25}" --seed "$seed" \
    --warnings off) >"$workdir/seed-$seed.log" 2>&1 &
  pids+=($!)
  phases=fuzzing
done
failed=0
for i in "${!seeds[@]}"; do
  wait "${pids[$i]}" || failed=1
  log "API conformance, seed ${seeds[$i]}:"
  cat "$workdir/seed-${seeds[$i]}.log"
done
[ "$failed" = 0 ] || die "the API disagrees with its document (above)"
