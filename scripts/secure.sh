#!/usr/bin/env bash
# The secured stack as one opt-in service of scripts/services.sh (`up --secure`): one secured
# Kafka node (scripts/kafka-secure.sh) and a registry that requires basic auth
# (scripts/registry-secure.sh) keeping its schemas on that node over SASL_SSL, so the registry's
# own Kafka client is a secured client too.
set -euo pipefail

LOG_TAG=secure
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly KAFKA_SECURE_SH="$ROOT_DIR/scripts/kafka-secure.sh"
readonly REGISTRY_SECURE_SH="$ROOT_DIR/scripts/registry-secure.sh"
readonly SECURE_KAFKA_RUN="$RUN_DIR/kafka-secure"

usage() {
  cat <<EOF
Usage: scripts/secure.sh COMMAND

  fetch    fetch what both need (the Kafka jars, the Apicurio app); no-op when cached
  start    start the secured Kafka node, then the registry with basic auth on it
  stop     stop the registry, then the node
  status   exit 0 both up, 3 both stopped, 1 anything between
  env      exports for the tests (ORDERSTREAM_SECURE_*), nothing when stopped
  reset    stop both and delete their run directories

See scripts/kafka-secure.sh help and scripts/registry-secure.sh help.
EOF
}

cmd_fetch() {
  "$ROOT_DIR/scripts/kafka.sh" fetch
  "$REGISTRY_SECURE_SH" fetch
}

cmd_start() {
  "$KAFKA_SECURE_SH" start
  local port_base
  port_base="$(cat "$SECURE_KAFKA_RUN/port-base")"
  SECURE_REGISTRY_BOOTSTRAP="127.0.0.1:$port_base" \
    SECURE_REGISTRY_KAFKA_CA_FILE="$SECURE_KAFKA_RUN/ca.pem" \
    SECURE_REGISTRY_KAFKA_USERNAME=admin \
    SECURE_REGISTRY_KAFKA_PASSWORD_FILE="$SECURE_KAFKA_RUN/admin.password" \
    SECURE_REGISTRY_KAFKA_MECHANISM=SCRAM-SHA-512 \
    SECURE_REGISTRY_TLS_CERT_FILE="$SECURE_KAFKA_RUN/registry.pem" \
    SECURE_REGISTRY_TLS_KEY_FILE="$SECURE_KAFKA_RUN/registry.key" \
    "$REGISTRY_SECURE_SH" start
}

cmd_stop() {
  local rc=0
  "$REGISTRY_SECURE_SH" stop || rc=$?
  "$KAFKA_SECURE_SH" stop || rc=$?
  return "$rc"
}

cmd_status() {
  local k=0 r=0
  "$KAFKA_SECURE_SH" status || k=$?
  "$REGISTRY_SECURE_SH" status || r=$?
  if ((k == 0 && r == 0)); then
    return 0
  elif ((k == 3 && r == 3)); then
    return 3
  fi
  return 1
}

cmd_env() {
  "$KAFKA_SECURE_SH" env || true
  "$REGISTRY_SECURE_SH" env || true
}

cmd_reset() {
  "$REGISTRY_SECURE_SH" reset
  "$KAFKA_SECURE_SH" reset
}

main() {
  local cmd="${1:-help}"
  shift || true
  case "$cmd" in
    fetch | start | stop | status | env | reset) "cmd_$cmd" "$@" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
