# shellcheck shell=bash
# Shared helpers for scripts/kafka.sh, scripts/registry.sh and scripts/services.sh.
# Source it (`. "$(dirname "$0")/lib.sh"`); it defines things and runs nothing.

# Sourcing twice (services.sh runs the others as separate processes, but a caller might source
# lib.sh itself) must not redefine the readonly paths.
if [[ -n "${ORDERSTREAM_LIB_LOADED:-}" ]]; then
  return 0
fi
ORDERSTREAM_LIB_LOADED=1

# Everything is addressed from the repo root so the scripts work from any working directory.
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Downloads (jars, tarballs) survive `reset`; runtime state (data, logs, pids) lives in RUN_DIR.
# Both are git-ignored. The overrides exist for parallel CI checkouts sharing one download cache.
# shellcheck disable=SC2034 # used by the scripts that source this file
CACHE_DIR="${ORDERSTREAM_CACHE_DIR:-$ROOT_DIR/.cache}"
# shellcheck disable=SC2034 # used by the scripts that source this file
RUN_DIR="${ORDERSTREAM_RUN_DIR:-$ROOT_DIR/.run}"
# A script sets LOG_TAG so interleaved output from services.sh says who is talking.
LOG_TAG="${LOG_TAG:-orderstream}"

# ---------------------------------------------------------------------------------------------
# Logging. Plain text on stderr: stdout stays free for values other scripts capture
# (e.g. `kafka.sh bootstrap`, `registry.sh url`).

log() {
  printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "$LOG_TAG" "$*" >&2
}

warn() {
  log "WARNING: $*"
}

