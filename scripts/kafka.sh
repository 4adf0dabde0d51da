#!/usr/bin/env bash
# Fetch, cache and run a real Apache Kafka 4.1.1 cluster (KRaft, combined broker+controller
# nodes) on 127.0.0.1 from the Maven Central jars: no Docker, no release tarball.
# `scripts/kafka.sh help` lists the commands; docker-compose.yml is the 3-node equivalent.
set -euo pipefail

LOG_TAG=kafka
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly KAFKA_VERSION=4.1.1
readonly KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
readonly KAFKA_LIB="$KAFKA_HOME/lib"
# Written only after mvn succeeded; holds the pom's digest so editing the pom forces a re-fetch.
readonly KAFKA_FETCHED_MARKER="$KAFKA_HOME/.fetched"
readonly KAFKA_POM="$ROOT_DIR/scripts/java/kafka-pom.xml"
readonly BROKER_LOG4J="$ROOT_DIR/scripts/java/log4j2.properties"
readonly TOOLS_LOG4J="$ROOT_DIR/scripts/java/tools-log4j2.properties"

readonly KAFKA_RUN="$RUN_DIR/kafka"
# The node count of the cluster that owns .run/kafka: later commands (stop N, bootstrap, ...)
# read it instead of asking the user again.
readonly LAYOUT_FILE="$KAFKA_RUN/layout"
readonly CLUSTER_ID_FILE="$KAFKA_RUN/cluster.id"
# The first PLAINTEXT port, fixed when the cluster is created (KAFKA_PORT_BASE, default 9092):
# a 1-node cluster stores its controller endpoint in its metadata, so ports cannot move later.
readonly PORT_BASE_FILE="$KAFKA_RUN/port-base"
# How the 3-node layout's brokers reach each other: "direct" (default) or "proxied".
readonly REPLICATION_FILE="$KAFKA_RUN/replication"
readonly PROBE_CONFIG="$KAFKA_RUN/probe-admin.properties"
readonly LOCK_FILE="$RUN_DIR/kafka.lock"

# Brokers keep C2 and G1 (the flags of Kafka's own kafka-run-class.sh): benchmarks and soak
# tests measure them. Modest heaps so three brokers, the registry and the pipeline fit.
KAFKA_HEAP="${KAFKA_HEAP:--Xmx640m -Xms256m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
# `tool` runs perf tools too, so it keeps the full JIT as well.
KAFKA_TOOL_OPTS="${KAFKA_TOOL_OPTS:--Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-180}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"
# Storage formatting and the readiness probe are short-lived JVMs whose run time is mostly
# start-up: C1-only and SerialGC roughly halve that on 2 cores.
readonly ADMIN_JVM_OPTS=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx256m -Xshare:auto)

JAVA="$(java_bin)"

