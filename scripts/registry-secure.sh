#!/usr/bin/env bash
# A second, real Confluent-compatible schema registry that enforces HTTP basic authentication,
# for the tests proving our client sends registry credentials (and fails clearly with wrong
# ones). `scripts/registry-secure.sh help` lists the commands.
#
# Why Apicurio and not Karapace: Karapace (Aiven's Confluent-compatible registry) is not on
# PyPI (the index answers 404 for it), and nothing outside the package registries can be fetched
# here. The Apicurio Registry app that scripts/registry.sh already caches ships Quarkus'
# embedded-users extension (quarkus-elytron-security-properties-file, enabled at build time in
# its application.properties), so basic auth with users and roles is pure runtime configuration.
#
# Unlike scripts/registry.sh (H2, no auth), this one keeps its schemas in Kafka (Apicurio's
# KafkaSQL storage: a journal topic replayed on every start), as Confluent Schema Registry and
# Karapace do, so it also exercises a registry that needs a (possibly secured) Kafka.
set -euo pipefail

LOG_TAG=registry-secure
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The app tarball is shared with scripts/registry.sh: one download, one version.
readonly APICURIO_CACHE="$CACHE_DIR/apicurio"
readonly VERSION_FILE="$APICURIO_CACHE/version"
readonly REGISTRY_SH="$ROOT_DIR/scripts/registry.sh"

readonly SECURE_RUN="$RUN_DIR/registry-secure"
readonly PID_FILE="$SECURE_RUN/pid"
readonly LOG_FILE="$SECURE_RUN/registry.log"
# Quarkus reads $PWD/config/application.properties (ordinal 260, above the jar's own 250), so
# everything secret goes there, mode 600, and never onto the command line (/proc/PID/cmdline
# is world-readable).
readonly CONFIG_FILE="$SECURE_RUN/config/application.properties"
readonly WRITER_USER=orders-registry
readonly READER_USER=reader
readonly WRITER_PASSWORD_FILE="$SECURE_RUN/$WRITER_USER.password"
readonly READER_PASSWORD_FILE="$SECURE_RUN/$READER_USER.password"
readonly LOCK_FILE="$RUN_DIR/registry-secure.lock"
# On our JVM's command line only, so pid checks never match scripts/registry.sh's Apicurio.
readonly PROCESS_MARK="-Dorderstream.service=registry-secure"
# Quarkus' embedded realm hashes HEX(SHA-512("user:realm:password")); the realm name is fixed
# when the app is built and Apicurio keeps Quarkus' default.
readonly QUARKUS_REALM=Quarkus

SECURE_REGISTRY_PORT="${SECURE_REGISTRY_PORT:-18081}"
# Quarkus serves health/metrics on a separate management port; keep it beside the API port
# (scripts/registry.sh uses 8091 for its own).
SECURE_REGISTRY_MANAGEMENT_PORT="${SECURE_REGISTRY_MANAGEMENT_PORT:-18091}"
SECURE_REGISTRY_BOOTSTRAP="${SECURE_REGISTRY_BOOTSTRAP:-127.0.0.1:9092}"
SECURE_REGISTRY_KAFKA_CA_FILE="${SECURE_REGISTRY_KAFKA_CA_FILE:-}"
SECURE_REGISTRY_KAFKA_USERNAME="${SECURE_REGISTRY_KAFKA_USERNAME:-}"
SECURE_REGISTRY_KAFKA_PASSWORD_FILE="${SECURE_REGISTRY_KAFKA_PASSWORD_FILE:-}"
SECURE_REGISTRY_KAFKA_MECHANISM="${SECURE_REGISTRY_KAFKA_MECHANISM:-SCRAM-SHA-512}"
# Topic names of its own, so it never shares (or replays) another registry's journal.
SECURE_REGISTRY_TOPIC="${SECURE_REGISTRY_TOPIC:-_schemas_secure}"
# KafkaSQL always joins a fresh consumer group (it must replay the whole journal into its
# in-memory database on every start); only the prefix is ours to choose.
SECURE_REGISTRY_GROUP_PREFIX="${SECURE_REGISTRY_GROUP_PREFIX:-orderstream-registry-secure-}"
# As scripts/registry.sh: Confluent's default global compatibility is BACKWARD, Apicurio has none.
SECURE_REGISTRY_DEFAULT_COMPATIBILITY="${SECURE_REGISTRY_DEFAULT_COMPATIBILITY:-BACKWARD}"
SECURE_REGISTRY_HEAP="${SECURE_REGISTRY_HEAP:--Xmx384m}"
SECURE_REGISTRY_START_TIMEOUT="${SECURE_REGISTRY_START_TIMEOUT:-180}"
SECURE_REGISTRY_STOP_TIMEOUT="${SECURE_REGISTRY_STOP_TIMEOUT:-30}"
# HTTPS beside HTTP when both PEM files are given (scripts/secure.sh passes a certificate of the
# secured Kafka node's CA): what clients with a private CA meet.
SECURE_REGISTRY_TLS_CERT_FILE="${SECURE_REGISTRY_TLS_CERT_FILE:-}"
SECURE_REGISTRY_TLS_KEY_FILE="${SECURE_REGISTRY_TLS_KEY_FILE:-}"
SECURE_REGISTRY_TLS_PORT="${SECURE_REGISTRY_TLS_PORT:-18443}"

