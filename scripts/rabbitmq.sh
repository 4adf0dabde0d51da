#!/usr/bin/env bash
# Run a real RabbitMQ on 127.0.0.1 for the notification sink and its tests: Debian's
# rabbitmq-server package (Erlang included), started from the repository with its own node
# name, ports, data and log directories, so it never touches a system-wide RabbitMQ.
# `scripts/rabbitmq.sh help` lists the commands.
set -euo pipefail

LOG_TAG=rabbitmq
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Below the kernel's ephemeral range (32768-60999), so no client socket can take them first.
RABBITMQ_PORT="${RABBITMQ_PORT:-26572}"
RABBITMQ_DIST_PORT="${RABBITMQ_DIST_PORT:-26573}"
RABBITMQ_EPMD_PORT="${RABBITMQ_EPMD_PORT:-26369}"
RABBITMQ_START_TIMEOUT="${RABBITMQ_START_TIMEOUT:-90}"
RABBITMQ_STOP_TIMEOUT="${RABBITMQ_STOP_TIMEOUT:-60}"
RABBITMQ_HOME_DIR="${RABBITMQ_HOME_DIR:-/usr/lib/rabbitmq}"

readonly NODE_NAME="orderstream@localhost"
readonly RMQ_RUN="$RUN_DIR/rabbitmq"
readonly PID_FILE="$RMQ_RUN/pid"
readonly OUT_FILE="$RMQ_RUN/server.out"
readonly LOCK_FILE="$RUN_DIR/rabbitmq.lock"
readonly USER_NAME=orderstream
# The password of USER_NAME (0600), generated at the first start; only `url` and `env` show it.
readonly PASSWORD_FILE="$RMQ_RUN/password"

