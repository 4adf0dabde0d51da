#!/usr/bin/env bash
# Fetch, cache and run a real Apicurio Registry (Confluent-compatible "ccompat" API) on
# 127.0.0.1, from the runnable tarball Apicurio publishes to Maven Central: no Docker.
# H2 storage in a file under .run/registry/data: schemas survive restarts (REGISTRY_STORAGE=mem
# keeps them in memory instead). `scripts/registry.sh help` lists commands;
# docs/registry-notes.md records how its Confluent compatibility behaves.
set -euo pipefail

LOG_TAG=registry
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# 3.3.3 is the target; the neighbours are tried only when Maven Central refuses it.
APICURIO_VERSION="${APICURIO_VERSION:-3.3.3}"
APICURIO_FALLBACK_VERSIONS="${APICURIO_FALLBACK_VERSIONS:-3.3.2}"
readonly APICURIO_CACHE="$CACHE_DIR/apicurio"
# The version whose app is unpacked and ready; written last by a successful fetch.
readonly VERSION_FILE="$APICURIO_CACHE/version"
# Every refused Maven coordinate, with mvn's error, for the record.
readonly FETCH_ERRORS="$APICURIO_CACHE/fetch-errors.log"

readonly REGISTRY_RUN="$RUN_DIR/registry"
readonly PID_FILE="$REGISTRY_RUN/pid"
readonly LOG_FILE="$REGISTRY_RUN/registry.log"
readonly URL_FILE="$REGISTRY_RUN/url"
readonly LOCK_FILE="$RUN_DIR/registry.lock"

REGISTRY_PORT="${REGISTRY_PORT:-8081}"
# Quarkus serves health and metrics on a separate management port (Apicurio's default 9000).
# Moved next to the API port so it stays clear of other local services and of Kafka's 909x.
REGISTRY_MANAGEMENT_PORT="${REGISTRY_MANAGEMENT_PORT:-8091}"
REGISTRY_HEAP="${REGISTRY_HEAP:--Xmx384m}"
REGISTRY_JAVA_OPTS="${REGISTRY_JAVA_OPTS:-}"
# Confluent Schema Registry's default global compatibility is BACKWARD; Apicurio has no global
# rule unless told. Empty or NONE keeps Apicurio's behaviour.
REGISTRY_DEFAULT_COMPATIBILITY="${REGISTRY_DEFAULT_COMPATIBILITY:-BACKWARD}"
REGISTRY_START_TIMEOUT="${REGISTRY_START_TIMEOUT:-180}"
REGISTRY_STOP_TIMEOUT="${REGISTRY_STOP_TIMEOUT:-30}"

