#!/usr/bin/env bash
# `make bench`: the standard load scenarios against a release build, with `make run`'s
# defaults (all services in one process, local PostgreSQL, a local Apache Kafka), on this
# machine. Prints each report and writes them all to bench/results/.
#
# If a marketplace already answers at LOAD_BASE_URL (default http://127.0.0.1:8080) it is
# used as is; otherwise this script starts one on a fresh `sneakerstop_bench` database and a
# fresh broker (in a temporary directory), and stops both afterwards.
# BENCH_QUICK=1 runs every scenario briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

workdir=$(mktemp -d -t sneakerstop-bench.XXXXXX)
server_pid=""   # the server this script started, if any
rss_pid=""      # the server whose memory is reported
sink_pid=""     # the OTLP receiver of the traced runs
cleanup() {
  if [ -n "$sink_pid" ]; then kill "$sink_pid" 2>/dev/null || true; fi
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  scripts/kafka.sh stop "$workdir/broker"
  rm -rf "$workdir"
  stop_started_services
}
trap cleanup EXIT
require_postgres
scripts/kafka.sh install
log "building the release binary"
cargo build --release --bin sneakerstop
bin=target/release/sneakerstop

# Starts the release server on $port (log: $workdir/$1), with any further VAR=value settings,
# and waits until it is ready. As make run: no TLS over loopback (see DATABASE_URL in the
# README). The scenarios drive thousands of writes from a few accounts, so the per-user
# write limit and the open bids a buyer may have on a book are raised (the bench measures
# the system, not the limits); the driver is a trusted proxy so that login-flood can play
# many client addresses.
start_server() {
  local log_file=$1; shift
  env "$@" DATABASE_URL="${PG_ADMIN_URL%/*}/sneakerstop_bench?sslmode=disable" KAFKA_BROKERS="127.0.0.1:$broker_port" \
    WRITE_LIMIT_PER_SECOND=1000000 WRITE_LIMIT_BURST=1000000 MAX_OPEN_BIDS_PER_BOOK=1000000 TRUSTED_PROXIES=127.0.0.1 \
    PORT="$port" RUST_LOG=warn LOG_FORMAT=json "$bin" serve --dev >"$workdir/$log_file" 2>&1 &
  server_pid=$!
  rss_pid=$server_pid
  for _ in $(seq 1 60); do curl -sf "$base/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
  curl -sf "$base/readyz" >/dev/null || die "the server did not become ready; see $workdir/$log_file"
}

base="${LOAD_BASE_URL:-http://127.0.0.1:8080}"
broker=""
if curl -sf "$base/healthz" >/dev/null 2>&1; then
  log "using the marketplace already running at $base"
  rss_pid=$(pgrep -f "sneakerstop serve" | head -1 || true)
else
  port=$(free_port)
  broker_port=$(free_port)
  base="http://127.0.0.1:$port"
  broker="Apache Kafka $(sed -n 's/^KAFKA_VERSION=//p' scripts/kafka.sh), one node on this machine"
  log "starting Apache Kafka and the release server on $base"
  scripts/kafka.sh start "$broker_port" "$workdir/broker" >/dev/null
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS sneakerstop_bench WITH (FORCE)"
  start_server server.log
fi

quick=${BENCH_QUICK:-}
secs() { if [ -n "$quick" ]; then echo 5s; else echo "$1"; fi; }
listings=100000
[ -n "$quick" ] && listings=2000

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
out="bench/results/$stamp-$rev"
cores=$(nproc)
mem_gib=$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)

run() {
  local name=$1; shift
  log "scenario $name"
  "$bin" load --base-url "$base" ${rss_pid:+--server-pid "$rss_pid"} --json-out "$workdir/$name.json" "$@"
  echo
}

browse_seed=$listings
if [ -n "$server_pid" ]; then
  # Our own fresh database: load the listings first and let PostgreSQL analyse them, as
  # autovacuum eventually would, so the browse run is not measuring stale statistics.
  log "seeding $listings listings"
  "$bin" load --base-url "$base" --scenario browse --duration 1s --concurrency 1 --users 4 --seed-listings "$listings" >/dev/null
  psql "${PG_ADMIN_URL%/*}/sneakerstop_bench" -qc "ANALYZE catalog.sneakers; ANALYZE orders.sneakers;"
  browse_seed=0
fi

