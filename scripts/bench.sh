#!/usr/bin/env bash
# `make bench`: the standard load scenarios against a release build, with `make run`'s
# defaults (all services in one process, local PostgreSQL, a local Apache Kafka), on this
# machine. Prints each report and writes them all to bench/results/.
#
# If a marketplace already answers at LOAD_BASE_URL (default http://127.0.0.1:8080) it is
# used as is; otherwise this script starts one on a fresh `sneakerstop_bench` database and a
# fresh broker (in a temporary directory), and stops both afterwards.
# BENCH_QUICK=1 runs every scenario briefly.
#
# First it measures its yardstick (scripts/yardstick.sh: PostgreSQL's ceiling for the
# one-statement listing-and-outbox insert, pgbench on a fresh database before the stack
# starts) and reports every throughput as a ratio to it beside the absolute number, so
# that runs on machines of different speed compare (docs/performance.md).
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
  # The servers' logs stay beside the results, for a look at what a run met.
  if [ -n "${out:-}" ] && ls "$workdir"/server*.log >/dev/null 2>&1; then
    mkdir -p "$out.logs" && cp "$workdir"/server*.log "$out.logs/" 2>/dev/null || true
  fi
  rm -rf "$workdir"
  stop_started_services
}
trap cleanup EXIT
require_postgres
scripts/kafka.sh install
log "building the release binary"
cargo build --release --bin sneakerstop
bin=target/release/sneakerstop
# The matching engine alone (crates/market/benches/matching.rs): no database, one core.
log "the matching engine alone (criterion)"
rm -rf target/criterion/matching
cargo bench -p sneakerstop-market --bench matching -- --warm-up-time 1 --measurement-time "$([ -n "${BENCH_QUICK:-}" ] && echo 2 || echo 5)"
engine_ops=$(python3 - <<'PY'
import glob, json
# One measured iteration is 10,000 operations (OPERATIONS in the bench).
[path] = glob.glob("target/criterion/matching/*/new/estimates.json")
print(round(10_000 / (json.load(open(path))["mean"]["point_estimate"] / 1e9)))
PY
)
log "matching engine: $engine_ops operations/s"

log "the yardstick: PostgreSQL's ceiling for a listing and its outbox row (pgbench, median of 3)"
if [ -n "${BENCH_QUICK:-}" ]; then export YARDSTICK_SECONDS=${YARDSTICK_SECONDS:-3}; fi
yardstick=$(scripts/yardstick.sh "$bin")
log "yardstick: $yardstick tx/s"

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

# Runs one scenario; its table goes to the terminal and to the report.
run() {
  local name=$1; shift
  log "scenario $name"
  "$bin" load --base-url "$base" ${rss_pid:+--server-pid "$rss_pid"} --yardstick "$yardstick" \
    --json-out "$workdir/$name.json" "$@" | tee -a "$workdir/tables.txt"
  echo | tee -a "$workdir/tables.txt"
}
# A line of the report.
note() { echo "$*" | tee -a "$workdir/tables.txt"; }