usage() {
  cat <<EOF
Usage: scripts/kafka.sh COMMAND [ARGS]

Runs Apache Kafka $KAFKA_VERSION (KRaft, combined broker+controller nodes) on 127.0.0.1.

  fetch                 download the jars once into ${KAFKA_LIB#"$ROOT_DIR"/} (no-op when cached)
  start [--nodes 1|3]   start the cluster and wait until every broker is registered.
                        Without --nodes: the existing layout, or 1 node for a fresh one.
                        A stopped cluster resumes with its data; asking for the other layout
                        while stopped deletes the old data first; while running it is an error.
  start N [--registered]
                        restart node N with its data; wait until it is registered again and
                        back in the ISR of every partition it replicates (--registered: only
                        until it is registered: a hard bounce)
  stop                  stop all nodes (SIGTERM, SIGKILL after \$KAFKA_STOP_TIMEOUT s); keeps data
  stop N                cleanly stop node N
  kill N                SIGKILL node N (crash simulation)
  pause N / resume N    SIGSTOP / SIGCONT node N (a paused "zombie" broker, and its return)
  status                per node: pid, ports; plus the brokers the cluster has registered.
                        Exit 0 all up, 1 partly up, 3 stopped or never started.
  logs [N] [-f]         without N: log paths; with N: tail (-f follows) node N's server.log
  reset                 stop and delete ${KAFKA_RUN#"$ROOT_DIR"/} (data, logs, layout)
  bootstrap             print the bootstrap servers of the current layout
  proxy-routes          per node of the layout: "N PROXY_PORT PROXIED_PORT", the routes a fault
                        proxy must serve for clients that bootstrap through it (see below)
  replication [direct|proxied]
                        print, or set and apply (restarting a running cluster), how the 3-node
                        layout's brokers reach each other: directly, or each link (S, D)
                        through its own port where a fault proxy forwards it
  replication-routes    "S D PROXY_PORT REPL_PORT" per link from node S to node D: the routes
                        a fault proxy must serve while replication is proxied
  tool CLASS|ALIAS ...  run a Kafka tool with the cached classpath, e.g.
                          tool topics --bootstrap-server \$(scripts/kafka.sh bootstrap) --list
                        aliases (as the release's kafka-*.sh scripts):
$(tool_aliases | cut -d= -f1 | paste -sd' ' | fold -s -w 64 | sed 's/^/                          /')

Node N (1..3): PLAINTEXT 127.0.0.1:\$((B+2*(N-1))), CONTROLLER 127.0.0.1:\$((B+1+2*(N-1))) with
B = \$KAFKA_PORT_BASE (default 9092, fixed when the cluster is created), so 9092/9093, 9094/9095,
9096/9097; PROXIED 127.0.0.1:\$((B+100+2*(N-1))), advertised as 127.0.0.1:\$((B+101+2*(N-1))) where
scripts/toxiproxy.sh forwards it (the reliability suite's network faults); in the 3-node layout
REPLS 127.0.0.1:\$((B+200+10*(N-1)+2*(S-1))) for node S's links to N, advertised one port above; data ${KAFKA_RUN#"$ROOT_DIR"/}/nodeN/data, log ${KAFKA_RUN#"$ROOT_DIR"/}/nodeN/server.log.

Environment: KAFKA_PORT_BASE, KAFKA_HEAP ("$KAFKA_HEAP"), KAFKA_JVM_OPTS, KAFKA_TOOL_OPTS ("$KAFKA_TOOL_OPTS"),
KAFKA_START_TIMEOUT ($KAFKA_START_TIMEOUT s), KAFKA_STOP_TIMEOUT ($KAFKA_STOP_TIMEOUT s),
JAVA_HOME, ORDERSTREAM_CACHE_DIR, ORDERSTREAM_RUN_DIR.
EOF
}

# ---------------------------------------------------------------------------------------------
# Fetch: one mvn run fills the cache; afterwards nothing is downloaded again.

pom_digest() {
  sha256sum "$KAFKA_POM" | cut -d' ' -f1
}

cache_complete() {
  [[ -f "$KAFKA_FETCHED_MARKER" ]] || return 1
  [[ "$(<"$KAFKA_FETCHED_MARKER")" == "$(pom_digest)" ]] || return 1
  local jar
  for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar"; do
    [[ -f "$KAFKA_LIB/$jar" ]] || return 1
  done
  # Without log4j-core and the slf4j binding the broker runs but logs nothing at all.
  compgen -G "$KAFKA_LIB/log4j-core-*.jar" >/dev/null || return 1
  compgen -G "$KAFKA_LIB/log4j-slf4j-impl-*.jar" >/dev/null || return 1
}

cmd_fetch() {
  with_lock "$LOCK_FILE"
  if cache_complete; then
    log "Kafka $KAFKA_VERSION jars already cached in $KAFKA_LIB (nothing downloaded)"
    return 0
  fi
  require_java
  require_mvn
  # Copy into a scratch directory and swap it in: an interrupted fetch never leaves a lib/
  # that looks complete.
  local scratch="$KAFKA_HOME/lib.partial"
  rm -rf "$scratch"
  mkdir -p "$KAFKA_HOME"
  log "fetching Kafka $KAFKA_VERSION jars with mvn (first time only) ..."
  if ! mvn_quiet -f "$KAFKA_POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$scratch" >&2; then
    rm -rf "$scratch"
    die "mvn could not resolve the Kafka $KAFKA_VERSION jars (output above). Maven Central must be reachable, directly or through ~/.m2/settings.xml."
  fi
  rm -rf "$KAFKA_LIB"
  mv "$scratch" "$KAFKA_LIB"
  pom_digest >"$KAFKA_FETCHED_MARKER"
  cache_complete || die "mvn finished but $KAFKA_LIB lacks kafka, kafka-tools or the log4j2 binding; check $KAFKA_POM"
  log "cached $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars in $KAFKA_LIB"
}

ensure_fetched() {
  cache_complete || cmd_fetch
}

# ---------------------------------------------------------------------------------------------
# Layout: node numbering, ports, paths.

PORT_BASE=""
port_base() {
  if [[ -z "$PORT_BASE" ]]; then
    PORT_BASE="$(read_port_base "$PORT_BASE_FILE" "${KAFKA_PORT_BASE:-9092}")"
  fi
  printf '%s\n' "$PORT_BASE"
}

# Node N: PLAINTEXT on base+2(N-1), CONTROLLER right above it (9092/9093, 9094/9095, 9096/9097).
plaintext_port() { printf '%s\n' "$(($(port_base) + 2 * ($1 - 1)))"; }
controller_port() { printf '%s\n' "$(($(port_base) + 1 + 2 * ($1 - 1)))"; }
# A third listener, PROXIED on base+100+2(N-1), advertises base+101+2(N-1): the port a fault
# proxy (scripts/toxiproxy.sh) listens on and forwards to it. Clients that bootstrap through the
# proxy are told the proxy's addresses, so every one of their connections crosses it; brokers
# replicate over PLAINTEXT, untouched. Nothing listens on the advertised port without the proxy.
proxied_port() { printf '%s\n' "$(($(port_base) + 100 + 2 * ($1 - 1)))"; }
proxy_port() { printf '%s\n' "$(($(port_base) + 101 + 2 * ($1 - 1)))"; }
# In the 3-node layout node D also has one replication listener per node S that may fetch from
# it, REPLS on base+200+10(D-1)+2(S-1), advertised on the port right above it. Node S sends
# its inter-broker traffic over the listener named after itself, so every (S, D) link has a
# port of its own, where a fault proxy can cut or slow that link alone. With replication
# "direct" the brokers use PLAINTEXT and these listeners sit idle; "proxied" (scripts/kafka.sh
# replication proxied) switches every node to REPLS, which then works only while a proxy
# forwards each advertised port to its listener (scripts/kafka.sh replication-routes).
repl_port() { printf '%s\n' "$(($(port_base) + 200 + 10 * ($1 - 1) + 2 * ($2 - 1)))"; }
repl_proxy_port() { printf '%s\n' "$(($(repl_port "$1" "$2") + 1))"; }
node_dir() { printf '%s\n' "$KAFKA_RUN/node$1"; }

replication_mode() {
  if [[ -s "$REPLICATION_FILE" ]]; then
    cat "$REPLICATION_FILE"
  else
    echo direct
  fi
}

# The listener entries (listeners, advertised.listeners, security map) of node D's
# replication listeners, comma-led; empty for the 1-node layout.
repl_listeners() {
  local node="$1" layout="$2" what="$3" s out=""
  ((layout == 3)) || return 0
  for ((s = 1; s <= layout; s++)); do
    case "$what" in
      listen) out+=",REPL$s://127.0.0.1:$(repl_port "$node" "$s")" ;;
      advertise) out+=",REPL$s://127.0.0.1:$(repl_proxy_port "$node" "$s")" ;;
      map) out+=",REPL$s:PLAINTEXT" ;;
    esac
  done
  printf '%s' "$out"
}

# Every port node N listens on, with a name for error messages.
require_node_ports_free() {
  local node="$1" layout="$2" s
  require_port_free "$(plaintext_port "$node")" "Kafka node $node PLAINTEXT listener"
  require_port_free "$(controller_port "$node")" "Kafka node $node CONTROLLER listener"
  require_port_free "$(proxied_port "$node")" "Kafka node $node PROXIED listener"
  if ((layout == 3)); then
    for ((s = 1; s <= layout; s++)); do
      require_port_free "$(repl_port "$node" "$s")" "Kafka node $node REPL$s listener"
    done
  fi
}

# The broker's command line contains its own server.properties path: that is what ties a pid
# to a node (and not to some other java process that inherited a recycled pid).
node_pid() {
  local dir
  dir="$(node_dir "$1")"
  pidfile_pid "$dir/pid" "$dir/server.properties"
}

node_alive() {
  node_pid "$1" >/dev/null
}

current_layout() {
  [[ -s "$LAYOUT_FILE" ]] || return 1
  local layout
  layout="$(<"$LAYOUT_FILE")"
  [[ "$layout" == 1 || "$layout" == 3 ]] || die "$LAYOUT_FILE holds '$layout', expected 1 or 3; run scripts/kafka.sh reset"
  printf '%s\n' "$layout"
}

require_layout() {
  current_layout || die "no Kafka cluster set up yet (no $LAYOUT_FILE); run: scripts/kafka.sh start [--nodes 1|3]"
}

# Nodes 1..LAYOUT whose process is alive.
alive_nodes() {
  local layout="$1" n
  for ((n = 1; n <= layout; n++)); do
    if node_alive "$n"; then
      printf '%s\n' "$n"
    fi
  done
}

bootstrap_of() {
  local n list=()
  for n in "$@"; do
    list+=("127.0.0.1:$(plaintext_port "$n")")
  done
  local IFS=,
  printf '%s\n' "${list[*]}"
}

# bootstrap_all LAYOUT: every node of the layout, running or not.
bootstrap_all() {
  local layout="$1" nodes=() n
  for ((n = 1; n <= layout; n++)); do
    nodes+=("$n")
  done
  bootstrap_of "${nodes[@]}"
}

validate_node() {
  local node="$1" layout="$2"
  if ! [[ "$node" =~ ^[0-9]+$ ]] || ((node < 1 || node > layout)); then
    die "node '$node' does not exist: the layout has nodes 1..$layout"
  fi
}

# ---------------------------------------------------------------------------------------------
# Configuration and storage.

# One generated server.properties per node, rewritten on every start so edits here apply to
# existing clusters too. Keep docker-compose.yml in step with this function.
write_node_config() {
  local node="$1" layout="$2" dir quorum rf min_isr inter=PLAINTEXT
  dir="$(node_dir "$node")"
  if ((layout == 3)) && [[ "$(replication_mode)" == proxied ]]; then
    inter="REPL$node"
  fi
  if ((layout == 1)); then
    # Dynamic quorum (KIP-853) of one voter, formatted with --standalone.
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$(controller_port 1)"
    rf=1
    min_isr=1
  else
    # Static quorum of three voters: every node is broker and controller.
    quorum="controller.quorum.voters=1@127.0.0.1:$(controller_port 1),2@127.0.0.1:$(controller_port 2),3@127.0.0.1:$(controller_port 3)"
    rf=3
    min_isr=2
  fi
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=$node
$quorum
listeners=PLAINTEXT://127.0.0.1:$(plaintext_port "$node"),CONTROLLER://127.0.0.1:$(controller_port "$node"),PROXIED://127.0.0.1:$(proxied_port "$node")$(repl_listeners "$node" "$layout" listen)
advertised.listeners=PLAINTEXT://127.0.0.1:$(plaintext_port "$node"),CONTROLLER://127.0.0.1:$(controller_port "$node"),PROXIED://127.0.0.1:$(proxy_port "$node")$(repl_listeners "$node" "$layout" advertise)
controller.listener.names=CONTROLLER
# Replication: $(replication_mode)
inter.broker.listener.name=$inter
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT$(repl_listeners "$node" "$layout" map)
log.dirs=$dir/data

# Durability: RF $rf everywhere, min ISR $min_isr, never elect an out-of-sync leader.
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
unclean.leader.election.enable=false

# Topics come from topology.toml only; tests should not wait 3s for the first rebalance.
auto.create.topics.enable=false
num.partitions=6
group.initial.rebalance.delay.ms=0
EOF
}

# The admin probes must fail fast (then we poll again) instead of retrying for a minute.
write_probe_config() {
  mkdir -p "$KAFKA_RUN"
  cat >"$PROBE_CONFIG" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

cluster_id() {
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    new_cluster_id >"$CLUSTER_ID_FILE"
  fi
  cat "$CLUSTER_ID_FILE"
}

# A Kafka Uuid is 16 random bytes in URL-safe base64 without padding, as StorageTool
# random-uuid prints it; made here to save a JVM start. A leading '-' would read as an option.
new_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    if [[ "$id" != -* ]]; then
      printf '%s\n' "$id"
      return 0
    fi
  done
}

node_formatted() {
  [[ -f "$(node_dir "$1")/data/meta.properties" ]]
}

# format_nodes LAYOUT NODE...: format the unformatted ones, in parallel (each is a JVM start).
format_nodes() {
  local layout="$1" id node pids=() nodes=() i
  shift
  id="$(cluster_id)"
  local standalone=()
  # One voter formats itself as the whole dynamic quorum; with static voters StorageTool
  # rejects --standalone.
  if ((layout == 1)); then
    standalone=(--standalone)
  fi
  for node in "$@"; do
    node_formatted "$node" && continue
    "$JAVA" "${ADMIN_JVM_OPTS[@]}" -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$KAFKA_LIB/*" \
      kafka.tools.StorageTool format -t "$id" -c "$(node_dir "$node")/server.properties" "${standalone[@]}" \
      >"$(node_dir "$node")/format.log" 2>&1 &
    pids+=("$!")
    nodes+=("$node")
  done
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      cat "$(node_dir "${nodes[$i]}")/format.log" >&2
      die "formatting node ${nodes[$i]} failed (log above)"
    fi
  done
  if ((${#nodes[@]} > 0)); then
    log "formatted storage of node(s) ${nodes[*]} (cluster id $id)"
  fi
}

# ---------------------------------------------------------------------------------------------
# Processes.

launch_node() {
  local node="$1" dir heap opts
  dir="$(node_dir "$node")"
  require_node_ports_free "$node" "$(require_layout)"
  read -ra heap <<<"$KAFKA_HEAP"
  read -ra opts <<<"$KAFKA_JVM_OPTS"
  # log4j appends across restarts: mark where this run begins.
  printf '==== %s scripts/kafka.sh: starting node %s ====\n' "$(date '+%F %T')" "$node" >>"$dir/server.log"
  start_detached "$dir/pid" "$dir/stdout.log" \
    "$JAVA" "${heap[@]}" "${opts[@]}" \
    -Dlog4j2.configurationFile="$BROKER_LOG4J" -Dkafka.logs.dir="$dir" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$dir/server.properties"
  log "node $node started (pid $(<"$dir/pid")): PLAINTEXT 127.0.0.1:$(plaintext_port "$node"), CONTROLLER 127.0.0.1:$(controller_port "$node")"
}

# stop_nodes SIGNAL LAYOUT NODE...: signal all at once, then wait for each to exit.
#
# A combined node's clean shutdown ends with a controlled shutdown that the controller quorum
# must commit. In a 3-node layout the node left running last has no quorum (its two fellow
# voters are gone), so it would wait ~5 minutes for nothing: after QUORUM_LOST_GRACE seconds
# alone it gets SIGKILL. Its logs are recovered on the next start, like after any crash.
readonly QUORUM_LOST_GRACE=10
stop_nodes() {
  local signal="$1" layout="$2" node pid i
  shift 2
  local pids=() names=()
  for node in "$@"; do
    pid="$(node_pid "$node")" || continue
    kill "-$signal" "$pid" 2>/dev/null || true
    pids+=("$pid")
    names+=("$node")
    log "node $node (pid $pid): sent SIG$signal"
  done
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT)) alone_since="" pending
  while :; do
    pending=()
    for i in "${!pids[@]}"; do
      if kill -0 "${pids[$i]}" 2>/dev/null; then
        pending+=("$i")
      elif [[ -n "${names[$i]}" ]]; then
        rm -f "$(node_dir "${names[$i]}")/pid"
        log "node ${names[$i]} stopped"
        names[i]=""
      fi
    done
    ((${#pending[@]} > 0)) || return 0
    if [[ "$signal" == KILL ]]; then
      if ((SECONDS >= deadline)); then
        die "node(s) still alive after SIGKILL: pids ${pids[*]}"
      fi
    elif ((layout == 3)) && (($(alive_nodes "$layout" | wc -l) <= 1)); then
      alone_since="${alone_since:-$SECONDS}"
      if ((SECONDS - alone_since >= QUORUM_LOST_GRACE)); then
        for i in "${pending[@]}"; do
          warn "node ${names[$i]} is the last voter running: without a controller quorum its controlled shutdown cannot finish; sending SIGKILL"
          kill -KILL "${pids[$i]}" 2>/dev/null || true
        done
        signal=KILL
        deadline=$((SECONDS + 10))
      fi
    fi
    if [[ "$signal" != KILL ]] && ((SECONDS >= deadline)); then
      for i in "${pending[@]}"; do
        warn "node ${names[$i]} (pid ${pids[$i]}) still running ${KAFKA_STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
        kill -KILL "${pids[$i]}" 2>/dev/null || true
      done
      signal=KILL
      deadline=$((SECONDS + 10))
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------------
# Readiness.

# Runs a Kafka admin tool in a fast-starting JVM, bounded in time, logs on stderr suppressed.
admin_tool() {
  timeout 60 "$JAVA" "${ADMIN_JVM_OPTS[@]}" -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
    -cp "$KAFKA_LIB/*" "$@" 2>/dev/null
}

# registered_brokers BOOTSTRAP: ids of the brokers the controller has registered and unfenced
# (that is, caught up with metadata and serving), one per line. One JVM asks for all of them.
registered_brokers() {
  admin_tool org.apache.kafka.tools.ClusterTool list-endpoints \
    --bootstrap-server "$1" --config "$PROBE_CONFIG" --include-fenced-brokers |
    awk '$5 == "unfenced" && $6 == "broker" { print $1 }'
}

# Bootstrap list of the nodes whose PLAINTEXT port is open right now.
listening_bootstrap() {
  local layout="$1" n up=()
  for ((n = 1; n <= layout; n++)); do
    if port_listening "$(plaintext_port "$n")"; then
      up+=("$n")
    fi
  done
  ((${#up[@]} > 0)) || return 1
  bootstrap_of "${up[@]}"
}

# nodes_ready LAYOUT NODE...: 0 when all NODEs are registered, 1 not yet, 2 one has died.
# Cheap checks (pid, port) come first so the JVM probe only runs once it can succeed.
nodes_ready() {
  local layout="$1" node bootstrap registered
  shift
  for node in "$@"; do
    if ! node_alive "$node"; then
      log "node $node exited during start-up"
      return 2
    fi
    port_listening "$(plaintext_port "$node")" || return 1
  done
  bootstrap="$(listening_bootstrap "$layout")" || return 1
  registered="$(registered_brokers "$bootstrap")" || return 1
  for node in "$@"; do
    grep -qx "$node" <<<"$registered" || return 1
  done
}

# node_in_sync LAYOUT NODE: 0 when NODE is in the ISR of every partition it replicates.
node_in_sync() {
  local layout="$1" node="$2" bootstrap described
  node_alive "$node" || return 2
  bootstrap="$(listening_bootstrap "$layout")" || return 1
  described="$(admin_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
    --command-config "$PROBE_CONFIG" --describe)" || return 1
  awk -v node="$node" '
    / Partition: / {
      replicas = ""; isr = ""
      for (i = 1; i < NF; i++) {
        if ($i == "Replicas:") replicas = $(i + 1)
        if ($i == "Isr:") isr = $(i + 1)
      }
      if (index("," replicas ",", "," node ",") && !index("," isr ",", "," node ",")) lagging++
    }
    END { exit lagging > 0 }' <<<"$described"
}

# all_in_sync LAYOUT: 0 when every node is in the ISR of every partition it replicates.
all_in_sync() {
  local layout="$1" n
  for ((n = 1; n <= layout; n++)); do
    node_in_sync "$layout" "$n" || return 1
  done
}

print_log_tails() {
  local node dir
  for node in "$@"; do
    dir="$(node_dir "$node")"
    log "---- last 25 lines of $dir/server.log ----"
    tail -n 25 "$dir/server.log" >&2 2>/dev/null || true
    if [[ -s "$dir/stdout.log" ]]; then
      log "---- last 10 lines of $dir/stdout.log (JVM output) ----"
      tail -n 10 "$dir/stdout.log" >&2
    fi
  done
}

# fail_start LAYOUT "WHAT" LAUNCHED...: a start that did not become ready leaves nothing behind:
# show the logs, stop the nodes this command launched (their data and logs stay), and fail.
fail_start() {
  local layout="$1" what="$2"
  shift 2
  print_log_tails "$@"
  stop_nodes TERM "$layout" "$@"
  die "$what (logs above; full logs: scripts/kafka.sh logs N). The node(s) this command started were stopped again."
}

# wait_nodes_ready LAYOUT LAUNCHED NODE...: wait until every NODE is registered; on failure
# fail_start the space-separated LAUNCHED nodes.
wait_nodes_ready() {
  local layout="$1" launched="$2" rc=0 started=()
  shift 2
  wait_until "$KAFKA_START_TIMEOUT" 1 "broker(s) $* to register" nodes_ready "$layout" "$@" || rc=$?
  if ((rc != 0)); then
    read -ra started <<<"$launched"
    fail_start "$layout" "Kafka node(s) $* not ready" "${started[@]}"
  fi
}

print_where() {
  local layout="$1" n
  log "bootstrap servers: $(bootstrap_all "$layout")"
  for ((n = 1; n <= layout; n++)); do
    log "node $n log: $(node_dir "$n")/server.log"
  done
}

# ---------------------------------------------------------------------------------------------
# Commands.

cmd_start() {
  local count=""
  case "${1:-}" in
    "") ;;
    --nodes) count="${2:-}" ;;
    --nodes=*) count="${1#--nodes=}" ;;
    [0-9]*)
      cmd_start_node "$1" "${2:-}"
      return
      ;;
    *) die "start: unknown argument '$1' (expected --nodes 1|3 or a node number)" ;;
  esac
  if [[ -n "$count" && "$count" != 1 && "$count" != 3 ]]; then
    die "start: --nodes must be 1 or 3, not '$count'"
  fi
  cmd_start_cluster "$count"
}

cmd_start_cluster() {
  local wanted="$1" layout="" alive
  with_lock "$LOCK_FILE"
  layout="$(current_layout)" || layout=""
  alive=""
  if [[ -n "$layout" ]]; then
    alive="$(alive_nodes "$layout")"
  fi
  wanted="${wanted:-${layout:-1}}"

  if [[ -n "$alive" && "$layout" != "$wanted" ]]; then
    die "Kafka is running with $layout node(s) but $wanted were asked for. Stop it first: scripts/kafka.sh stop (keeps data) or scripts/kafka.sh reset (deletes it)."
  fi
  if [[ -n "$alive" && "$(wc -l <<<"$alive")" -eq "$wanted" ]]; then
    log "Kafka already running with $wanted node(s); nothing to do"
    print_where "$wanted"
    return 0
  fi
  if [[ -z "$alive" && -n "$layout" && "$layout" != "$wanted" ]]; then
    # The stored metadata quorum belongs to the old layout: it cannot be reused.
    log "switching from $layout to $wanted node(s): deleting the old cluster's data in $KAFKA_RUN"
    rm -rf "$KAFKA_RUN"
    PORT_BASE=""
  fi
  if [[ -n "${KAFKA_PORT_BASE:-}" && -s "$PORT_BASE_FILE" && "$(<"$PORT_BASE_FILE")" != "$KAFKA_PORT_BASE" ]]; then
    die "the cluster in $KAFKA_RUN uses port base $(<"$PORT_BASE_FILE"), not KAFKA_PORT_BASE=$KAFKA_PORT_BASE; scripts/kafka.sh reset first to move it"
  fi

  ensure_fetched
  require_java
  require_daemon_tools
  local t0 node all=() missing=()
  t0="$(now_ms)"
  for ((node = 1; node <= wanted; node++)); do
    all+=("$node")
    node_alive "$node" || missing+=("$node")
  done
  # Check every port before launching anything, so a clash never leaves half a cluster.
  for node in "${missing[@]}"; do
    require_node_ports_free "$node" "$wanted"
  done
  mkdir -p "$KAFKA_RUN"
  port_base >"$PORT_BASE_FILE"
  printf '%s\n' "$wanted" >"$LAYOUT_FILE"
  write_probe_config
  for node in "${missing[@]}"; do
    write_node_config "$node" "$wanted"
  done
  format_nodes "$wanted" "${missing[@]}"
  for node in "${missing[@]}"; do
    launch_node "$node"
  done
  log "waiting up to ${KAFKA_START_TIMEOUT}s for $wanted broker(s) to register ..."
  wait_nodes_ready "$wanted" "${missing[*]}" "${all[@]}"
  log "Kafka ready with $wanted node(s) in $(elapsed_s "$t0")s"
  print_where "$wanted"
}

cmd_start_node() {
  local node="$1" mode="${2:-}" layout t0 rc=0
  [[ -z "$mode" || "$mode" == --registered ]] || die "start $node: unknown argument '$mode' (expected --registered)"
  with_lock "$LOCK_FILE"
  layout="$(require_layout)"
  validate_node "$node" "$layout"
  if node_alive "$node"; then
    log "node $node already running (pid $(node_pid "$node")); nothing to do"
    return 0
  fi
  ensure_fetched
  require_java
  require_daemon_tools
  t0="$(now_ms)"
  write_probe_config
  write_node_config "$node" "$layout"
  format_nodes "$layout" "$node"
  launch_node "$node"
  wait_nodes_ready "$layout" "$node" "$node"
  if [[ "$mode" == --registered ]]; then
    log "node $node registered after $(elapsed_s "$t0")s (not waiting for the ISRs)"
    return 0
  fi
  log "node $node registered after $(elapsed_s "$t0")s; waiting for it to rejoin the ISRs ..."
  wait_until "$KAFKA_START_TIMEOUT" 1 "node $node to rejoin every ISR" node_in_sync "$layout" "$node" || rc=$?
  if ((rc != 0)); then
    print_log_tails "$node"
    die "node $node is up but not back in sync (logs above)"
  fi
  log "node $node back in sync after $(elapsed_s "$t0")s; log: $(node_dir "$node")/server.log"
}

cmd_stop() {
  local layout
  with_lock "$LOCK_FILE"
  if ! layout="$(current_layout)"; then
    log "no Kafka cluster set up; nothing to stop"
    return 0
  fi
  if [[ -n "${1:-}" ]]; then
    validate_node "$1" "$layout"
    node_alive "$1" || {
      log "node $1 is not running"
      return 0
    }
    stop_nodes TERM "$layout" "$1"
    return 0
  fi
  local alive
  alive="$(alive_nodes "$layout")"
  if [[ -z "$alive" ]]; then
    log "Kafka is not running"
    return 0
  fi
  # shellcheck disable=SC2086 # one node number per line
  stop_nodes TERM "$layout" $alive
  log "Kafka stopped (data kept in $KAFKA_RUN; scripts/kafka.sh reset deletes it)"
}

cmd_kill() {
  local node="${1:-}" layout
  [[ -n "$node" ]] || die "kill: which node? usage: scripts/kafka.sh kill N"
  with_lock "$LOCK_FILE"
  layout="$(require_layout)"
  validate_node "$node" "$layout"
  if ! node_alive "$node"; then
    log "node $node is not running"
    return 0
  fi
  stop_nodes KILL "$layout" "$node"
}

# pause N / resume N: SIGSTOP / SIGCONT a node (a zombie: alive, holding its sockets, silent).
cmd_signal_node() {
  local signal="$1" node="${2:-}" layout pid
  [[ -n "$node" ]] || die "which node? usage: scripts/kafka.sh pause|resume N"
  layout="$(require_layout)"
  validate_node "$node" "$layout"
  pid="$(node_pid "$node")" || die "node $node is not running"
  kill -"$signal" "$pid"
  log "node $node (pid $pid): sent SIG$signal"
}

port_state() {
  if port_listening "$1"; then
    echo open
  else
    echo closed
  fi
}

cmd_status() {
  local layout n pid healthy=0 bootstrap registered
  if ! layout="$(current_layout)"; then
    echo "kafka: not set up (scripts/kafka.sh start [--nodes 1|3])"
    return 3
  fi
  echo "kafka $KAFKA_VERSION: $layout-node layout, replication $(replication_mode), state in $KAFKA_RUN"
  for ((n = 1; n <= layout; n++)); do
    local state="stopped" pp cp
    pid="$(node_pid "$n")" && state="running pid $pid"
    pp="$(plaintext_port "$n")"
    cp="$(controller_port "$n")"
    pp="$pp $(port_state "$pp")"
    cp="$cp $(port_state "$cp")"
    if [[ "$state" == running* && "$pp" == *open ]]; then
      healthy=$((healthy + 1))
    fi
    printf 'node %d: %-18s PLAINTEXT %-12s CONTROLLER %-12s log %s\n' \
      "$n" "$state" "$pp" "$cp" "$(node_dir "$n")/server.log"
  done
  if bootstrap="$(listening_bootstrap "$layout")" && [[ -s "$PROBE_CONFIG" ]]; then
    registered="$(registered_brokers "$bootstrap" | sort -n | paste -sd, -)" || registered=""
    echo "registered brokers: ${registered:-none} (bootstrap $(bootstrap_all "$layout"))"
  fi
  if ((healthy == layout)); then
    return 0
  elif ((healthy > 0)); then
    return 1
  fi
  return 3
}

cmd_logs() {
  local layout node="" follow=""
  layout="$(require_layout)"
  while (($# > 0)); do
    case "$1" in
      -f | --follow) follow=1 ;;
      *) node="$1" ;;
    esac
    shift
  done
  if [[ -z "$node" ]]; then
    for ((node = 1; node <= layout; node++)); do
      echo "node $node: $(node_dir "$node")/server.log  (JVM stdout/stderr: $(node_dir "$node")/stdout.log)"
    done
    return 0
  fi
  validate_node "$node" "$layout"
  local file
  file="$(node_dir "$node")/server.log"
  [[ -f "$file" ]] || die "node $node has no log yet ($file)"
  log "$file"
  if [[ -n "$follow" ]]; then
    exec tail -n "${KAFKA_LOG_LINES:-50}" -F "$file"
  fi
  tail -n "${KAFKA_LOG_LINES:-50}" "$file"
}

cmd_reset() {
  with_lock "$LOCK_FILE"
  cmd_stop
  rm -rf "$KAFKA_RUN"
  log "deleted $KAFKA_RUN"
}

cmd_bootstrap() {
  local layout
  layout="$(require_layout)"
  if [[ -z "$(alive_nodes "$layout")" ]]; then
    warn "Kafka is not running (scripts/kafka.sh start)"
  fi
  bootstrap_all "$layout"
}

cmd_proxy_routes() {
  local layout n
  layout="$(require_layout)"
  for ((n = 1; n <= layout; n++)); do
    printf '%d %d %d\n' "$n" "$(proxy_port "$n")" "$(proxied_port "$n")"
  done
}

cmd_replication_routes() {
  local layout s d
  layout="$(require_layout)"
  ((layout == 3)) || die "replication-routes: only the 3-node layout has replication listeners"
  for ((s = 1; s <= layout; s++)); do
    for ((d = 1; d <= layout; d++)); do
      ((s == d)) && continue
      printf '%d %d %d %d\n' "$s" "$d" "$(repl_proxy_port "$d" "$s")" "$(repl_port "$d" "$s")"
    done
  done
}

# replication [direct|proxied]: without an argument print the mode; with one, record it and,
# when the cluster runs, restart every node with it (all at once: the metadata quorum and the
# data stay, as after scripts/kafka.sh stop and start).
cmd_replication() {
  local mode="${1:-}" layout alive
  layout="$(require_layout)"
  if [[ -z "$mode" ]]; then
    replication_mode
    return 0
  fi
  [[ "$mode" == direct || "$mode" == proxied ]] || die "replication: expected direct or proxied, not '$mode'"
  ((layout == 3)) || die "replication: only the 3-node layout has replication listeners"
  if [[ "$(replication_mode)" == "$mode" ]]; then
    log "replication already $mode; nothing to do"
    return 0
  fi
  with_lock "$LOCK_FILE"
  alive="$(alive_nodes "$layout")"
  printf '%s\n' "$mode" >"$REPLICATION_FILE"
  if [[ -z "$alive" ]]; then
    log "replication $mode from the next start"
    return 0
  fi
  log "replication $mode: restarting every node"
  cmd_stop
  cmd_start_cluster "$layout"
  # The nodes came back one after another, so the last one leads almost everything: once
  # every replica is in sync, give each partition back to its preferred leader.
  wait_until "$KAFKA_START_TIMEOUT" 1 "every node to rejoin every ISR" all_in_sync "$layout" ||
    die "replication $mode: the nodes are up but not back in sync"
  admin_tool org.apache.kafka.tools.LeaderElectionCommand --bootstrap-server "$(bootstrap_all "$layout")" \
    --admin.config "$PROBE_CONFIG" --election-type PREFERRED --all-topic-partitions >/dev/null ||
    warn "replication $mode: the preferred-leader election did not finish for every partition"
  log "replication $mode: every node in sync, preferred leaders elected"
}

# Short names follow the kafka-*.sh scripts of the release tarball.
tool_aliases() {
  cat <<'EOF'
topics=org.apache.kafka.tools.TopicCommand
consumer-groups=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
console-producer=org.apache.kafka.tools.ConsoleProducer
console-consumer=org.apache.kafka.tools.consumer.ConsoleConsumer
producer-perf-test=org.apache.kafka.tools.ProducerPerformance
consumer-perf-test=org.apache.kafka.tools.ConsumerPerformance
configs=kafka.admin.ConfigCommand
metadata-quorum=org.apache.kafka.tools.MetadataQuorumCommand
cluster=org.apache.kafka.tools.ClusterTool
get-offsets=org.apache.kafka.tools.GetOffsetShell
delete-records=org.apache.kafka.tools.DeleteRecordsCommand
transactions=org.apache.kafka.tools.TransactionsCommand
leader-election=org.apache.kafka.tools.LeaderElectionCommand
EOF
}

cmd_tool() {
  local main="${1:-}" mapped opts
  [[ -n "$main" ]] || die "tool: which class? e.g. scripts/kafka.sh tool org.apache.kafka.tools.TopicCommand --help"
  shift
  mapped="$(tool_aliases | awk -F= -v a="$main" '$1 == a { print $2 }')"
  main="${mapped:-$main}"
  ensure_fetched
  require_java
  read -ra opts <<<"$KAFKA_TOOL_OPTS"
  # A fetch above may have taken the lock (fd 9): a long-running tool must not keep holding it.
  exec 9>&-
  exec "$JAVA" "${opts[@]}" -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$KAFKA_LIB/*" "$main" "$@"
}

main() {
  local cmd="${1:-help}"
  shift || true
  # Validate and cache the port base here, in the main shell: the $(...) that use it cannot.
  port_base >/dev/null
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    kill) cmd_kill "$@" ;;
    pause) cmd_signal_node STOP "$@" ;;
    resume) cmd_signal_node CONT "$@" ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    reset) cmd_reset ;;
    bootstrap) cmd_bootstrap ;;
    proxy-routes) cmd_proxy_routes ;;
    replication-routes) cmd_replication_routes ;;
    replication) cmd_replication "$@" ;;
    tool) cmd_tool "$@" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
