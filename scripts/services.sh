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

usage() {
  cat <<EOF
Usage: scripts/services.sh COMMAND

  up [--nodes 1|3]  fetch (once) and start Kafka and the registry; wait until both answer.
                    --nodes as for scripts/kafka.sh start (default: the existing layout, else 1)
  down              stop the registry and every Kafka node; no server process is left
  status            both services' status. Exit 0 all up, 3 all stopped, 1 anything between.
  env               print shell exports for the test harness:
                      eval "\$(scripts/services.sh env)"
                    sets ORDERSTREAM_BOOTSTRAP, ORDERSTREAM_REGISTRY_URL, ORDERSTREAM_NODES

The environment variables of scripts/kafka.sh and scripts/registry.sh apply (see their help).
EOF
}

cmd_up() {
  local kafka_args=() t0 kafka_rc=0 registry_rc=0 registry_job
  case "${1:-}" in
    "") ;;
    --nodes) kafka_args=(--nodes "${2:-}") ;;
    --nodes=*) kafka_args=("$1") ;;
    *) die "up: unknown argument '$1' (expected --nodes 1|3)" ;;
  esac
  t0="$(now_ms)"
  # Fetch both before starting either, so a download failure never leaves half a system up.
  "$KAFKA_SH" fetch
  "$REGISTRY_SH" fetch
  # Both start-ups are mostly JVM warm-up and waiting; overlapping them saves wall time.
  "$REGISTRY_SH" start &
  registry_job=$!
  "$KAFKA_SH" start "${kafka_args[@]}" || kafka_rc=$?
  wait "$registry_job" || registry_rc=$?
  if ((kafka_rc != 0 || registry_rc != 0)); then
    die "start-up failed (Kafka rc=$kafka_rc, registry rc=$registry_rc; messages above). What did start keeps running: scripts/services.sh down stops it."
  fi
  log "all services up in $(elapsed_s "$t0")s"
  log "Kafka bootstrap: $("$KAFKA_SH" bootstrap)"
  log "Schema registry: $("$REGISTRY_SH" url)"
}

cmd_down() {
  local registry_rc=0 kafka_rc=0
  # Each stop escalates to SIGKILL on its own timeout, so neither can hang here for ever.
  "$REGISTRY_SH" stop || registry_rc=$?
  "$KAFKA_SH" stop || kafka_rc=$?
  ((registry_rc == 0 && kafka_rc == 0)) || die "stopping failed (registry rc=$registry_rc, Kafka rc=$kafka_rc)"
  # Prove it: both report "stopped" (exit 3) or "never set up" (also 3).
  local rc script
  for script in "$KAFKA_SH" "$REGISTRY_SH"; do
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