# CPU seconds used so far by the server, PostgreSQL and the broker, and by the whole
# machine (/proc/stat): "server postgres kafka machine".
cpu_now() {
  python3 - "${server_pid:-0}" <<'PY'
import os, subprocess, sys
hz = os.sysconf("SC_CLK_TCK")
def ticks(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return 0
def group(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return sum(ticks(pid) for pid in out)
server = ticks(sys.argv[1]) if sys.argv[1] != "0" else 0
cpu = open("/proc/stat").readline().split()[1:]
busy = sum(int(v) for v in cpu) - int(cpu[3]) - int(cpu[4])
print(*(round(t / hz, 2) for t in (server, group("^postgres"), group("kafka.Kafka"), busy)))
PY
}

# A market run, with where its CPU went and what the writer's batches were: CPU seconds
# per 1,000 book operations by process (the driver is the machine's rest), batches
# (commits) per second and their mean size, from the server's metrics.
market_run() {
  local name=$1; shift
  local before after metrics_before
  before=$(cpu_now)
  metrics_before=$(curl -s "$base/metrics" | grep -E '^market_book_batch_(size|seconds)_(sum|count) ' || true)
  run "$name" "$@"
  after=$(cpu_now)
  python3 - "$workdir/$name.json" "$before" "$after" "$metrics_before" "$(curl -s "$base/metrics" | grep -E '^market_book_batch_(size|seconds)_(sum|count) ' || true)" \
    >>"$workdir/$name.cpu" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
before, after = ([float(v) for v in a.split()] for a in sys.argv[2:4])
server, pg, kafka, machine = (b - a for a, b in zip(before, after))
ops = report["market"]["bookOperations"] or 1
def metric(text, name):
    return next((float(l.split()[1]) for l in text.splitlines() if l.startswith(name + " ")), 0.0)
batches = metric(sys.argv[5], "market_book_batch_size_count") - metric(sys.argv[4], "market_book_batch_size_count")
commands = metric(sys.argv[5], "market_book_batch_size_sum") - metric(sys.argv[4], "market_book_batch_size_sum")
per = lambda cpu: 1000 * cpu / ops
print(f"  CPU s per 1,000 book operations: server {per(server):.2f}, PostgreSQL {per(pg):.2f}, Kafka {per(kafka):.2f}, "
      f"driver and the rest {per(machine - server - pg - kafka):.2f}")
took = metric(sys.argv[5], "market_book_batch_seconds_sum") - metric(sys.argv[4], "market_book_batch_seconds_sum")
print(f"  writer: {batches / report['seconds']:.0f} batches (commits)/s, {commands / max(batches, 1):.1f} commands per batch, "
      f"{1000 * took / max(batches, 1):.1f} ms per batch from its start to its commit")
PY
  note "$(cat "$workdir/$name.cpu")"
  echo | tee -a "$workdir/tables.txt"
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

# Stops the server this script started and starts it again with further VAR=value settings.
restart_server() {
  local log_file=$1; shift
  kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true
  start_server "$log_file" "$@"
}

# A paced list: a fixed rate of 0.05 × the yardstick, at which the event hops are measured
# with the machine far from saturated.
list_rate=$(python3 -c "print(max(1, round(0.05 * $yardstick)))")
note "yardstick: PostgreSQL's ceiling for one listing-and-outbox insert, $yardstick tx/s (pgbench, 32 clients, median of 3)"
note
run browse --scenario browse --duration "$(secs 30s)" --concurrency 64 --users 4 --seed-listings "$browse_seed"
if [ -n "$server_pid" ]; then
  # The same browse with the catalog's read cache off: every page is a PostgreSQL query.
  log "restarting the server with the catalog read cache off"
  restart_server server-uncached.log CATALOG_CACHE_MAX_AGE=0s
  run browse-uncached --scenario browse --duration "$(secs 30s)" --concurrency 64 --users 4 --seed-listings 0
  restart_server server-2.log
fi
run list --scenario list --duration "$(secs 20s)" --concurrency 32 --users 16 --seed-listings 0
run list-paced --scenario list --duration "$(secs 20s)" --rate "$list_rate" --users 16 --seed-listings 0
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
  market_run market --scenario market --duration "$(secs 30s)" --concurrency 64 --users 64 --seed-listings 0 \
    --market-products 4 --market-streams 50
  # The same market paced (open loop) at 0.025, 0.05, 0.1 and 0.15 × the yardstick in book
  # operations (an iteration is 1.2 of them: one in five bids and cancels): its latency at
  # rates below saturation, where the closed loop above shows how many it does at most
  # (and latency there is mostly queueing: 64 workers / throughput).
  for share in 0.025 0.05 0.1 0.15; do
    rate=$(python3 -c "print(max(1, round($share * $yardstick / 1.2)))")
    market_run "market-paced-$share" --scenario market --duration "$(secs 20s)" --rate "$rate" --users 64 \
      --seed-listings 0 --market-products 4 --market-streams 50
  done
  # The storefront: shoppers opening product pages (three API reads and a render each), and
  # what a browser downloads for each page.
  run storefront --scenario storefront --duration "$(secs 20s)" --concurrency 32 --users 4 --seed-listings 0 \
    --market-products 4
else
  note "scenarios market and storefront skipped: set LOAD_ADMIN_EMAIL and LOAD_ADMIN_PASSWORD (an admin of the running server)"
fi

if [ -n "$server_pid" ]; then
  # Tracing's overhead: the same list and purchase runs again with every span exported over
  # OTLP/HTTP to a local receiver (a sink that reads and acknowledges each export, as a
  # collector would), against the runs above with export off.
  log "restarting the server with traces exported to a local OTLP receiver"
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
  restart_server server-traced.log OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port"
  run list-traced --scenario list --duration "$(secs 20s)" --concurrency 32 --users 16 --seed-listings 0
  run purchase-traced --scenario purchase --duration "$(secs 60s)" --concurrency 48 --users 48 --seed-listings 0
  note "spans (traced runs):"
  note "$(curl -s "$base/metrics" | grep -E '^otel_spans_(exported|dropped|export_failed)_total' || echo "  none counted")"
  kill "$sink_pid" 2>/dev/null || true
fi

python3 - "$workdir" "$out.json" "$rev" "$stamp" "$cores" "$mem_gib" "$yardstick" "$engine_ops" <<'PY'
import json, sys, os
work, target, rev, stamp, cores, mem, yardstick, engine = sys.argv[1:]
names = ["browse", "browse-uncached", "list", "list-paced", "purchase", "drop", "login-flood", "market",
         "market-paced-0.025", "market-paced-0.05", "market-paced-0.1", "market-paced-0.15", "storefront",
         "list-traced", "purchase-traced"]
reports = {n: json.load(open(os.path.join(work, f"{n}.json"))) for n in names if os.path.exists(os.path.join(work, f"{n}.json"))}
json.dump({"revision": rev, "date": stamp, "machine": {"cores": int(cores), "memoryGiB": float(mem)},
           "yardstickTps": float(yardstick), "matchingEngineOpsPerSecond": int(engine), "reports": reports},
          open(target, "w"), indent=2)
PY
# The targets (docs/performance.md), each as a ratio to the yardstick of this run.
python3 - "$out.json" >"$workdir/targets.txt" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
reports, tps = doc["reports"], doc["yardstickTps"]
def ratio(scenario, name):
    return reports.get(scenario, {}).get("ratios", {}).get(name)
rows = [
    ("uncached browse, a page of 20 and a listing (browse-uncached, all requests)", ratio("browse-uncached", "requests"), ">=", 1.0),
    ("signed-in listing POST (list)", ratio("list", "POST /api/sneakers"), ">=", 0.5),
    ("purchases/s (purchase)", ratio("purchase", "purchases"), ">=", 0.03),
    ("book operations/s, closed loop (market)", ratio("market", "bookOperations"), ">=", 0.25),
]
market = reports.get("market", {}).get("market")
if market:
    rows.append(("completed matched sales/s (market)", market["salesPerSecond"] / tps, ">=", 0.015))
rows.append(("storefront product pages/s (storefront)", ratio("storefront", "GET /products/{id} (page)"), ">=", 0.3))
print(f"targets, as ratios to the yardstick ({tps:.0f} tx/s):")
for what, value, op, goal in rows:
    shown = "-" if value is None else f"{value:.3f}"
    met = value is not None and value >= goal
    print(f"  {what}: {shown} × PG (target {op} {goal}) {'met' if met else 'NOT met'}")
engine = doc.get("matchingEngineOpsPerSecond")
if engine:
    print(f"  matching engine alone: {engine:,} operations/s on one core (target >= 1,000,000) {'met' if engine >= 1_000_000 else 'NOT met'}")
for share in ["0.025", "0.05", "0.1", "0.15"]:
    paced = reports.get(f"market-paced-{share}")
    if not paced:
        continue
    worst = max((e["latencyMs"]["p99"], e["endpoint"]) for e in paced["endpoints"]
                if e["endpoint"] in ("POST /api/bids", "POST /api/sneakers (ask)", "DELETE /api/bids/{id}"))
    done = paced["market"]["bookOperationsPerSecond"] / tps
    goal = " (target < 50 ms)" + (" met" if worst[0] < 50 else " NOT met") if share == "0.1" else ""
    print(f"  market paced at {share} × PG ({done:.3f} done): worst p99 {worst[0]:.0f} ms ({worst[1]}){goal}")
storefront = reports.get("storefront")
if storefront:
    page = next(e for e in storefront["endpoints"] if e["endpoint"] == "GET /products/{id} (page)")
    p99 = page["latencyMs"]["p99"]
    print(f"  storefront product page p99: {p99:.1f} ms (target < 50 ms) {'met' if p99 < 50 else 'NOT met'}")
    heaviest = max(storefront.get("pages", []), key=lambda p: p["htmlBytes"] + p["assetBytes"], default=None)
    if heaviest:
        total = (heaviest["htmlBytes"] + heaviest["assetBytes"]) / 1000
        print(f"  heaviest storefront page: {heaviest['page']} {total:.1f} KB with its CSS and script (target < 100 KB) {'met' if total < 100 else 'NOT met'}")
def bucket(ms):
    # A p99 past the histogram's largest bucket has no bound (null in the report).
    return "beyond the largest bucket" if ms is None else f"<= {ms:.0f} ms"
if market and market.get("matchToSale"):
    p99 = market["matchToSale"]["p99Ms"]
    print(f"  match to sale p99 bucket (market): {bucket(p99)} (target < 1000 ms) {'met' if p99 is not None and p99 < 1000 else 'NOT met'}")
hops = reports.get("list-paced", {}).get("eventHops", {})
for group, hop in sorted(hops.items()):
    met = hop["p99Ms"] is not None and hop["p99Ms"] <= 25
    print(f"  event hop p99, paced list, {group}: {bucket(hop['p99Ms'])} (target <= 25 ms) {'met' if met else 'NOT met'}")
PY
cat "$workdir/targets.txt"
{
  echo "# Benchmark $stamp, revision $rev"
  echo
  echo "Machine: $cores cores, $mem_gib GiB; release build; all services in one process; local PostgreSQL;"
  echo "Broker: ${broker:-as configured by the stack that was already running}."
  echo
  echo '```'
  cat "$workdir/targets.txt"
  echo
  cat "$workdir/tables.txt"
  echo '```'
} >"$out.md"
log "results written to $out.json and $out.md"