usage() {
  cat <<EOF
Usage: scripts/registry-secure.sh COMMAND

Runs Apicurio Registry (Confluent-compatible ccompat API) with HTTP basic authentication on
127.0.0.1:$SECURE_REGISTRY_PORT, schemas stored in Kafka topic $SECURE_REGISTRY_TOPIC at $SECURE_REGISTRY_BOOTSTRAP.

  fetch    make sure the Apicurio app is cached (shared with scripts/registry.sh; no-op when it is)
  start    start it and wait until GET /subjects with $WRITER_USER's credentials answers 200
           (no-op when running; timeout ${SECURE_REGISTRY_START_TIMEOUT}s). Kafka must be up already.
  stop     stop it (SIGTERM, SIGKILL after ${SECURE_REGISTRY_STOP_TIMEOUT}s); schemas stay in Kafka
  status   exit 0 up, 1 running but not answering, 3 stopped
  reset    stop and delete ${SECURE_RUN#"$ROOT_DIR"/} (passwords, config, log). The schemas stay
           in the Kafka topics $SECURE_REGISTRY_TOPIC* (scripts/kafka.sh reset removes those)
  url      print the Confluent-compatible base URL (no credentials): $(base_url)
  env      when running, print exports for the tests:
             eval "\$(scripts/registry-secure.sh env)"
           ORDERSTREAM_SECURE_REGISTRY_URL, ORDERSTREAM_SECURE_REGISTRY_USERNAME ($WRITER_USER),
           ORDERSTREAM_SECURE_REGISTRY_PASSWORD_FILE, ORDERSTREAM_SECURE_REGISTRY_READER_PASSWORD_FILE.
           Prints nothing (exit 3) when stopped.

Users (passwords generated once, mode 600, never logged):
  $WRITER_USER  role sr-developer: read and write every subject  ${WRITER_PASSWORD_FILE#"$ROOT_DIR"/}
  $READER_USER           role sr-readonly: read only (writes answer 403)    ${READER_PASSWORD_FILE#"$ROOT_DIR"/}
No credentials or a wrong password answer 401.

Kafka for the schema storage: SECURE_REGISTRY_BOOTSTRAP ($SECURE_REGISTRY_BOOTSTRAP). With
SECURE_REGISTRY_KAFKA_CA_FILE (PEM) set it connects with SASL_SSL as SECURE_REGISTRY_KAFKA_USERNAME,
password read from SECURE_REGISTRY_KAFKA_PASSWORD_FILE, mechanism SECURE_REGISTRY_KAFKA_MECHANISM
($SECURE_REGISTRY_KAFKA_MECHANISM); otherwise PLAINTEXT.

HTTPS on SECURE_REGISTRY_TLS_PORT ($SECURE_REGISTRY_TLS_PORT) beside HTTP when SECURE_REGISTRY_TLS_CERT_FILE
and SECURE_REGISTRY_TLS_KEY_FILE (PEM) are set; env then also exports ORDERSTREAM_SECURE_REGISTRY_HTTPS_URL.

Other environment: SECURE_REGISTRY_PORT ($SECURE_REGISTRY_PORT), SECURE_REGISTRY_MANAGEMENT_PORT
($SECURE_REGISTRY_MANAGEMENT_PORT), SECURE_REGISTRY_TOPIC ($SECURE_REGISTRY_TOPIC),
SECURE_REGISTRY_GROUP_PREFIX, SECURE_REGISTRY_DEFAULT_COMPATIBILITY ($SECURE_REGISTRY_DEFAULT_COMPATIBILITY),
SECURE_REGISTRY_HEAP ($SECURE_REGISTRY_HEAP), SECURE_REGISTRY_START_TIMEOUT, SECURE_REGISTRY_STOP_TIMEOUT,
REGISTRY_JAVA_HOME (a Java 21+, as for scripts/registry.sh). Log: ${LOG_FILE#"$ROOT_DIR"/}.
EOF
}

# Apicurio serves the Confluent API under a path prefix; clients take this whole URL as base.
base_url() {
  printf 'http://127.0.0.1:%s/apis/ccompat/v7\n' "$SECURE_REGISTRY_PORT"
}

# ---------------------------------------------------------------------------------------------
# Java: Apicurio 3.3 is Java 21 bytecode; scripts/lib.sh's find_registry_java picks the JVM.



# ---------------------------------------------------------------------------------------------
# The app (cached by scripts/registry.sh).

fetched_version() {
  [[ -s "$VERSION_FILE" ]] || return 1
  local version
  version="$(<"$VERSION_FILE")"
  [[ -n "$(runner_jar "$version")" ]] || return 1
  printf '%s\n' "$version"
}

runner_jar() {
  find "$APICURIO_CACHE/app-$1" -maxdepth 3 -name quarkus-run.jar -print -quit 2>/dev/null
}

cmd_fetch() {
  local version
  if version="$(fetched_version)"; then
    log "Apicurio Registry $version already cached in ${APICURIO_CACHE#"$ROOT_DIR"/} (nothing downloaded)"
    return 0
  fi
  bash "$REGISTRY_SH" fetch
}

# ---------------------------------------------------------------------------------------------
# Users and configuration.

# new_password FILE: 32 URL-safe characters from the kernel's CSPRNG, written once, mode 600.
# No ':' (it would split a basic-auth pair) and nothing a shell or a URL needs quoted.
new_password() {
  local file="$1"
  [[ -s "$file" ]] && return 0
  (umask 077 && head -c 24 /dev/urandom | base64 | tr '+/' '-_' >"$file.tmp")
  mv "$file.tmp" "$file"
}

# user_hash USER PASSWORD_FILE: what Quarkus' embedded realm compares with (plain-text=false,
# algorithm digest-sha-512). printf is a builtin: the password never reaches a command line.
user_hash() {
  local user="$1" password
  password="$(<"$2")"
  printf '%s:%s:%s' "$user" "$QUARKUS_REALM" "$password" | sha512sum | cut -d' ' -f1
}

# The Kafka client settings Apicurio passes to its producer, consumer and admin client
# (the apicurio.kafka.common.* prefix passes any Kafka client property through).
kafka_client_properties() {
  if [[ -z "$SECURE_REGISTRY_KAFKA_CA_FILE" ]]; then
    printf 'apicurio.kafka.common.security.protocol=PLAINTEXT\n'
    return 0
  fi
  # SASL_SSL: the Kafka client's documented settings through Apicurio's pass-through prefix.
  # Tried once against scripts/kafka-secure.sh's broker (admin, SCRAM-SHA-512): it connected
  # and created its topics; a schema write over it has not been seen to succeed yet.
  [[ -r "$SECURE_REGISTRY_KAFKA_CA_FILE" ]] || die "SECURE_REGISTRY_KAFKA_CA_FILE=$SECURE_REGISTRY_KAFKA_CA_FILE is not a readable file"
  [[ -n "$SECURE_REGISTRY_KAFKA_USERNAME" ]] || die "SECURE_REGISTRY_KAFKA_CA_FILE is set (SASL_SSL) but SECURE_REGISTRY_KAFKA_USERNAME is not"
  [[ -n "$SECURE_REGISTRY_KAFKA_PASSWORD_FILE" && -r "$SECURE_REGISTRY_KAFKA_PASSWORD_FILE" ]] ||
    die "SECURE_REGISTRY_KAFKA_CA_FILE is set (SASL_SSL) but SECURE_REGISTRY_KAFKA_PASSWORD_FILE (${SECURE_REGISTRY_KAFKA_PASSWORD_FILE:-unset}) is not a readable file"
  local password module ca_file
  # Absolute: the JVM runs in the run dir, where a path relative to the caller means nothing.
  ca_file="$(realpath "$SECURE_REGISTRY_KAFKA_CA_FILE")"
  password="$(<"$SECURE_REGISTRY_KAFKA_PASSWORD_FILE")"
  # The value lands inside a JAAS string inside a .properties file whose values SmallRye also
  # expands (${...}): refuse the characters that would need escaping at one of those levels
  # rather than escape them three different ways.
  if [[ -z "$password" || "$password" == *[\"\\\$$'\n']* || "$SECURE_REGISTRY_KAFKA_USERNAME" == *[\"\\\$$'\n']* ]]; then
    die "the Kafka username or the password in $SECURE_REGISTRY_KAFKA_PASSWORD_FILE is empty or contains a quote, backslash, '\$' or newline; use a simpler password"
  fi
  case "$SECURE_REGISTRY_KAFKA_MECHANISM" in
    SCRAM-SHA-256 | SCRAM-SHA-512) module=org.apache.kafka.common.security.scram.ScramLoginModule ;;
    PLAIN) module=org.apache.kafka.common.security.plain.PlainLoginModule ;;
    *) die "SECURE_REGISTRY_KAFKA_MECHANISM must be SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (got '$SECURE_REGISTRY_KAFKA_MECHANISM')" ;;
  esac
  cat <<EOF
apicurio.kafka.common.security.protocol=SASL_SSL
apicurio.kafka.common.sasl.mechanism=$SECURE_REGISTRY_KAFKA_MECHANISM
apicurio.kafka.common.sasl.jaas.config=$module required username="$SECURE_REGISTRY_KAFKA_USERNAME" password="$password";
# Kafka clients read a PEM CA bundle directly (no JKS conversion).
apicurio.kafka.common.ssl.truststore.type=PEM
apicurio.kafka.common.ssl.truststore.location=$ca_file
EOF
}

# The HTTPS listener's settings, or nothing when no certificate was given.
tls_properties() {
  [[ -n "$SECURE_REGISTRY_TLS_CERT_FILE" && -n "$SECURE_REGISTRY_TLS_KEY_FILE" ]] || return 0
  printf 'quarkus.http.ssl-port=%s\n' "$SECURE_REGISTRY_TLS_PORT"
  printf 'quarkus.http.ssl.certificate.files=%s\n' "$(cd "$(dirname "$SECURE_REGISTRY_TLS_CERT_FILE")" && pwd)/$(basename "$SECURE_REGISTRY_TLS_CERT_FILE")"
  printf 'quarkus.http.ssl.certificate.key-files=%s\n' "$(cd "$(dirname "$SECURE_REGISTRY_TLS_KEY_FILE")" && pwd)/$(basename "$SECURE_REGISTRY_TLS_KEY_FILE")"
}

# Rewritten on every start (passwords and hashes stay the same), so a changed environment
# (another bootstrap, SASL settings) takes effect without a reset.
write_config() {
  mkdir -p "$(dirname "$CONFIG_FILE")"
  local tmp="$CONFIG_FILE.tmp" kafka_props writer_hash reader_hash tls_props
  # Computed before the heredoc: a failure inside a heredoc's $(...) would not stop the script.
  kafka_props="$(kafka_client_properties)"
  tls_props="$(tls_properties)"
  writer_hash="$(user_hash "$WRITER_USER" "$WRITER_PASSWORD_FILE")"
  reader_hash="$(user_hash "$READER_USER" "$READER_PASSWORD_FILE")"
  (
    umask 077
    cat >"$tmp" <<EOF
# Written by scripts/registry-secure.sh on every start; holds secrets (mode 600).
quarkus.http.host=127.0.0.1
quarkus.http.port=$SECURE_REGISTRY_PORT
quarkus.management.host=127.0.0.1
quarkus.management.port=$SECURE_REGISTRY_MANAGEMENT_PORT
$tls_props

# HTTP basic authentication against Quarkus' embedded users; no OIDC server involved.
# Quarkus logs "Build time property cannot be changed at runtime: quarkus.http.auth.basic";
# harmless: Apicurio reads it at runtime to put basic auth into its own mechanism chain.
quarkus.oidc.tenant-enabled=false
quarkus.http.auth.basic=true
apicurio.authn.mechanism.priority=basic
quarkus.security.users.embedded.enabled=true
quarkus.security.users.embedded.plain-text=false
quarkus.security.users.embedded.algorithm=digest-sha-512
quarkus.security.users.embedded.users.$WRITER_USER=$writer_hash
quarkus.security.users.embedded.roles.$WRITER_USER=sr-developer
quarkus.security.users.embedded.users.$READER_USER=$reader_hash
quarkus.security.users.embedded.roles.$READER_USER=sr-readonly
# Roles decide Read/Write (sr-readonly: 403 on writes); they come from the identity above.
apicurio.auth.role-based-authorization=true
apicurio.auth.role-source=token
apicurio.auth.anonymous-read-access.enabled=false

# Schemas in Kafka (KafkaSQL journal), topics of our own.
apicurio.storage.kind=kafkasql
apicurio.kafkasql.bootstrap.servers=$SECURE_REGISTRY_BOOTSTRAP
apicurio.kafkasql.topic=$SECURE_REGISTRY_TOPIC
apicurio.kafkasql.snapshots.topic=${SECURE_REGISTRY_TOPIC}_snapshots
apicurio.events.kafka.topic=${SECURE_REGISTRY_TOPIC}_events
apicurio.kafkasql.consumer.group-prefix=$SECURE_REGISTRY_GROUP_PREFIX
apicurio.storage.snapshot.location=$SECURE_RUN/snapshots
$kafka_props

# As scripts/registry.sh: tests clean up through the API.
apicurio.rest.deletion.group.enabled=true
apicurio.rest.deletion.artifact.enabled=true
apicurio.rest.deletion.artifact-version.enabled=true
EOF
    if [[ -n "$SECURE_REGISTRY_DEFAULT_COMPATIBILITY" && "$SECURE_REGISTRY_DEFAULT_COMPATIBILITY" != NONE ]]; then
      printf 'apicurio.rules.global.compatibility=%s\n' "$SECURE_REGISTRY_DEFAULT_COMPATIBILITY" >>"$tmp"
    fi
  )
  mv "$tmp" "$CONFIG_FILE"
}

# ---------------------------------------------------------------------------------------------
# Process.

registry_pid() {
  pidfile_pid "$PID_FILE" "$PROCESS_MARK"
}

# http_status USER PASSWORD_FILE PATH: the HTTP status of an authenticated GET. curl reads the
# credentials from a config on stdin, so the password never appears in a process listing.
http_status() {
  local user="$1" password
  password="$(<"$2")"
  printf 'user = "%s:%s"\n' "$user" "$password" |
    curl -sS -K - -o /dev/null -w '%{http_code}' --max-time 5 "$(base_url)$3" 2>/dev/null || true
}

# 0 ready, 1 not yet, 2 the JVM died (no point waiting).
registry_ready() {
  registry_pid >/dev/null || return 2
  [[ "$(http_status "$WRITER_USER" "$WRITER_PASSWORD_FILE" /subjects)" == 200 ]]
}

# Fail in a second with a useful message rather than after the start timeout with a Kafka
# client's retry loop in the log: the first bootstrap address must accept TCP connections.
require_kafka_reachable() {
  local first host port
  first="${SECURE_REGISTRY_BOOTSTRAP%%,*}"
  host="${first%:*}"
  port="${first##*:}"
  if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    die "Kafka is not reachable at $first (SECURE_REGISTRY_BOOTSTRAP=$SECURE_REGISTRY_BOOTSTRAP); the registry stores its schemas there. Start it first (plaintext: scripts/kafka.sh start)."
  fi
}

cmd_start() {
  with_lock "$LOCK_FILE"
  local pid
  if pid="$(registry_pid)"; then
    log "secure registry already running (pid $pid); nothing to do"
    log "URL: $(base_url)"
    return 0
  fi
  cmd_fetch
  require_daemon_tools
  require_cmd curl "The readiness check uses it (Debian/Ubuntu: apt-get install curl)."
  require_cmd sha512sum "It hashes the users' passwords (coreutils)."
  local java version jar heap t0 rc=0
  java="$(find_registry_java)"
  version="$(fetched_version)" || die "the Apicurio app is not cached (scripts/registry.sh fetch)"
  jar="$(runner_jar "$version")"
  require_port_free "$SECURE_REGISTRY_PORT" "the secure registry's HTTP API (SECURE_REGISTRY_PORT)"
  require_port_free "$SECURE_REGISTRY_MANAGEMENT_PORT" "the secure registry's management interface (SECURE_REGISTRY_MANAGEMENT_PORT)"
  if [[ -n "$SECURE_REGISTRY_TLS_CERT_FILE" ]]; then
    require_port_free "$SECURE_REGISTRY_TLS_PORT" "the secure registry's HTTPS API (SECURE_REGISTRY_TLS_PORT)"
  fi
  require_kafka_reachable
  mkdir -p "$SECURE_RUN/snapshots"
  chmod 700 "$SECURE_RUN"
  new_password "$WRITER_PASSWORD_FILE"
  new_password "$READER_PASSWORD_FILE"
  write_config
  read -ra heap <<<"$SECURE_REGISTRY_HEAP"
  t0="$(now_ms)"
  # The JVM's cwd is the run dir: that is where Quarkus finds config/application.properties.
  (cd "$SECURE_RUN" && start_detached "$PID_FILE" "$LOG_FILE" \
    "$java" "${heap[@]}" "$PROCESS_MARK" -jar "$jar")
  log "Apicurio Registry $version with basic auth started (pid $(<"$PID_FILE"), Kafka $SECURE_REGISTRY_BOOTSTRAP$([[ -n "$SECURE_REGISTRY_KAFKA_CA_FILE" ]] && echo ' SASL_SSL')); waiting up to ${SECURE_REGISTRY_START_TIMEOUT}s ..."
  wait_until "$SECURE_REGISTRY_START_TIMEOUT" 1 "GET $(base_url)/subjects as $WRITER_USER" registry_ready || rc=$?
  if ((rc != 0)); then
    log "---- last 30 lines of $LOG_FILE ----"
    tail -n 30 "$LOG_FILE" >&2 || true
    if pid="$(registry_pid)"; then
      stop_pid "$pid" "$SECURE_REGISTRY_STOP_TIMEOUT" "secure registry"
    fi
    rm -f "$PID_FILE"
    die "the secure registry did not become ready (log above; full log: $LOG_FILE)"
  fi
  log "secure registry ready in $(elapsed_s "$t0")s: $(base_url) (user $WRITER_USER, password in $WRITER_PASSWORD_FILE)"
}

cmd_stop() {
  with_lock "$LOCK_FILE"
  local pid
  if ! pid="$(registry_pid)"; then
    log "secure registry is not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping secure registry (pid $pid) ..."
  stop_pid "$pid" "$SECURE_REGISTRY_STOP_TIMEOUT" "secure registry"
  rm -f "$PID_FILE"
  log "secure registry stopped"
}

cmd_status() {
  local pid code
  if ! pid="$(registry_pid)"; then
    if port_listening "$SECURE_REGISTRY_PORT"; then
      echo "secure registry: stopped; port $SECURE_REGISTRY_PORT is held by another process: $(port_holder "$SECURE_REGISTRY_PORT")"
    else
      echo "secure registry: stopped"
    fi
    return 3
  fi
  code="$(http_status "$WRITER_USER" "$WRITER_PASSWORD_FILE" /subjects)"
  if [[ "$code" == 200 ]]; then
    echo "secure registry: running pid $pid, $(base_url) answers $WRITER_USER, log $LOG_FILE"
    return 0
  fi
  echo "secure registry: running pid $pid but GET $(base_url)/subjects as $WRITER_USER answers ${code:-nothing} (starting, or unhealthy: see $LOG_FILE)"
  return 1
}

cmd_env() {
  if ! registry_pid >/dev/null; then
    log "secure registry is not running; no exports (scripts/registry-secure.sh start)"
    return 3
  fi
  printf 'export ORDERSTREAM_SECURE_REGISTRY_URL=%q\n' "$(base_url)"
  printf 'export ORDERSTREAM_SECURE_REGISTRY_USERNAME=%q\n' "$WRITER_USER"
  printf 'export ORDERSTREAM_SECURE_REGISTRY_PASSWORD_FILE=%q\n' "$WRITER_PASSWORD_FILE"
  printf 'export ORDERSTREAM_SECURE_REGISTRY_READER_PASSWORD_FILE=%q\n' "$READER_PASSWORD_FILE"
  local tls_port
  tls_port="$(sed -n 's/^quarkus\.http\.ssl-port=//p' "$CONFIG_FILE" 2>/dev/null)"
  if [[ -n "$tls_port" ]]; then
    printf 'export ORDERSTREAM_SECURE_REGISTRY_HTTPS_URL=%q\n' "https://127.0.0.1:$tls_port/apis/ccompat/v7"
  fi
}

cmd_reset() {
  with_lock "$LOCK_FILE"
  cmd_stop
  rm -rf "$SECURE_RUN"
  log "deleted ${SECURE_RUN#"$ROOT_DIR"/} (the schemas stay in Kafka topics $SECURE_REGISTRY_TOPIC*)"
}

main() {
  local cmd="${1:-help}"
  shift || true
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    url) base_url ;;
    env) cmd_env ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
