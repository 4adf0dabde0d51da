#!/usr/bin/env bash
# The whole test suite against a real 3-broker Kafka and a real schema registry.
#
#   scripts/test.sh            # lint, build, start services, fast + integration suites, reliability suite
#   SUITE=fast scripts/test.sh # skip the reliability (fault-injection) suite
#
# Services this script started are stopped on exit; services that were already running are
# left alone (and must be the 3-node layout).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SUITE="${SUITE:-all}"

log() { printf '==> [%4ds] %s\n' "$SECONDS" "$*" >&2; }

log "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# API docs build without broken links or stray HTML (lints missing_docs and
# rustdoc::broken_intra_doc_links are in the workspace's lint table).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# The OTLP exporter is an opt-in feature the suites do not build: lint it so it keeps compiling.
cargo clippy -p orderstream-cli --features otlp --locked -- -D warnings

# Compile everything before the JVMs start: on 2 cores the compiler and three brokers fight.
# (`--workspace` everywhere: one feature resolution, so no crate is compiled twice.)
log "build"
cargo build --workspace --all-targets --locked
cargo test --workspace --no-run --locked

orderstream="${CARGO_TARGET_DIR:-target}/debug/orderstream"

log "offline checks (no services)"
"$orderstream" schemas check --mode FULL_TRANSITIVE
# docker-compose.yml is not run here (no Docker engine): checked against the Compose schema.
bash scripts/check-compose.sh

# The interop tests run an independent producer and encoder (Python confluent-kafka with its
# Avro serializer, fastavro) and independent notification receivers (pika, nats-py): made once
# under the cache, reused after.
log "Python interop environment"
ORDERSTREAM_PYTHON="$(bash scripts/python.sh path)"
export ORDERSTREAM_PYTHON

started=0
if ! bash scripts/services.sh status >/dev/null 2>&1; then
  log "starting Kafka (3 nodes), the registry, PostgreSQL, RabbitMQ, NATS and the secured Kafka node and registry"
  bash scripts/services.sh up --nodes 3 --with postgres,rabbitmq,nats,secure
  started=1
fi
# Opt-in services this script started beside services that were already running.
also_started=()
cleanup() {
  local name
  for name in "${also_started[@]}"; do
    bash "scripts/$name.sh" stop || true
  done
  if [[ $started == 1 ]]; then
    log "stopping services"
    bash scripts/services.sh down || true
  fi
}
trap cleanup EXIT

export ORDERSTREAM_BOOTSTRAP="${ORDERSTREAM_BOOTSTRAP:-$(bash scripts/kafka.sh bootstrap)}"
export ORDERSTREAM_REGISTRY_URL="${ORDERSTREAM_REGISTRY_URL:-$(bash scripts/registry.sh url)}"
export ORDERSTREAM_NODES="${ORDERSTREAM_NODES:-3}"
# Services that were already running may lack an opt-in one: start it (stopped again on exit).
for name in postgres rabbitmq nats secure; do
  if ! bash "scripts/$name.sh" status >/dev/null 2>&1; then
    bash "scripts/$name.sh" start
    [[ $started == 1 ]] || also_started+=("$name")
  fi
done
if [[ -z "${ORDERSTREAM_DATABASE_URL:-}" ]]; then
  ORDERSTREAM_DATABASE_URL="$(bash scripts/postgres.sh url)"
  export ORDERSTREAM_DATABASE_URL
fi
ORDERSTREAM_AMQP_URL="${ORDERSTREAM_AMQP_URL:-$(bash scripts/rabbitmq.sh url)}"
ORDERSTREAM_NATS_URL="${ORDERSTREAM_NATS_URL:-$(bash scripts/nats.sh url)}"
export ORDERSTREAM_AMQP_URL ORDERSTREAM_NATS_URL
# The secured Kafka node and registry: addresses, CA and client files (ORDERSTREAM_SECURE_*).
bash scripts/secure.sh status >/dev/null || { log "the secured Kafka node or registry is not healthy: bash scripts/secure.sh status"; exit 1; }
eval "$(bash scripts/secure.sh env)"

log "layout: apply twice (the second run must change nothing)"
"$orderstream" topics apply
"$orderstream" topics apply

log "unit, integration and evolution suites"
# Two test threads: two cores, and each test runs real clients against real brokers.
cargo test --workspace --locked -- --test-threads=2

if [[ $SUITE == all ]]; then
  log "fault-injection suites on the 3-node cluster"
  cargo test --workspace --locked --test producer_idempotence -- --ignored --test-threads=1 --nocapture
  cargo test --workspace --locked --test stage_cli -- --ignored --test-threads=1 --nocapture
  bash scripts/reliability.sh
fi
log "all suites passed"
