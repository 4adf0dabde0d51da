#!/usr/bin/env bash
# The Python environment of the interop tests and the bench's Python baseline: a venv under
# the git-ignored cache with confluent-kafka (its own bundled librdkafka) and its Avro
# serializer (fastavro, the schema-registry client), plus the independent notification
# receivers pika (RabbitMQ) and nats-py, made once per pinned version.
#
#   scripts/python.sh path    # make the venv if needed; print its interpreter on stdout
#   scripts/python.sh reset   # remove it
#
# PYTHON (default python3): the interpreter the venv is made from.
set -euo pipefail

LOG_TAG=python
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONFLUENT_KAFKA_VERSION=2.16.1
PIKA_VERSION=1.4.4
NATS_PY_VERSION=2.16.0
readonly VENV="$CACHE_DIR/python/confluent-kafka-avro-$CONFLUENT_KAFKA_VERSION"
readonly MARKER="$VENV/.installed"
readonly INSTALL_LOG="$CACHE_DIR/python/install.log"

ready() {
  [[ -f "$MARKER" ]] && "$VENV/bin/python" -c 'import confluent_kafka, fastavro, pika, nats' 2>/dev/null
}

make_venv() {
  local base="${PYTHON:-python3}"
  command -v "$base" >/dev/null 2>&1 || die "'$base' is not on PATH (set PYTHON to a Python 3 interpreter)"
  log "installing confluent-kafka[avro]==$CONFLUENT_KAFKA_VERSION into $VENV (once; log: $INSTALL_LOG)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$base" -m venv "$VENV" >"$INSTALL_LOG" 2>&1 ||
    die "'$base -m venv' failed: $(tail -n 1 "$INSTALL_LOG") (Debian/Ubuntu: apt-get install python3-venv)"
  # Binary wheel only: the wheel bundles its own librdkafka; a source build would need
  # librdkafka headers and link whatever the system has.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    --only-binary confluent-kafka "confluent-kafka[avro]==$CONFLUENT_KAFKA_VERSION" >>"$INSTALL_LOG" 2>&1 ||
    die "pip install confluent-kafka[avro]==$CONFLUENT_KAFKA_VERSION failed: $(grep -m 1 -i error "$INSTALL_LOG" || tail -n 1 "$INSTALL_LOG")"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "pika==$PIKA_VERSION" "nats-py==$NATS_PY_VERSION" >>"$INSTALL_LOG" 2>&1 ||
    die "pip install pika==$PIKA_VERSION nats-py==$NATS_PY_VERSION failed: $(grep -m 1 -i error "$INSTALL_LOG" || tail -n 1 "$INSTALL_LOG")"
  "$VENV/bin/python" -c 'import confluent_kafka, fastavro, pika, nats' >>"$INSTALL_LOG" 2>&1 ||
    die "confluent_kafka, fastavro, pika or nats does not import after install: $(tail -n 1 "$INSTALL_LOG")"
  touch "$MARKER"
}

case "${1:-path}" in
  path)
    if ! ready; then
      with_lock "$CACHE_DIR/python/.lock"
      ready || make_venv
    fi
    printf '%s\n' "$VENV/bin/python"
    ;;
  reset)
    with_lock "$CACHE_DIR/python/.lock"
    rm -rf "$VENV"
    ;;
  help | -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (path, reset, help)" ;;
esac
