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

# Debian's chromium, for the test that opens the API documentation in a real browser.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || die "the browser test needs Chromium; run: sudo apt-get install -y chromium"
  log "installing Chromium from Debian's packages (once per machine)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}
