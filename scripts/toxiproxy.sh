#!/usr/bin/env bash
# Run Toxiproxy, a real TCP fault proxy, on 127.0.0.1 for the reliability suite's network faults:
# built once from its Go module (the Go module proxy serves it), API on a loopback port.
# Proxies and their toxics are made by the tests through the API; `scripts/kafka.sh proxy-routes`
# and `replication-routes` list the routes the brokers advertise. `scripts/toxiproxy.sh help` lists the commands.
set -euo pipefail

LOG_TAG=toxiproxy
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-v2.5.0}"
# Below the kernel's ephemeral range (32768-60999), so no client socket can take it first.
TOXIPROXY_PORT="${TOXIPROXY_PORT:-28474}"
TOXIPROXY_START_TIMEOUT="${TOXIPROXY_START_TIMEOUT:-30}"
GO="${GO:-go}"

readonly TOXIPROXY_HOME="$CACHE_DIR/toxiproxy/$TOXIPROXY_VERSION"
readonly TOXIPROXY_BIN="$TOXIPROXY_HOME/server"
readonly TOXIPROXY_RUN="$RUN_DIR/toxiproxy"
readonly PID_FILE="$TOXIPROXY_RUN/pid"
readonly OUT_FILE="$TOXIPROXY_RUN/server.log"
readonly LOCK_FILE="$RUN_DIR/toxiproxy.lock"

usage() {
  cat <<USAGE
Usage: scripts/toxiproxy.sh COMMAND

Runs Toxiproxy $TOXIPROXY_VERSION with its HTTP API on 127.0.0.1:$TOXIPROXY_PORT.

  fetch    build the server once: go install github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION
           into ${TOXIPROXY_HOME#"$ROOT_DIR"/}
  start    fetch if needed, start in the background, wait until the API answers (no-op when running)
  stop     SIGTERM (SIGKILL after 10 s); every proxy goes with it
  status   pid and API. Exit 0 up, 1 unhealthy, 3 stopped.
  url      print http://127.0.0.1:$TOXIPROXY_PORT
  env      print: export ORDERSTREAM_TOXIPROXY_URL=...

Environment: TOXIPROXY_VERSION ($TOXIPROXY_VERSION), TOXIPROXY_PORT ($TOXIPROXY_PORT),
TOXIPROXY_START_TIMEOUT, GO ($GO: a Go toolchain, 1.22 or newer), ORDERSTREAM_CACHE_DIR,
ORDERSTREAM_RUN_DIR.
USAGE
}

cmd_fetch() {
  [[ -x $TOXIPROXY_BIN ]] && return 0
  command -v "$GO" >/dev/null 2>&1 || die "'$GO' is not on PATH: Toxiproxy is built from its Go module"
  mkdir -p "$TOXIPROXY_HOME"
  log "building Toxiproxy $TOXIPROXY_VERSION with $("$GO" version) (first time only) ..."
  # Outside any module: `go install pkg@version` resolves the tool's own go.mod.
  (cd "$TOXIPROXY_HOME" && GOBIN="$TOXIPROXY_HOME" GOFLAGS=-mod=mod \
    "$GO" install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION") ||
    die "could not build Toxiproxy $TOXIPROXY_VERSION"
  log "Toxiproxy ready in ${TOXIPROXY_HOME#"$ROOT_DIR"/}"
}

toxiproxy_pid() {
  pidfile_pid "$PID_FILE" "$TOXIPROXY_BIN"
}

healthy() {
  toxiproxy_pid >/dev/null || return 2
  curl -fsS --max-time 2 "http://127.0.0.1:$TOXIPROXY_PORT/version" >/dev/null 2>&1
}

cmd_start() {
  cmd_fetch
  with_lock "$LOCK_FILE"
  local pid t0 rc=0
  if pid="$(toxiproxy_pid)"; then
    log "Toxiproxy already running (pid $pid) on 127.0.0.1:$TOXIPROXY_PORT; nothing to do"
    return 0
  fi
  require_port_free "$TOXIPROXY_PORT" "Toxiproxy API"
  mkdir -p "$TOXIPROXY_RUN"
  t0="$(now_ms)"
  start_detached "$PID_FILE" "$OUT_FILE" "$TOXIPROXY_BIN" -host 127.0.0.1 -port "$TOXIPROXY_PORT"
  wait_until "$TOXIPROXY_START_TIMEOUT" 0.2 "the Toxiproxy API" healthy || rc=$?
  if ((rc != 0)); then
    tail -n 20 "$OUT_FILE" >&2 || true
    die "Toxiproxy did not answer (see $OUT_FILE)"
  fi
  log "Toxiproxy $TOXIPROXY_VERSION up on 127.0.0.1:$TOXIPROXY_PORT (pid $(toxiproxy_pid)) in $(elapsed_s "$t0")s"
}

cmd_stop() {
  with_lock "$LOCK_FILE"
  local pid
  if pid="$(toxiproxy_pid)"; then
    stop_pid "$pid" 10 Toxiproxy
    log "Toxiproxy stopped"
  else
    log "Toxiproxy is not running"
  fi
  rm -f "$PID_FILE"
}

cmd_status() {
  local pid
  if ! pid="$(toxiproxy_pid)"; then
    echo "Toxiproxy: stopped"
    return 3
  fi
  if healthy; then
    echo "Toxiproxy: up (pid $pid), API http://127.0.0.1:$TOXIPROXY_PORT"
    return 0
  fi
  echo "Toxiproxy: process $pid running but its API does not answer"
  return 1
}

main() {
  local cmd="${1:-help}"
  shift || true
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) printf 'http://127.0.0.1:%s\n' "$TOXIPROXY_PORT" ;;
    env) printf 'export ORDERSTREAM_TOXIPROXY_URL=%q\n' "http://127.0.0.1:$TOXIPROXY_PORT" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
