#!/usr/bin/env bash
# The local Kafka-protocol broker (Tansu), installed and run by the project's own scripts.
#
#   scripts/broker.sh install                 install Tansu $TANSU_VERSION unless present
#   scripts/broker.sh start PORT STORAGE DIR  start it on 127.0.0.1:PORT, in DIR, wait until
#                                             it accepts connections; prints its pid
#   scripts/broker.sh stop DIR                stop the broker started in DIR
#
# STORAGE is a Tansu storage URL: memory://tansu/ (tests) or sqlite://tansu.db (make run;
# the path is relative to DIR, so the log survives restarts).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

TANSU_VERSION=0.6.0

installed_version() {
  cargo install --list 2>/dev/null | sed -n 's/^tansu v\([0-9.]*\):$/\1/p'
}

install() {
  if [ "$(installed_version)" = "$TANSU_VERSION" ] && command -v tansu >/dev/null; then
    return 0
  fi
  log "installing the Tansu broker $TANSU_VERSION (once per machine; about 10 minutes on two cores)"
  # dynostore + libsql are the storage engines that run here (memory:// and sqlite://).
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql --force
}

wait_for_port() {
  local port=$1 pid=$2 deadline=$((SECONDS + 30))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || die "the broker exited; see its log in $3/broker.log"
    [ $SECONDS -lt $deadline ] || die "the broker did not listen on port $port within 30s"
    sleep 0.2
  done
}

start() {
  local port=$1 storage=$2 dir=$3
  mkdir -p "$dir"
  if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
    log "broker already running (pid $(cat "$dir/broker.pid"))"
    cat "$dir/broker.pid"
    return 0
  fi
  (
    cd "$dir"
    # Tansu's flags also read these variables; unset them so only our flags count.
    unset CLUSTER_ID LISTENER_URL ADVERTISED_LISTENER_URL STORAGE_ENGINE
    # Its own session: a ctrl-c meant for `make run` must not stop the broker before the
    # server has drained; the script stops it afterwards.
    exec setsid tansu broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "$storage" >broker.log 2>&1
  ) &
  local pid=$!
  echo "$pid" >"$dir/broker.pid"
  wait_for_port "$port" "$pid" "$dir"
  echo "$pid"
}

stop() {
  local dir=$1 pid
  [ -f "$dir/broker.pid" ] || return 0
  pid=$(cat "$dir/broker.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/broker.pid"
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: $0 install | start PORT STORAGE DIR | stop DIR" ;;
esac
