#!/usr/bin/env bash
# Runs the benchmark suite (crates/bench) and writes BENCHMARKS.md in the repo root.
#
#   scripts/bench.sh [--quick] [--nodes 1|3] [-- extra orderstream-bench args]
#
# By default it starts its OWN Kafka + registry on separate ports and run dir (so a running test
# set-up is not disturbed) and stops them at the end. When ORDERSTREAM_BOOTSTRAP and
# ORDERSTREAM_REGISTRY_URL are both set it uses those instead and starts nothing. Likewise the
# notify workload starts its own RabbitMQ and NATS (ports 16572 and 14222) unless ORDERSTREAM_AMQP_URL /
# ORDERSTREAM_NATS_URL are set, and the store workload its own PostgreSQL (port 15432) unless
# ORDERSTREAM_DATABASE_URL is.
#
# Environment: BENCH_RUN_DIR (/tmp/orderstream-bench-run), BENCH_KAFKA_PORT_BASE (19092),
# BENCH_REGISTRY_PORT (18081), BENCH_REGISTRY_MANAGEMENT_PORT (18091), BENCH_KEEP_SERVICES=1 to
# leave the bench services running, BENCH_OUT (BENCHMARKS.md in the repo root),
# BENCH_PYTHON (python3: the interpreter the confluent-kafka baseline's venv is made from),
# ORDERSTREAM_BENCH_PYTHON (use this interpreter for that baseline instead of the venv).
set -euo pipefail

LOG_TAG=bench
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

quick=()
nodes=1
extra=()
while (($#)); do
  case "$1" in
    --quick) quick=(--quick) ;;
    --nodes) nodes="${2:?--nodes needs 1 or 3}"; shift ;;
    --nodes=*) nodes="${1#--nodes=}" ;;
    -h | --help)
      sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    --) shift; extra=("$@"); break ;;
    *) extra+=("$1") ;;
  esac
  shift
done

export ORDERSTREAM_RUN_DIR="${BENCH_RUN_DIR:-/tmp/orderstream-bench-run}"
# Below Linux's ephemeral range (32768-60999): a listener port inside it can be taken by a
# client socket's local port (seen: the broker's own controller connection on 39092).
export KAFKA_PORT_BASE="${BENCH_KAFKA_PORT_BASE:-19092}"
export REGISTRY_PORT="${BENCH_REGISTRY_PORT:-18081}"
export REGISTRY_MANAGEMENT_PORT="${BENCH_REGISTRY_MANAGEMENT_PORT:-18091}"
# The notify workload's RabbitMQ and NATS, on ports of their own beside a running test set-up.
export RABBITMQ_PORT="${BENCH_RABBITMQ_PORT:-16572}"
export RABBITMQ_DIST_PORT="${BENCH_RABBITMQ_DIST_PORT:-16573}"
export RABBITMQ_EPMD_PORT="${BENCH_RABBITMQ_EPMD_PORT:-16369}"
export NATS_PORT="${BENCH_NATS_PORT:-14222}"
export NATS_MONITOR_PORT="${BENCH_NATS_MONITOR_PORT:-18222}"
# The store workload's PostgreSQL.
export POSTGRES_PORT="${BENCH_POSTGRES_PORT:-15432}"
out="${BENCH_OUT:-$ROOT_DIR/BENCHMARKS.md}"

started_kafka=0
started_registry=0
started_rabbitmq=0
started_nats=0
started_postgres=0
cleanup() {
  [[ "${BENCH_KEEP_SERVICES:-0}" == 1 ]] && return 0
  if ((started_postgres)); then "$ROOT_DIR/scripts/postgres.sh" stop || true; fi
  if ((started_nats)); then "$ROOT_DIR/scripts/nats.sh" stop || true; fi
  if ((started_rabbitmq)); then "$ROOT_DIR/scripts/rabbitmq.sh" stop || true; fi
  if ((started_registry)); then "$ROOT_DIR/scripts/registry.sh" stop || true; fi
  if ((started_kafka)); then "$ROOT_DIR/scripts/kafka.sh" stop || true; fi
}

if [[ -n "${ORDERSTREAM_BOOTSTRAP:-}" && -n "${ORDERSTREAM_REGISTRY_URL:-}" ]]; then
  log "using ORDERSTREAM_BOOTSTRAP=$ORDERSTREAM_BOOTSTRAP ORDERSTREAM_REGISTRY_URL=$ORDERSTREAM_REGISTRY_URL"
  cluster="given cluster at $ORDERSTREAM_BOOTSTRAP"
else
  trap cleanup EXIT
  if ! "$ROOT_DIR/scripts/kafka.sh" status >/dev/null 2>&1; then
    started_kafka=1
    "$ROOT_DIR/scripts/kafka.sh" start --nodes "$nodes"
  fi
  if ! "$ROOT_DIR/scripts/registry.sh" status >/dev/null 2>&1; then
    started_registry=1
    "$ROOT_DIR/scripts/registry.sh" start
  fi
  ORDERSTREAM_BOOTSTRAP="$("$ROOT_DIR/scripts/kafka.sh" bootstrap)"
  ORDERSTREAM_REGISTRY_URL="$("$ROOT_DIR/scripts/registry.sh" url)"
  export ORDERSTREAM_BOOTSTRAP ORDERSTREAM_REGISTRY_URL
  cluster="dedicated bench cluster ($ORDERSTREAM_RUN_DIR), $(tr ',' '\n' <<<"$ORDERSTREAM_BOOTSTRAP" | wc -l) node(s)"
