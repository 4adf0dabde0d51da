#!/usr/bin/env bash
# Brings up (and down) everything the pipeline and its tests need on this machine: the Kafka
# cluster (scripts/kafka.sh) and the Apicurio schema registry (scripts/registry.sh).
# Every command is idempotent: what already runs is left alone.
set -euo pipefail

LOG_TAG=services
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly KAFKA_SH="$ROOT_DIR/scripts/kafka.sh"
readonly REGISTRY_SH="$ROOT_DIR/scripts/registry.sh"
# Opt-in (up --with postgres,rabbitmq,nats); down and env handle each whenever it runs.
readonly POSTGRES_SH="$ROOT_DIR/scripts/postgres.sh"
readonly RABBITMQ_SH="$ROOT_DIR/scripts/rabbitmq.sh"
readonly NATS_SH="$ROOT_DIR/scripts/nats.sh"
# The secured Kafka node and the registry with basic auth (scripts/secure.sh runs both).
readonly SECURE_SH="$ROOT_DIR/scripts/secure.sh"
readonly OPTIONAL=(postgres rabbitmq nats secure)

# optional_sh NAME: the script of an opt-in service.
optional_sh() {
  case "$1" in
    postgres) printf '%s\n' "$POSTGRES_SH" ;;
    rabbitmq) printf '%s\n' "$RABBITMQ_SH" ;;
    nats) printf '%s\n' "$NATS_SH" ;;
    secure) printf '%s\n' "$SECURE_SH" ;;
    *) return 1 ;;
  esac
}

usage() {
  cat <<EOF
Usage: scripts/services.sh COMMAND

  up [--nodes 1|3] [--with postgres,rabbitmq,nats,secure] [--secure]
                    fetch (once) and start Kafka and the registry; wait until both answer.
                    --nodes as for scripts/kafka.sh start (default: the existing layout, else 1)
                    --with: also PostgreSQL (scripts/postgres.sh), RabbitMQ (scripts/rabbitmq.sh),
                    NATS with JetStream (scripts/nats.sh), the secured Kafka node and registry
                    (scripts/secure.sh); a comma list, or the flag repeated. --secure = --with secure
  down              stop the registry, every Kafka node, and each opt-in service that runs;
                    no server process is left
  status            both services' status. Exit 0 all up, 3 all stopped, 1 anything between.
  env               print shell exports for the test harness:
                      eval "\$(scripts/services.sh env)"
                    sets ORDERSTREAM_BOOTSTRAP, ORDERSTREAM_REGISTRY_URL, ORDERSTREAM_NODES,
                    and ORDERSTREAM_DATABASE_URL, ORDERSTREAM_AMQP_URL, ORDERSTREAM_NATS_URL for
                    the opt-in services that run (ORDERSTREAM_SECURE_* for the secured stack)

The environment variables of scripts/kafka.sh, scripts/registry.sh and the opt-in services' scripts apply
(see their help).
EOF
}

