# Shared helpers for the project's scripts. Sourced, not run.
# shellcheck shell=bash

export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The PostgreSQL server every script uses (the machine's local one by default).
: "${PG_ADMIN_URL:=postgres://postgres@127.0.0.1:5432/postgres}"

# Makes PostgreSQL answer at PG_ADMIN_URL (installing and starting the machine's own when
# nothing answers; see scripts/postgres.sh) and stops it again when the calling script
# exits, if this call started it. Call once, before setting an EXIT trap of your own that
# calls stop_started_services.
STARTED_POSTGRES=""
require_postgres() {
  local state
  state=$(scripts/postgres.sh ensure)
  [ "$state" = started ] && STARTED_POSTGRES=1
  return 0
}

# Stops what require_postgres started (nothing when PostgreSQL was already running).
stop_started_services() {
  if [ -n "$STARTED_POSTGRES" ]; then scripts/postgres.sh stop; fi
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The browser tests' tools: Debian's Chromium and, from npm, Playwright's client and axe-core
# (tests/browser), installed from the lockfile again only when it changed.
ensure_browser() {
  ensure_chromium
  local stamp=tests/browser/node_modules/.installed-from-lock
  if [ -f "$stamp" ] && cmp -s tests/browser/package-lock.json "$stamp"; then return 0; fi
  log "installing the browser tests' npm packages (tests/browser)"
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
  cp tests/browser/package-lock.json "$stamp"
}

# Debian's chromium, for the tests that open pages in a real browser.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || die "the browser test needs Chromium; run: sudo apt-get install -y chromium"
  log "installing Chromium from Debian's packages (once per machine)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

# --- Phases: what a long script is doing, and how long each part took ---------------------
# `phase NAME` ends the phase before it and starts NAME; `phase_summary` ends the last one and
# prints one line with every phase's time (and the background jobs', see below).
PHASES=()
PHASE_NAME=""
PHASE_START=0
phase() {
  phase_end
  PHASE_NAME=$1
  PHASE_START=$SECONDS
  log "[$(clock)] $1"
}
phase_end() {
  [ -n "$PHASE_NAME" ] && PHASES+=("$PHASE_NAME $((SECONDS - PHASE_START))s")
  PHASE_NAME=""
}
clock() { printf '%dm%02ds' $((SECONDS / 60)) $((SECONDS % 60)); }
phase_summary() {
  local title=$1 joined="" part
  phase_end
  for part in "${PHASES[@]}"; do joined="${joined:+$joined, }$part"; done
  log "$title: $joined — $(clock) in all"
  [ ${#BACKGROUND_TIMES[@]} -eq 0 ] || log "  beside them, in the background: $(IFS=,; echo "${BACKGROUND_TIMES[*]}" | sed 's/,/, /g')"
}

# --- Background jobs: installs and checks that need no CPU-bound step before them ---------
# `background NAME COMMAND...` runs COMMAND now, its output in a log; `await NAME` waits for
# it and fails (showing the log) if it failed; `await NAME show` prints the log either way.
BACKGROUND_DIR=""
BACKGROUND_TIMES=()
declare -A BACKGROUND_PIDS=()
background() {
  local name=$1; shift
  [ -n "$BACKGROUND_DIR" ] || BACKGROUND_DIR=$(mktemp -d -t sneakerstop-jobs.XXXXXX)
  log "[$(clock)] started in the background: $name"
  (
    local started=$SECONDS
    "$@" >"$BACKGROUND_DIR/$name.log" 2>&1
    local status=$?
    echo "$((SECONDS - started))" >"$BACKGROUND_DIR/$name.seconds"
    exit $status
  ) &
  BACKGROUND_PIDS[$name]=$!
}
await() {
  local name=$1 mode=${2:-} status=0
  wait "${BACKGROUND_PIDS[$name]}" || status=$?
  BACKGROUND_TIMES+=("$name $(cat "$BACKGROUND_DIR/$name.seconds" 2>/dev/null || echo '?')s")
  if [ "$status" != 0 ] || [ "$mode" = show ]; then cat "$BACKGROUND_DIR/$name.log" >&2; fi
  [ "$status" = 0 ] || die "$name failed (exit $status)"
}
# Stops background jobs still running (a failed run leaves no installer behind).
stop_background() {
  local pid
  for pid in "${BACKGROUND_PIDS[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  [ -n "$BACKGROUND_DIR" ] && rm -rf "$BACKGROUND_DIR"
  return 0
}