usage() {
  cat <<EOF
Usage: scripts/registry.sh COMMAND

Runs Apicurio Registry $APICURIO_VERSION on 127.0.0.1:$REGISTRY_PORT, its schemas in an H2 file
under .run/registry/data (kept across restarts) unless REGISTRY_STORAGE=mem.

  fetch    download the app tarball once into ${APICURIO_CACHE#"$ROOT_DIR"/} and unpack it
           (tries $APICURIO_VERSION, then: $APICURIO_FALLBACK_VERSIONS)
  start    start it and wait until the ccompat API answers (no-op when running)
  stop     stop it (SIGTERM, SIGKILL after ${REGISTRY_STOP_TIMEOUT}s); file storage keeps its schemas
  status   pid, port, whether the ccompat API answers. Exit 0 up, 1 unhealthy, 3 stopped.
  url      print the Confluent-compatible base URL: $(default_url)

Log: ${LOG_FILE#"$ROOT_DIR"/}. Needs Java 21+ (Apicurio 3.3 is compiled for it): REGISTRY_JAVA_HOME,
then JAVA_HOME, PATH and /usr/lib/jvm/* are searched.

Environment: REGISTRY_PORT ($REGISTRY_PORT), REGISTRY_MANAGEMENT_PORT ($REGISTRY_MANAGEMENT_PORT),
REGISTRY_STORAGE (file: schemas kept in .run/registry/data across restarts; mem: in memory),
REGISTRY_HEAP ($REGISTRY_HEAP), REGISTRY_JAVA_OPTS (extra -D flags, e.g.
-Dapicurio.ccompat.legacy-id-mode.enabled=true), REGISTRY_DEFAULT_COMPATIBILITY
($REGISTRY_DEFAULT_COMPATIBILITY), REGISTRY_START_TIMEOUT ($REGISTRY_START_TIMEOUT s),
REGISTRY_JAVA_HOME, APICURIO_VERSION, APICURIO_FALLBACK_VERSIONS.
EOF
}

default_url() {
  printf 'http://127.0.0.1:%s/apis/ccompat/v7\n' "$REGISTRY_PORT"
}

# ---------------------------------------------------------------------------------------------
# Java: Apicurio 3.3.x classes are Java 21 bytecode (class file 65); Java 17 fails at boot with
# UnsupportedClassVersionError. scripts/lib.sh's find_registry_java picks a 21+ JVM.


# ---------------------------------------------------------------------------------------------
# Fetch.

tarball_of() { printf '%s\n' "$APICURIO_CACHE/apicurio-registry-app-$1-all.tar.gz"; }
app_dir_of() { printf '%s\n' "$APICURIO_CACHE/app-$1"; }

# The jar moved between 3.1, 3.2 and 3.3 (3.3.3: at the top of the tarball): look, don't assume.
find_runner_jar() {
  find "$1" -maxdepth 3 -name quarkus-run.jar -print -quit
}

fetched_version() {
  [[ -s "$VERSION_FILE" ]] || return 1
  local version
  version="$(<"$VERSION_FILE")"
  [[ -n "$(find_runner_jar "$(app_dir_of "$version")" 2>/dev/null)" ]] || return 1
  printf '%s\n' "$version"
}

# download_tarball VERSION: mvn copies it from Maven Central (or ~/.m2) into the cache.
download_tarball() {
  local version="$1" coordinate output
  coordinate="io.apicurio:apicurio-registry-app:$version:tar.gz:all"
  [[ -s "$(tarball_of "$version")" ]] && return 0
  require_mvn
  log "fetching $coordinate with mvn (first time only, ~150 MB) ..."
  # Run outside the repo so mvn needs no project; keep its output for the error record.
  if output="$(cd "$APICURIO_CACHE" && mvn_quiet -U dependency:copy \
    -Dartifact="$coordinate" -DoutputDirectory="$APICURIO_CACHE")"; then
    [[ -s "$(tarball_of "$version")" ]] && return 0
    output="mvn succeeded but $(tarball_of "$version") is missing"
  fi
  {
    printf '%s %s refused:\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$coordinate"
    # The first [ERROR] line names the cause ("Could not find artifact ...", a 403, a timeout).
    grep -m 2 -E '^\[ERROR\] .+' <<<"$output" || printf '%s\n' "$output" | tail -n 5
  } >>"$FETCH_ERRORS"
  warn "mvn could not fetch $coordinate (recorded in $FETCH_ERRORS):"
  tail -n 3 "$FETCH_ERRORS" >&2
  return 1
}

# unpack VERSION: untar into a scratch dir and rename, so a half-unpacked tree never counts.
unpack() {
  local version="$1" scratch target
  target="$(app_dir_of "$version")"
  [[ -n "$(find_runner_jar "$target" 2>/dev/null)" ]] && return 0
  scratch="$target.partial"
  rm -rf "$scratch" "$target"
  mkdir -p "$scratch"
  tar -xzf "$(tarball_of "$version")" -C "$scratch" || die "could not unpack $(tarball_of "$version"); delete it and fetch again"
  [[ -n "$(find_runner_jar "$scratch")" ]] || die "no quarkus-run.jar inside $(tarball_of "$version")"
  mv "$scratch" "$target"
}

cmd_fetch() {
  with_lock "$LOCK_FILE"
  local version
  if version="$(fetched_version)"; then
    log "Apicurio Registry $version already cached in $(app_dir_of "$version") (nothing downloaded)"
    return 0
  fi
  mkdir -p "$APICURIO_CACHE"
  local fallbacks=()
  read -ra fallbacks <<<"$APICURIO_FALLBACK_VERSIONS"
  for version in "$APICURIO_VERSION" "${fallbacks[@]}"; do
    download_tarball "$version" || continue
    unpack "$version"
    printf '%s\n' "$version" >"$VERSION_FILE"
    if [[ "$version" != "$APICURIO_VERSION" ]]; then
      warn "using Apicurio Registry $version instead of $APICURIO_VERSION (see $FETCH_ERRORS)"
    fi
    log "Apicurio Registry $version ready in $(app_dir_of "$version")"
    return 0
  done
  die "no Apicurio Registry version could be fetched ($APICURIO_VERSION $APICURIO_FALLBACK_VERSIONS); the errors are in $FETCH_ERRORS"
}

ensure_fetched() {
  fetched_version >/dev/null || cmd_fetch
}

# ---------------------------------------------------------------------------------------------
# Process.

# Our registry's command line names the cached runner jar by absolute path; a registry started
# by hand from elsewhere does not match and is never signalled by this script.
registry_pid() {
  pidfile_pid "$PID_FILE" "$APICURIO_CACHE/app-"
}

registry_url() {
  if [[ -s "$URL_FILE" ]]; then
    cat "$URL_FILE"
  else
    default_url
  fi
}

ccompat_answers() {
  curl -fsS -o /dev/null --max-time 5 "$1/subjects" 2>/dev/null
}

# 0 ready, 1 not yet, 2 the JVM died (no point waiting).
registry_ready() {
  registry_pid >/dev/null || return 2
  ccompat_answers "$(registry_url)"
}

cmd_start() {
  with_lock "$LOCK_FILE"
  local pid
  if pid="$(registry_pid)"; then
    log "Apicurio Registry already running (pid $pid); nothing to do"
    log "ccompat URL: $(registry_url)"
    return 0
  fi
  ensure_fetched
  require_daemon_tools
  require_cmd curl "The readiness check uses it (Debian/Ubuntu: apt-get install curl)."
  local java version jar t0 heap opts props=() rc=0
  java="$(find_registry_java)"
  version="$(fetched_version)"
  jar="$(find_runner_jar "$(app_dir_of "$version")")"
  require_port_free "$REGISTRY_PORT" "Apicurio Registry HTTP API"
  require_port_free "$REGISTRY_MANAGEMENT_PORT" "Apicurio Registry management interface (REGISTRY_MANAGEMENT_PORT)"
  read -ra heap <<<"$REGISTRY_HEAP"
  read -ra opts <<<"$REGISTRY_JAVA_OPTS"
  props=(
    -Dquarkus.http.host=127.0.0.1
    -Dquarkus.http.port="$REGISTRY_PORT"
    -Dquarkus.management.host=127.0.0.1
    -Dquarkus.management.port="$REGISTRY_MANAGEMENT_PORT"
    # Tests clean up through the core v3 API too; ccompat DELETEs work without these.
    -Dapicurio.rest.deletion.group.enabled=true
    -Dapicurio.rest.deletion.artifact.enabled=true
    -Dapicurio.rest.deletion.artifact-version.enabled=true
  )
  if [[ -n "$REGISTRY_DEFAULT_COMPATIBILITY" && "$REGISTRY_DEFAULT_COMPATIBILITY" != NONE ]]; then
    props+=(-Dapicurio.rules.global.compatibility="$REGISTRY_DEFAULT_COMPATIBILITY")
  fi
  # Schemas survive a restart (H2 file under .run/registry/data), as with a real registry:
  # with the in-memory default, data already in Kafka would point at schema ids that no longer
  # exist after `down`/`up`. REGISTRY_STORAGE=mem restores Apicurio's default.
  if [[ "${REGISTRY_STORAGE:-file}" == file ]]; then
    mkdir -p "$REGISTRY_RUN/data"
    props+=(-Dapicurio.datasource.url="jdbc:h2:file:$REGISTRY_RUN/data/registry;DB_CLOSE_ON_EXIT=FALSE")
  fi
  mkdir -p "$REGISTRY_RUN"
  default_url >"$URL_FILE"
  t0="$(now_ms)"
  # Quarkus resolves everything relative to the jar; the run dir is only the JVM's cwd.
  (cd "$REGISTRY_RUN" && start_detached "$PID_FILE" "$LOG_FILE" \
    "$java" "${heap[@]}" "${props[@]}" "${opts[@]}" -jar "$jar")
  log "Apicurio Registry $version started (pid $(<"$PID_FILE"), $java); waiting up to ${REGISTRY_START_TIMEOUT}s ..."
  wait_until "$REGISTRY_START_TIMEOUT" 1 "the ccompat API at $(registry_url)" registry_ready || rc=$?
  if ((rc != 0)); then
    log "---- last 30 lines of $LOG_FILE ----"
    tail -n 30 "$LOG_FILE" >&2 || true
    if pid="$(registry_pid)"; then
      stop_pid "$pid" "$REGISTRY_STOP_TIMEOUT" "Apicurio Registry"
    fi
    rm -f "$PID_FILE" "$URL_FILE"
    die "Apicurio Registry did not become ready (log above; full log: $LOG_FILE)"
  fi
  log "Apicurio Registry ready in $(elapsed_s "$t0")s: $(registry_url) (log: $LOG_FILE)"
}

cmd_stop() {
  with_lock "$LOCK_FILE"
  local pid
  if ! pid="$(registry_pid)"; then
    log "Apicurio Registry is not running"
    rm -f "$PID_FILE" "$URL_FILE"
    return 0
  fi
  log "stopping Apicurio Registry (pid $pid) ..."
  stop_pid "$pid" "$REGISTRY_STOP_TIMEOUT" "Apicurio Registry"
  rm -f "$PID_FILE" "$URL_FILE"
  log "Apicurio Registry stopped"
}

cmd_status() {
  local pid url
  url="$(registry_url)"
  if ! pid="$(registry_pid)"; then
    if port_listening "$REGISTRY_PORT"; then
      echo "registry: stopped; port $REGISTRY_PORT is held by another process: $(port_holder "$REGISTRY_PORT")"
    else
      echo "registry: stopped"
    fi
    return 3
  fi
  if ccompat_answers "$url"; then
    echo "registry: running pid $pid, ccompat API answering at $url, log $LOG_FILE"
    return 0
  fi
  echo "registry: running pid $pid but $url does not answer (starting, or unhealthy: see $LOG_FILE)"
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
    url) registry_url ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
