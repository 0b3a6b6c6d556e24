#!/usr/bin/env bash
# The local PostgreSQL server, set up by the project's own scripts.
#
#   scripts/postgres.sh ensure   make PG_ADMIN_URL answer: when nothing answers there and it
#                                names this machine, install PostgreSQL from Debian's packages
#                                (as root), create and start its cluster, and allow the
#                                loopback connections the project uses. Prints "started" when
#                                it started the server, "running" when one already answered.
#   scripts/postgres.sh stop     stop the cluster (only what `ensure` started should be
#                                stopped: the callers remember what it printed).
#
# A machine where PostgreSQL already answers at PG_ADMIN_URL is left exactly as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

answers() { psql "$PG_ADMIN_URL" -qtAc 'SELECT 1' >/dev/null 2>&1; }

# The newest installed server version (Debian keeps one directory per major version).
server_version() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] && basename "$(dirname "$(dirname "$bin")")"
}

install_server() {
  if [ "$(id -u)" != 0 ]; then
    die "PostgreSQL is not installed; run: sudo apt-get install -y postgresql   (or set PG_ADMIN_URL to a server of your own)"
  fi
  log "installing PostgreSQL from Debian's packages (once per machine)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
}

# The project connects as `postgres` over loopback without a password (PG_ADMIN_URL's
# default). Allow exactly that, above Debian's own rules, once.
allow_loopback() {
  local version=$1 hba
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  grep -q 'sneakerstop' "$hba" && return 0
  local tmp
  tmp=$(mktemp)
  {
    echo "# sneakerstop: the local user postgres over loopback, as PG_ADMIN_URL expects"
    echo "host all postgres 127.0.0.1/32 trust"
    echo "host all postgres ::1/128 trust"
    cat "$hba"
  } >"$tmp"
  cat "$tmp" >"$hba"
  rm -f "$tmp"
}

# Room for the tests: a server runs five services, each with its own pool (up to
# DATABASE_POOL_SIZE, 10) plus its relay's and change feed's connections, and tests run
# several servers at once (two on one database in the failover tests) beside the tests' own
# pools. Debian's default of 100 connections is not enough for that; 400 is.
tune() {
  local version=$1 conf
  conf="/etc/postgresql/$version/main/conf.d/sneakerstop.conf"
  [ -f "$conf" ] && return 0
  mkdir -p "$(dirname "$conf")"
  echo "max_connections = 400" >"$conf"
  chown postgres:postgres "$conf" 2>/dev/null || true
}

ensure() {
  if answers; then echo running; return 0; fi
  case "$PG_ADMIN_URL" in
    *@127.0.0.1:*|*@localhost:*|*@127.0.0.1/*|*@localhost/*) ;;
    *) die "PostgreSQL does not answer at $PG_ADMIN_URL (it is not this machine's, so the scripts leave it to you)" ;;
  esac
  local version
  version=$(server_version || true)
  [ -n "$version" ] || { install_server; version=$(server_version); }
  [ -n "$version" ] || die "PostgreSQL was installed but no server binary was found under /usr/lib/postgresql"
  [ "$(id -u)" = 0 ] || die "PostgreSQL $version is installed but not running; run: sudo pg_ctlcluster $version main start"
  if [ ! -d "/etc/postgresql/$version/main" ]; then
    log "creating the PostgreSQL $version cluster"
    pg_createcluster "$version" main >/dev/null
  fi
  allow_loopback "$version"
  tune "$version"
  log "starting PostgreSQL $version"
  pg_ctlcluster "$version" main start || pg_ctlcluster "$version" main reload
  local deadline=$((SECONDS + 30))
  until answers; do
    [ $SECONDS -lt $deadline ] || die "PostgreSQL $version started but does not answer at $PG_ADMIN_URL within 30s"
    sleep 0.2
  done
  echo started
}

stop() {
  local version
  version=$(server_version || true)
  [ -n "$version" ] || return 0
  log "stopping PostgreSQL $version"
  pg_ctlcluster "$version" main stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  ensure) ensure ;;
  stop) stop ;;
  *) die "usage: $0 ensure | stop" ;;
esac
