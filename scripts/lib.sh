# Shared helpers for the project's scripts. Sourced, not run.
# shellcheck shell=bash

export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The PostgreSQL server every script uses (the machine's local one by default).
: "${PG_ADMIN_URL:=postgres://postgres@127.0.0.1:5432/postgres}"

# Fails with a clear message when PostgreSQL does not answer.
require_postgres() {
  local i
  for i in $(seq 1 30); do
    if psql "$PG_ADMIN_URL" -qtAc 'SELECT 1' >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "PostgreSQL does not answer at $PG_ADMIN_URL (start it, or set PG_ADMIN_URL)"
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