cmd_up() {
  local kafka_args=() t0 kafka_rc=0 registry_rc=0 registry_job with=() names=() name list rc failed=""
  while (($# > 0)); do
    case "$1" in
      --nodes)
        kafka_args=(--nodes "${2:-}")
        shift
        ;;
      --nodes=*) kafka_args=("$1") ;;
      --secure) with+=(secure) ;;
      --with | --with=*)
        if [[ "$1" == --with ]]; then
          list="${2:-}"
          shift
        else
          list="${1#--with=}"
        fi
        IFS=, read -r -a names <<<"$list"
        for name in "${names[@]}"; do
          optional_sh "$name" >/dev/null || die "up: --with takes ${OPTIONAL[*]} (comma-separated), not '$name'"
          with+=("$name")
        done
        ;;
      *) die "up: unknown argument '$1' (expected --nodes 1|3, --with ${OPTIONAL[*]})" ;;
    esac
    shift
  done
  local postgres="" secure=""
  for name in "${with[@]}"; do
    [[ "$name" != postgres ]] || postgres=1
    [[ "$name" != secure ]] || secure=1
  done
  t0="$(now_ms)"
  # Fetch all before starting any, so a download failure never leaves half a system up.
  "$KAFKA_SH" fetch
  "$REGISTRY_SH" fetch
  [[ -z "$postgres" ]] || "$POSTGRES_SH" fetch
  [[ -z "$secure" ]] || "$SECURE_SH" fetch
  # Every start-up is mostly VM warm-up (JVM, Erlang) and waiting for a port or a registration:
  # overlapping them all saves minutes of wall time. The opt-in services share nothing with
  # the cluster or the registry (own ports, own run dirs; the secured registry uses the secured
  # node, which its own script starts first).
  "$REGISTRY_SH" start &
  registry_job=$!
  local opt_jobs=()
  for name in "${with[@]}"; do
    "$(optional_sh "$name")" start &
    opt_jobs+=("$!")
  done
  "$KAFKA_SH" start "${kafka_args[@]}" || kafka_rc=$?
  wait "$registry_job" || registry_rc=$?
  local i
  for i in "${!with[@]}"; do
    rc=0
    wait "${opt_jobs[$i]}" || rc=$?
    ((rc == 0)) || failed+=", ${with[$i]} rc=$rc"
  done
  if ((kafka_rc != 0 || registry_rc != 0)) || [[ -n "$failed" ]]; then
    die "start-up failed (Kafka rc=$kafka_rc, registry rc=$registry_rc$failed; messages above). What did start keeps running: scripts/services.sh down stops it."
  fi
  log "all services up in $(elapsed_s "$t0")s"
  log "Kafka bootstrap: $("$KAFKA_SH" bootstrap)"
  log "Schema registry: $("$REGISTRY_SH" url)"
  for name in "${with[@]}"; do
    log "$("$(optional_sh "$name")" status)"
  done
}

# running SCRIPT: true when an opt-in service's script has a server process (answering or not).
running() {
  local rc=0
  "$1" status >/dev/null 2>&1 || rc=$?
  ((rc != 3))
}

cmd_down() {
  local registry_rc=0 kafka_rc=0 rc failed="" name sh scripts=("$KAFKA_SH" "$REGISTRY_SH")
  # Each stop escalates to SIGKILL on its own timeout, so none can hang here for ever.
  "$REGISTRY_SH" stop || registry_rc=$?
  "$KAFKA_SH" stop || kafka_rc=$?
  for name in "${OPTIONAL[@]}"; do
    sh="$(optional_sh "$name")"
    if running "$sh"; then
      rc=0
      "$sh" stop || rc=$?
      ((rc == 0)) || failed+=", $name rc=$rc"
      scripts+=("$sh")
    fi
  done
  ((registry_rc == 0 && kafka_rc == 0)) && [[ -z "$failed" ]] || die "stopping failed (registry rc=$registry_rc, Kafka rc=$kafka_rc$failed)"
  # Prove it: each reports "stopped" (exit 3) or "never set up" (also 3).
  local rc script
  for script in "${scripts[@]}"; do
    rc=0
    "$script" status >/dev/null 2>&1 || rc=$?
    ((rc == 3)) || die "$(basename "$script") still reports a running process after stop; see: $script status"
  done
  log "all services stopped; no server process left"
}

cmd_status() {
  local kafka_rc=0 registry_rc=0
  "$KAFKA_SH" status || kafka_rc=$?
  "$REGISTRY_SH" status || registry_rc=$?
  if ((kafka_rc == 0 && registry_rc == 0)); then
    return 0
  elif ((kafka_rc == 3 && registry_rc == 3)); then
    return 3
  fi
  return 1
}

# The test harness (crates/testkit) reads these; the defaults there match a default start.
cmd_env() {
  local bootstrap nodes
  bootstrap="$("$KAFKA_SH" bootstrap)"
  nodes="$(tr ',' '\n' <<<"$bootstrap" | wc -l)"
  printf 'export ORDERSTREAM_BOOTSTRAP=%q\n' "$bootstrap"
  printf 'export ORDERSTREAM_REGISTRY_URL=%q\n' "$("$REGISTRY_SH" url)"
  printf 'export ORDERSTREAM_NODES=%q\n' "$nodes"
  local name sh
  for name in "${OPTIONAL[@]}"; do
    sh="$(optional_sh "$name")"
    if running "$sh"; then
      "$sh" env
    fi
  done
}

main() {
  local cmd="${1:-help}"
  shift || true
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