die() {
  log "ERROR: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Prerequisites.

# require_cmd NAME HOW_TO_INSTALL
require_cmd() {
  local name="$1" hint="$2"
  command -v "$name" >/dev/null 2>&1 || die "'$name' is not on PATH. $hint"
}

# The java binary to use: JAVA_HOME wins, as with Kafka's own kafka-run-class.sh.
java_bin() {
  if [[ -n "${JAVA_HOME:-}" ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    printf '%s\n' java
  fi
}

# Kafka 4.x brokers and Apicurio 3.x both need Java 17+; fail with the version found, not with a
# cryptic UnsupportedClassVersionError from deep inside a log file.
require_java() {
  local java version major
  java="$(java_bin)"
  if ! command -v "$java" >/dev/null 2>&1; then
    die "Java not found ('$java'). Install a JDK 17 or newer (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless), or point JAVA_HOME at one."
  fi
  version="$("$java" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')"
  major="${version%%.*}"
  # Java 8 and older report "1.8.0_x".
  if [[ "$major" == "1" ]]; then
    major="$(cut -d. -f2 <<<"$version")"
  fi
  if ! [[ "$major" =~ ^[0-9]+$ ]]; then
    die "could not read the Java version from '$java -version' (got '$version'). A JDK 17+ is needed."
  fi
  if ((major < 17)); then
    die "Java $version found at $(command -v "$java"), but Kafka 4.x and Apicurio 3.x need Java 17 or newer. Install openjdk-17-jdk-headless or set JAVA_HOME."
  fi
}

# mvn_quiet ARGS...: mvn in batch mode, errors only, without the ANSI colour codes Maven 3.8
# prints even under -B; its output goes to stdout for the caller to show or record.
mvn_quiet() {
  mvn -q -B -Dstyle.color=never "$@" 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g'
}

require_mvn() {
  require_cmd mvn "Maven fetches the Kafka and Apicurio artifacts from Maven Central. Install Apache Maven 3.6+ (Debian/Ubuntu: apt-get install maven)."
}

# setsid detaches the servers from the caller's process group, so Ctrl-C in the terminal that
# ran `start` (or a harness killing that group) does not take the brokers down with it.
require_daemon_tools() {
  require_cmd setsid "It ships with util-linux (Debian/Ubuntu: apt-get install util-linux)."
  require_cmd flock "It ships with util-linux (Debian/Ubuntu: apt-get install util-linux)."
}

# ---------------------------------------------------------------------------------------------
# Ports.

# port_listening PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
# ss asks the kernel without touching the server; /dev/tcp is the fallback without iproute2.
port_listening() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

# port_holder PORT: a human description of who listens on PORT (best effort).
port_holder() {
  local port="$1" line
  if command -v ss >/dev/null 2>&1; then
    line="$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n 1)"
    # The users:(("java",pid=123,fd=45)) column names the process when we may see it.
    if [[ "$line" =~ users:\(\(\"([^\"]+)\",pid=([0-9]+) ]]; then
      printf '%s (pid %s)\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
      return 0
    fi
  fi
  printf '%s\n' "an unknown process (try: ss -ltnp 'sport = :$port')"
}

# require_port_free PORT WHAT: refuse to start a server on a port somebody else already holds,
# rather than letting the JVM die later with a BindException buried in its log.
require_port_free() {
  local port="$1" what="$2"
  if port_listening "$port"; then
    die "port $port (needed for $what) is already in use by $(port_holder "$port"). Stop that process or free the port."
  fi
}

# ---------------------------------------------------------------------------------------------
# Waiting.

# wait_until TIMEOUT_S INTERVAL_S DESCRIPTION COMMAND [ARGS...]
# Polls COMMAND until it succeeds (returns 0) or TIMEOUT_S passes (returns 1). A COMMAND that
# returns 2 means "this will never succeed" (e.g. the process died) and ends the wait at once
# (returns 2), so callers do not sit out the full timeout on a crashed server.
wait_until() {
  local timeout="$1" interval="$2" what="$3"
  shift 3
  local deadline=$((SECONDS + timeout)) rc
  while :; do
    rc=0
    "$@" || rc=$?
    if ((rc == 0)); then
      return 0
    fi
    if ((rc == 2)); then
      log "gave up waiting for $what"
      return 2
    fi
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep "$interval"
  done
}

# ---------------------------------------------------------------------------------------------
# Processes. Servers record their own pid (see start_detached); every check also matches the
# command line so a recycled pid never makes us report, or signal, a stranger's process.

# pid_matches PID PATTERN: PID is alive and its command line contains PATTERN.
pid_matches() {
  local pid="$1" pattern="$2" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$pattern"* ]]
}

# pidfile_pid PIDFILE PATTERN: prints the pid when it is alive and matches, else fails.
pidfile_pid() {
  local file="$1" pattern="$2" pid
  [[ -s "$file" ]] || return 1
  pid="$(<"$file")"
  pid_matches "$pid" "$pattern" || return 1
  printf '%s\n' "$pid"
}

# start_detached PIDFILE OUTFILE COMMAND [ARGS...]
# Runs COMMAND in its own session, stdout+stderr to OUTFILE, and waits until it has written
# its pid. The process writes the pid itself (before exec), so the pid file names the JVM
# whether or not setsid had to fork. fd 9 (the with_lock lock) is closed in the child: a
# server inheriting it would hold the lock for its whole life and block every later command.
start_detached() {
  local pidfile="$1" outfile="$2"
  shift 2
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$ and $0 must expand in the child shell, not here.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >"$outfile" 2>&1 </dev/null 9>&- &
  local waited=0
  while [[ ! -s "$pidfile" ]]; do
    if ((waited >= 50)); then
      die "process for $pidfile did not record its pid within 5s (see $outfile)"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# wait_pid_gone PID TIMEOUT_S: true once PID has exited.
wait_pid_gone() {
  local pid="$1" timeout="$2"
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.2
  done
}

# stop_pid PID TIMEOUT_S NAME: SIGTERM for a clean shutdown, SIGKILL if it overstays.
stop_pid() {
  local pid="$1" timeout="$2" name="$3"
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_pid_gone "$pid" "$timeout"; then
    warn "$name (pid $pid) still running ${timeout}s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_gone "$pid" 10 || die "$name (pid $pid) survived SIGKILL"
  fi
}

# with_lock LOCKFILE: serialises mutating commands (fetch/start/stop/reset) when several
# scripts or test suites run at once. Held until the script exits (fd 9 closes). Taking it twice
# in one script is a no-op: re-opening fd 9 would drop the lock we already hold.
with_lock() {
  local lockfile="$1"
  if [[ "${ORDERSTREAM_LOCK_HELD:-}" == "$lockfile" ]]; then
    return 0
  fi
  mkdir -p "$(dirname "$lockfile")"
  exec 9>"$lockfile"
  if ! flock -w 600 9; then
    die "another start/stop is still holding $lockfile after 600s"
  fi
  ORDERSTREAM_LOCK_HELD="$lockfile"
}

# Wall-clock milliseconds, for the start-up timings the scripts report.
now_ms() {
  date +%s%3N
}

# elapsed_s START_MS: seconds since START_MS with one decimal, e.g. "12.3".
elapsed_s() {
  local ms=$(($(now_ms) - $1))
  printf '%d.%d\n' "$((ms / 1000))" "$(((ms % 1000) / 100))"
}

# ---------------------------------------------------------------------------------------------
# Java for Apicurio (scripts/registry.sh and scripts/registry-secure.sh): its classes are Java 21
# bytecode, while Kafka is happy with 17, so the two may use different JVMs.

java_major() {
  local version major
  version="$("$1" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')"
  major="${version%%.*}"
  if [[ "$major" == "1" ]]; then
    major="$(cut -d. -f2 <<<"$version")"
  fi
  [[ "$major" =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "$major"
}

# Prints the first Java 21+ found, in order of how explicitly the user chose it.
find_registry_java() {
  local candidate major candidates=()
  if [[ -n "${REGISTRY_JAVA_HOME:-}" ]]; then
    candidate="$REGISTRY_JAVA_HOME/bin/java"
    major="$(java_major "$candidate" 2>/dev/null)" || die "REGISTRY_JAVA_HOME=$REGISTRY_JAVA_HOME has no working bin/java"
    ((major >= 21)) || die "REGISTRY_JAVA_HOME points at Java $major; Apicurio Registry ${APICURIO_VERSION:-3.x} needs 21+"
    printf '%s\n' "$candidate"
    return 0
  fi
  [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null 2>&1 && candidates+=("$(command -v java)")
  # Newest first: version-sorted directory names, reversed.
  while IFS= read -r candidate; do
    candidates+=("$candidate")
  done < <(compgen -G '/usr/lib/jvm/*/bin/java' | sort -rV)
  for candidate in "${candidates[@]}"; do
    [[ -x "$candidate" ]] || continue
    major="$(java_major "$candidate" 2>/dev/null)" || continue
    if ((major >= 21)); then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  die "Apicurio Registry ${APICURIO_VERSION:-3.x} needs Java 21 or newer (its classes are Java 21 bytecode), but only older Java was found. Install a JDK 21+ (e.g. Temurin 21/25, or openjdk-21-jdk-headless where your distribution has it) and set REGISTRY_JAVA_HOME to it."
}

# read_port_base FILE DEFAULT: the port base stored in FILE when a cluster was created there,
# else DEFAULT; refused unless it is a port with room above it.
read_port_base() {
  local base
  if [[ -s "$1" ]]; then
    base="$(<"$1")"
  else
    base="$2"
  fi
  if ! [[ "$base" =~ ^[0-9]+$ ]] || ((base < 1024 || base > 65530)); then
    die "port base '$base' is not a port number between 1024 and 65530"
  fi
  printf '%s\n' "$base"
}