{
  run browse --scenario browse --duration "$(secs 30s)" --concurrency 64 --users 4 --seed-listings "$browse_seed"
  run list --scenario list --duration "$(secs 20s)" --concurrency 32 --users 16 --seed-listings 0
  run purchase --scenario purchase --duration "$(secs 60s)" --concurrency 48 --users 48 --seed-listings 0
  run drop --scenario drop --duration "$(secs 15s)" --concurrency 64 --users 64 --seed-listings 0 --drop-pairs 20
  run login-flood --scenario login-flood --duration "$(secs 20s)" --concurrency 64 --users 8 --seed-listings 0
  # The market needs an admin to create its products: made here on a server this script
  # started (sign up, `sneakerstop admin grant`, sign in), or given as LOAD_ADMIN_EMAIL and
  # LOAD_ADMIN_PASSWORD for one that was already running.
  if [ -n "$server_pid" ] && [ -z "${LOAD_ADMIN_EMAIL:-}" ]; then
    export LOAD_ADMIN_EMAIL="bench-admin-$stamp@example.com" LOAD_ADMIN_PASSWORD="bench-admin-password"
    curl -sf -o /dev/null -H 'content-type: application/json' \
      -d "{\"email\":\"$LOAD_ADMIN_EMAIL\",\"password\":\"$LOAD_ADMIN_PASSWORD\"}" "$base/api/users/signup"
    DATABASE_URL="${PG_ADMIN_URL%/*}/sneakerstop_bench?sslmode=disable" "$bin" admin grant "$LOAD_ADMIN_EMAIL" >/dev/null
  fi
  if [ -n "${LOAD_ADMIN_EMAIL:-}" ]; then
    run market --scenario market --duration "$(secs 30s)" --concurrency 64 --users 64 --seed-listings 0 \
      --market-products 4 --market-streams 50
    # The same market paced (open loop, 80 iterations/s, about 96 book operations/s): its
    # latency at a rate the machine keeps up with, where the closed loop above shows how
    # many it does at most (and latency there is mostly queueing: 64 workers / throughput).
    run market-paced --scenario market --duration "$(secs 30s)" --rate 80 --users 64 --seed-listings 0 \
      --market-products 4 --market-streams 50
  else
    echo "scenario market skipped: set LOAD_ADMIN_EMAIL and LOAD_ADMIN_PASSWORD (an admin of the running server)"
  fi
} | tee "$workdir/tables.txt"

if [ -n "$server_pid" ]; then
  # Tracing's overhead: the same list and purchase runs again with every span exported over
  # OTLP/HTTP to a local receiver (a sink that reads and acknowledges each export, as a
  # collector would), against the runs above with export off.
  log "restarting the server with traces exported to a local OTLP receiver"
  kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true
  sink_port=$(free_port)
  python3 - "$sink_port" >"$workdir/sink.log" 2>&1 <<'PY' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
  sink_pid=$!
  start_server server-traced.log OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port"
  {
    run list-traced --scenario list --duration "$(secs 20s)" --concurrency 32 --users 16 --seed-listings 0
    run purchase-traced --scenario purchase --duration "$(secs 60s)" --concurrency 48 --users 48 --seed-listings 0
    echo "spans (traced runs):"
    curl -s "$base/metrics" | grep -E '^otel_spans_(exported|dropped|export_failed)_total' || echo "  none counted"
  } | tee -a "$workdir/tables.txt"
  kill "$sink_pid" 2>/dev/null || true
fi

python3 - "$workdir" "$out.json" "$rev" "$stamp" "$cores" "$mem_gib" <<'PY'
import json, sys, os
work, target, rev, stamp, cores, mem = sys.argv[1:]
names = ["browse", "list", "purchase", "drop", "login-flood", "market", "market-paced", "list-traced", "purchase-traced"]
reports = {n: json.load(open(os.path.join(work, f"{n}.json"))) for n in names if os.path.exists(os.path.join(work, f"{n}.json"))}
json.dump({"revision": rev, "date": stamp, "machine": {"cores": int(cores), "memoryGiB": float(mem)}, "reports": reports},
          open(target, "w"), indent=2)
PY
{
  echo "# Benchmark $stamp, revision $rev"
  echo
  echo "Machine: $cores cores, $mem_gib GiB; release build; all services in one process; local PostgreSQL;"
  echo "Broker: ${broker:-as configured by the stack that was already running}."
  echo
  echo '```'
  cat "$workdir/tables.txt"
  echo '```'
} >"$out.md"
log "results written to $out.json and $out.md"
