#!/usr/bin/env bash
# Run a real NATS server with JetStream on 127.0.0.1 for the notification sink and its tests:
# Debian's nats-server package, file storage in the repository's run directory.
# `scripts/nats.sh help` lists the commands.
set -euo pipefail

LOG_TAG=nats
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Below the kernel's ephemeral range (32768-60999), so no client socket can take them first.
NATS_PORT="${NATS_PORT:-24222}"
NATS_MONITOR_PORT="${NATS_MONITOR_PORT:-28222}"
NATS_START_TIMEOUT="${NATS_START_TIMEOUT:-30}"
NATS_STOP_TIMEOUT="${NATS_STOP_TIMEOUT:-30}"
NATS_SERVER="${NATS_SERVER:-nats-server}"

readonly NATS_RUN="$RUN_DIR/nats"
readonly PID_FILE="$NATS_RUN/pid"
readonly OUT_FILE="$NATS_RUN/server.log"
readonly STORE_DIR="$NATS_RUN/jetstream"
readonly LOCK_FILE="$RUN_DIR/nats.lock"

usage() {
  cat <<USAGE
Usage: scripts/nats.sh COMMAND

Runs nats-server with JetStream (-js) on 127.0.0.1:$NATS_PORT (monitoring on :$NATS_MONITOR_PORT),
file storage in ${STORE_DIR#"$ROOT_DIR"/}.

  start    start in the background and wait until /healthz says JetStream is ready (no-op when running)
  stop     SIGTERM (SIGKILL after $NATS_STOP_TIMEOUT s); stored messages kept
  restart  stop, then start
  kill     SIGKILL the server (a crash: nothing flushed)
  status   pid and health. Exit 0 up, 1 unhealthy, 3 stopped.
  url      print nats://127.0.0.1:$NATS_PORT
  env      print: export ORDERSTREAM_NATS_URL=...
  reset    stop and delete ${NATS_RUN#"$ROOT_DIR"/}

Environment: NATS_PORT ($NATS_PORT), NATS_MONITOR_PORT ($NATS_MONITOR_PORT), NATS_START_TIMEOUT,
NATS_STOP_TIMEOUT, NATS_SERVER ($NATS_SERVER). Install: apt-get install nats-server (.ci/run does).
USAGE
}

require_nats() {
  command -v "$NATS_SERVER" >/dev/null 2>&1 ||
    die "'$NATS_SERVER' is not on PATH. Debian/Ubuntu: apt-get install nats-server"
}

nats_pid() {
  pidfile_pid "$PID_FILE" "nats-server"
}

# 0 when JetStream answers healthy, 2 when the process is gone.
healthy() {
  nats_pid >/dev/null || return 2
  curl -fsS --max-time 2 "http://127.0.0.1:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" >/dev/null 2>&1
}

cmd_start() {
  require_nats
  with_lock "$LOCK_FILE"
  local pid t0 rc=0
  if pid="$(nats_pid)"; then
    log "NATS already running (pid $pid) on 127.0.0.1:$NATS_PORT; nothing to do"
    return 0
  fi
  require_port_free "$NATS_PORT" "NATS clients"
  require_port_free "$NATS_MONITOR_PORT" "NATS monitoring"
  mkdir -p "$STORE_DIR"
  t0="$(now_ms)"
  start_detached "$PID_FILE" "$OUT_FILE" "$NATS_SERVER" -n orderstream -a 127.0.0.1 \
    -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" -js -sd "$STORE_DIR"
  wait_until "$NATS_START_TIMEOUT" 0.2 "NATS JetStream to be healthy" healthy || rc=$?
  if ((rc != 0)); then
    tail -n 20 "$OUT_FILE" >&2 || true
    die "NATS did not become healthy (see $OUT_FILE)"
  fi
  log "NATS up on 127.0.0.1:$NATS_PORT (pid $(nats_pid)) in $(elapsed_s "$t0")s"
}

cmd_stop() {
  with_lock "$LOCK_FILE"
  local pid
  if pid="$(nats_pid)"; then
    stop_pid "$pid" "$NATS_STOP_TIMEOUT" NATS
    log "NATS stopped"
  else
    log "NATS is not running"
  fi
  rm -f "$PID_FILE"
}

cmd_kill() {
  with_lock "$LOCK_FILE"
  local pid
  pid="$(nats_pid)" || die "NATS is not running"
  kill -KILL "$pid"
  wait_pid_gone "$pid" 10 || die "NATS (pid $pid) survived SIGKILL"
  rm -f "$PID_FILE"
  log "NATS killed (SIGKILL)"
}

cmd_status() {
  local pid
  if ! pid="$(nats_pid)"; then
    echo "NATS: stopped"
    return 3
  fi
  if healthy; then
    echo "NATS: up (pid $pid) on 127.0.0.1:$NATS_PORT, JetStream healthy"
    return 0
  fi
  echo "NATS: process $pid running but not healthy"
  return 1
}

main() {
  local cmd="${1:-help}"
  shift || true
  case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart)
      cmd_stop
      cmd_start
      ;;
    kill) cmd_kill ;;
    status) cmd_status ;;
    url) printf 'nats://127.0.0.1:%s\n' "$NATS_PORT" ;;
    env) printf 'export ORDERSTREAM_NATS_URL=%q\n' "nats://127.0.0.1:$NATS_PORT" ;;
    reset)
      cmd_stop
      rm -rf "$NATS_RUN"
      log "deleted ${NATS_RUN#"$ROOT_DIR"/}"
      ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
