#!/usr/bin/env bash
# The benchmark's yardstick: PostgreSQL's ceiling on this machine, now, for the cheapest
# durable write a listing needs — one statement inserting a listing and its outbox row into
# catalog's real tables (their indexes, checks and the outbox's NOTIFY trigger), measured
# with pgbench: 32 clients, prepared statements, three runs of YARDSTICK_SECONDS (default
# 10) on a fresh database, the median reported.
#
# Machines of this kind differ about threefold from one session to the next, so `make bench`
# measures this first and reports every throughput as a ratio to it (docs/performance.md).
#
#   scripts/yardstick.sh BIN     prints the median tx/s on stdout (the runs on stderr)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

bin=${1:?usage: scripts/yardstick.sh path/to/sneakerstop}
seconds=${YARDSTICK_SECONDS:-10}
db=sneakerstop_yardstick
url="${PG_ADMIN_URL%/*}/$db?sslmode=disable"
pgbench=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -1)
[ -x "$pgbench" ] || die "pgbench not found (Debian's postgresql package ships it)"

psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >&2
DATABASE_URL="$url" RUST_LOG=warn "$bin" migrate catalog >&2

script=$(mktemp -t yardstick.XXXXXX.sql)
trap 'rm -f "$script"; psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
# What POST /api/sneakers writes, in one statement: the listing and its sneaker.listed row.
cat >"$script" <<'SQL'
\set price random(1000, 100000)
WITH listed AS (
  INSERT INTO catalog.sneakers (id, seller_id, title, brand, price_cents, size)
  VALUES (gen_random_uuid(), gen_random_uuid(), 'Air Jordan 1 Retro High', 'Nike', :price, 10)
  RETURNING id, seller_id, title, brand, price_cents, size, status, version, created_at
)
INSERT INTO catalog.outbox (event_id, topic, message_key, event_type, headers, payload)
SELECT gen_random_uuid(), 'catalog.sneakers', id::text, 'sneaker.listed', '{"ce_specversion":"1.0"}'::jsonb, row_to_json(listed)
  FROM listed;
SQL

runs=()
for run in 1 2 3; do
  tps=$(PGOPTIONS="-c search_path=catalog" "$pgbench" -n -M prepared -c 32 -j 2 -T "$seconds" -f "$script" "$url" 2>&1 |
    sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
  [ -n "$tps" ] || die "pgbench gave no figure"
  echo "yardstick run $run: $tps tx/s" >&2
  runs+=("$tps")
done
printf '%s\n' "${runs[@]}" | sort -g | sed -n 2p