usage() {
  cat <<USAGE
Usage: scripts/rabbitmq.sh COMMAND

Runs RabbitMQ (Debian's rabbitmq-server) as node $NODE_NAME, AMQP on 127.0.0.1:$RABBITMQ_PORT,
user '$USER_NAME' on vhost '/'. Data and logs in ${RMQ_RUN#"$ROOT_DIR"/}.

  start    start in the background and wait until the node has booted (no-op when running)
  stop     stop the node gracefully (SIGKILL after $RABBITMQ_STOP_TIMEOUT s) and its epmd; data kept
  restart  stop, then start
  kill     SIGKILL the node (a crash: unconfirmed messages are lost to the broker, connections reset)
  status   pid and whether the node answers. Exit 0 up, 1 unhealthy, 3 stopped.
  url      print amqp://$USER_NAME:PASSWORD@127.0.0.1:$RABBITMQ_PORT/%2f
  env      print: export ORDERSTREAM_AMQP_URL=...
  ctl      run rabbitmqctl against the node (extra arguments go to it)
  reset    stop and delete ${RMQ_RUN#"$ROOT_DIR"/}

Environment: RABBITMQ_PORT ($RABBITMQ_PORT), RABBITMQ_DIST_PORT ($RABBITMQ_DIST_PORT),
RABBITMQ_EPMD_PORT ($RABBITMQ_EPMD_PORT), RABBITMQ_START_TIMEOUT, RABBITMQ_STOP_TIMEOUT,
RABBITMQ_HOME_DIR ($RABBITMQ_HOME_DIR: where the package's bin/ lives).
Install: apt-get install rabbitmq-server (.ci/run does).
USAGE
}

require_rabbitmq() {
  [[ -x "$RABBITMQ_HOME_DIR/bin/rabbitmq-server" ]] ||
    die "RabbitMQ is not installed ($RABBITMQ_HOME_DIR/bin/rabbitmq-server missing). Debian/Ubuntu: apt-get install rabbitmq-server"
}

# The node's environment: everything under RMQ_RUN, nothing in /var/lib/rabbitmq or /etc.
rabbit_env() {
  export HOME="$RMQ_RUN/home"
  export RABBITMQ_NODENAME="$NODE_NAME"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$RABBITMQ_PORT"
  export RABBITMQ_DIST_PORT
  export ERL_EPMD_PORT="$RABBITMQ_EPMD_PORT"
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE="$RMQ_RUN/data"
  export RABBITMQ_LOG_BASE="$RMQ_RUN/log"
  export RABBITMQ_CONFIG_FILE="$RMQ_RUN/rabbitmq"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_RUN/enabled_plugins"
  export RABBITMQ_PID_FILE="$RMQ_RUN/beam.pid"
}

ctl() {
  rabbit_env
  "$RABBITMQ_HOME_DIR/bin/rabbitmqctl" -n "$NODE_NAME" "$@"
}

rabbit_pid() {
  pidfile_pid "$PID_FILE" "rabbit"
}

password() {
  [[ -s "$PASSWORD_FILE" ]] || return 1
  cat "$PASSWORD_FILE"
}

write_config() {
  mkdir -p "$RMQ_RUN/home" "$RMQ_RUN/data" "$RMQ_RUN/log"
  chmod 700 "$RMQ_RUN/home"
  echo '[].' >"$RMQ_RUN/enabled_plugins"
  cat >"$RMQ_RUN/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$RABBITMQ_PORT
loopback_users = none
# Test machines have small disks: do not block publishers above 200 MB free.
disk_free_limit.absolute = 200MB
CONF
}

# 0 when the node has booted, 2 when its process is gone (no point waiting).
node_ready() {
  rabbit_pid >/dev/null || return 2
  port_listening "$RABBITMQ_PORT" || return 1
  ctl -q await_startup --timeout 5 >/dev/null 2>&1
}

ensure_user() {
  local pw
  if ! pw="$(password)"; then
    pw="$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)"
    (umask 077 && printf '%s\n' "$pw" >"$PASSWORD_FILE")
  fi
  if ctl -q list_users 2>/dev/null | awk '{ print $1 }' | grep -qx "$USER_NAME"; then
    ctl -q change_password "$USER_NAME" "$pw" >/dev/null
  else
    ctl -q add_user "$USER_NAME" "$pw" >/dev/null
  fi
  ctl -q set_user_tags "$USER_NAME" administrator >/dev/null
  ctl -q set_permissions -p / "$USER_NAME" '.*' '.*' '.*' >/dev/null
}

cmd_start() {
  require_rabbitmq
  with_lock "$LOCK_FILE"
  local pid t0 rc=0
  if pid="$(rabbit_pid)"; then
    log "RabbitMQ already running (pid $pid) on 127.0.0.1:$RABBITMQ_PORT; nothing to do"
    return 0
  fi
  require_port_free "$RABBITMQ_PORT" "RabbitMQ AMQP"
  require_port_free "$RABBITMQ_DIST_PORT" "RabbitMQ distribution"
  write_config
  t0="$(now_ms)"
  rabbit_env
  start_detached "$PID_FILE" "$OUT_FILE" "$RABBITMQ_HOME_DIR/bin/rabbitmq-server"
  wait_until "$RABBITMQ_START_TIMEOUT" 1 "RabbitMQ to boot" node_ready || rc=$?
  if ((rc != 0)); then
    tail -n 20 "$OUT_FILE" >&2 || true
    die "RabbitMQ did not boot (see $OUT_FILE and ${RMQ_RUN#"$ROOT_DIR"/}/log)"
  fi
  ensure_user
  log "RabbitMQ up on 127.0.0.1:$RABBITMQ_PORT (pid $(rabbit_pid)) in $(elapsed_s "$t0")s"
}

cmd_stop() {
  require_rabbitmq
  with_lock "$LOCK_FILE"
  local pid beam
  if pid="$(rabbit_pid)"; then
    # A graceful stop flushes the queues' logs; SIGTERM then SIGKILL are the fallback.
    ctl -q stop >/dev/null 2>&1 || true
    if ! wait_pid_gone "$pid" "$RABBITMQ_STOP_TIMEOUT"; then
      # The Erlang VM is a child of the start script: signal it first, then the script.
      beam="$(pidfile_pid "$RMQ_RUN/beam.pid" beam)" && stop_pid "$beam" 10 "RabbitMQ (Erlang VM)"
      stop_pid "$pid" 10 RabbitMQ
    fi
    log "RabbitMQ stopped"
  else
    log "RabbitMQ is not running"
  fi
  rm -f "$PID_FILE"
  # The node started its own epmd on our port; it outlives the node unless told to go.
  rabbit_env
  if port_listening "$RABBITMQ_EPMD_PORT"; then
    epmd -port "$RABBITMQ_EPMD_PORT" -kill >/dev/null 2>&1 || true
  fi
}

cmd_kill() {
  with_lock "$LOCK_FILE"
  local pid beam
  pid="$(rabbit_pid)" || die "RabbitMQ is not running"
  if beam="$(pidfile_pid "$RMQ_RUN/beam.pid" beam)"; then
    kill -KILL "$beam" 2>/dev/null || true
    wait_pid_gone "$beam" 10 || die "RabbitMQ's Erlang VM (pid $beam) survived SIGKILL"
  fi
  kill -KILL "$pid" 2>/dev/null || true
  wait_pid_gone "$pid" 10 || die "RabbitMQ (pid $pid) survived SIGKILL"
  rm -f "$PID_FILE"
  log "RabbitMQ killed (SIGKILL)"
}

cmd_status() {
  local pid
  if ! pid="$(rabbit_pid)"; then
    echo "RabbitMQ: stopped"
    return 3
  fi
  if node_ready; then
    echo "RabbitMQ: up (pid $pid) on 127.0.0.1:$RABBITMQ_PORT"
    return 0
  fi
  echo "RabbitMQ: process $pid running but the node does not answer"
  return 1
}

cmd_url() {
  local pw
  pw="$(password)" || die "no password yet: start RabbitMQ first (scripts/rabbitmq.sh start)"
  printf 'amqp://%s:%s@127.0.0.1:%s/%%2f\n' "$USER_NAME" "$pw" "$RABBITMQ_PORT"
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
    url) cmd_url ;;
    env) printf 'export ORDERSTREAM_AMQP_URL=%q\n' "$(cmd_url)" ;;
    ctl) ctl "$@" ;;
    reset)
      cmd_stop
      rm -rf "$RMQ_RUN"
      log "deleted ${RMQ_RUN#"$ROOT_DIR"/}"
      ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