fi

# The notify workload needs RabbitMQ and NATS: started here unless given; it is reported as not
# run when they cannot start.
trap cleanup EXIT
if [[ -z "${ORDERSTREAM_AMQP_URL:-}" ]]; then
  if ! "$ROOT_DIR/scripts/rabbitmq.sh" status >/dev/null 2>&1; then
    if "$ROOT_DIR/scripts/rabbitmq.sh" start; then started_rabbitmq=1; fi
  fi
  if url="$("$ROOT_DIR/scripts/rabbitmq.sh" url 2>/dev/null)"; then export ORDERSTREAM_AMQP_URL="$url"; fi
fi
if [[ -z "${ORDERSTREAM_NATS_URL:-}" ]]; then
  if ! "$ROOT_DIR/scripts/nats.sh" status >/dev/null 2>&1; then
    if "$ROOT_DIR/scripts/nats.sh" start; then started_nats=1; fi
  fi
  if "$ROOT_DIR/scripts/nats.sh" status >/dev/null 2>&1; then
    ORDERSTREAM_NATS_URL="$("$ROOT_DIR/scripts/nats.sh" url)"
    export ORDERSTREAM_NATS_URL
  fi
fi

# The store workload (the order projection) needs PostgreSQL: started here unless
# ORDERSTREAM_DATABASE_URL is given; it is reported as not run when it cannot start.
if [[ -z "${ORDERSTREAM_DATABASE_URL:-}" ]]; then
  if ! "$ROOT_DIR/scripts/postgres.sh" status >/dev/null 2>&1; then
    if "$ROOT_DIR/scripts/postgres.sh" start; then started_postgres=1; fi
  fi
  if url="$("$ROOT_DIR/scripts/postgres.sh" url 2>/dev/null)"; then export ORDERSTREAM_DATABASE_URL="$url"; fi
fi

cd "$ROOT_DIR"
log "building orderstream-bench (release)"
cargo build --release -q -p orderstream-bench

# rdkafka_performance from the librdkafka sources inside rdkafka-sys, linked with the static
# librdkafka our release build produced (same version, TLS through the system OpenSSL). Built
# under target/, never committed.
perf_dir="$ROOT_DIR/target/rdkafka-perf"
perf_bin="$perf_dir/rdkafka_performance"
if [[ ! -x "$perf_bin" ]]; then
  lib="$(ls -t "$ROOT_DIR"/target/release/build/rdkafka-sys-*/out/src/librdkafka.a 2>/dev/null | head -1 || true)"
  if [[ -n "$lib" ]]; then
    out_dir="$(dirname "$(dirname "$lib")")"
    mkdir -p "$perf_dir/examples"
    cp "$out_dir/examples/rdkafka_performance.c" "$perf_dir/examples/"
    ln -sfn "$out_dir/src" "$perf_dir/src"
    if gcc -O2 -o "$perf_bin" "$perf_dir/examples/rdkafka_performance.c" -I "$perf_dir/src" \
      "$lib" -lpthread -lz -lm -ldl -lrt -lssl -lcrypto 2>"$perf_dir/build.log"; then
      log "built $perf_bin"
    else
      log "WARNING: rdkafka_performance did not build (see $perf_dir/build.log): baseline skipped"
    fi
  else
    log "WARNING: no librdkafka.a under target/release: rdkafka_performance baseline skipped"
  fi
fi
export RDKAFKA_PERFORMANCE="$perf_bin"

# Python confluent-kafka baseline (produce workload): the venv of scripts/python.sh (made once per pinned
# version). When it cannot be set up the bench still runs and the report says
# "Python baseline not run: <reason>".
unset ORDERSTREAM_BENCH_PYTHON_UNAVAILABLE
if [[ -n "${ORDERSTREAM_BENCH_PYTHON:-}" ]]; then
  # An interpreter given by the caller is used as is (the bench checks it imports confluent_kafka).
  log "Python baseline: ORDERSTREAM_BENCH_PYTHON=$ORDERSTREAM_BENCH_PYTHON (given; no venv made)"
elif mkdir -p "$CACHE_DIR" && py="$(PYTHON="${BENCH_PYTHON:-python3}" bash "$ROOT_DIR/scripts/python.sh" path 2>"$CACHE_DIR/bench-python.log")"; then
  export ORDERSTREAM_BENCH_PYTHON="$py"
  log "Python baseline: $("$ORDERSTREAM_BENCH_PYTHON" "$ROOT_DIR/crates/bench/python/produce_baseline.py" --version)"
else
  py_reason="$(grep -m 1 ERROR "$CACHE_DIR/bench-python.log" || tail -n 1 "$CACHE_DIR/bench-python.log")"
  warn "Python baseline not run: $py_reason"
  export ORDERSTREAM_BENCH_PYTHON_UNAVAILABLE="$py_reason"
fi

log "running: orderstream-bench ${quick[*]} ${extra[*]} (bootstrap $ORDERSTREAM_BOOTSTRAP)"
"$ROOT_DIR/target/release/orderstream-bench" "${quick[@]}" --out "$out" \
  --cluster "$cluster" "${extra[@]}" >/dev/null
log "wrote $out"
