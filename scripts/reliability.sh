#!/usr/bin/env bash
# The reliability suite: fault injection on the 3-node cluster, then RELIABILITY.md.
#
#   scripts/reliability.sh             # all scenarios, writes RELIABILITY.md
#   scripts/reliability.sh s1 s7       # only the scenarios whose test names match (no table file
#                                      # is rewritten unless RELIABILITY_WRITE=1)
#   RELIABILITY_RENDER_ONLY=1 scripts/reliability.sh   # only re-render RELIABILITY.md from the
#                                      # last run's results.jsonl and run.json (exit status,
#                                      # wall time, commit, command); refused when there is no run
#
# Starts Kafka (3 KRaft nodes) and the registry with scripts/services.sh, PostgreSQL and
# Toxiproxy when they are not running, and stops only what it started. Running services must
# be the 3-node layout.
# Figures: one JSON row per scenario in target/reliability/results.jsonl (see
# tests/reliability/checker.rs for the definitions), rendered into RELIABILITY.md.
# The environment of scripts/kafka.sh and scripts/registry.sh applies (ORDERSTREAM_RUN_DIR,
# KAFKA_PORT_BASE, REGISTRY_PORT, ...): the tests call those scripts to inject faults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*" >&2; }

RESULTS_DIR="${CARGO_TARGET_DIR:-target}/reliability"
RESULTS="$RESULTS_DIR/results.jsonl"
RUN_LOG="$RESULTS_DIR/run.log"
# What the last run was: written after a real run, read by RELIABILITY_RENDER_ONLY=1.
RUN_INFO="$RESULTS_DIR/run.json"
OUT="${RELIABILITY_OUT:-RELIABILITY.md}"
write_table=1
if [[ $# -gt 0 && ${RELIABILITY_WRITE:-0} != 1 ]]; then
  write_table=0
fi

render_only="${RELIABILITY_RENDER_ONLY:-0}"
if [[ $render_only == 1 ]]; then
  if [[ ! -s $RUN_INFO || ! -s $RESULTS ]]; then
    echo "no recorded run ($RUN_INFO, $RESULTS): run scripts/reliability.sh first" >&2
    exit 2
  fi
  # the exit status of the run the table comes from
  rc="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["rc"])' "$RUN_INFO")"
else
# Build first: the CLI binary (scenario 9) and the test binary, before the JVMs compete for CPU.
log "build"
cargo build --workspace --all-targets --locked
cargo test --workspace --locked --test reliability --no-run

started=0
if ! bash scripts/services.sh status >/dev/null 2>&1; then
  log "starting Kafka (3 nodes) and the registry"
  bash scripts/services.sh up --nodes 3
  started=1
fi
# Scenario 5 applies its events to the product's PostgreSQL store.
pg_started=0
if ! bash scripts/postgres.sh status >/dev/null 2>&1; then
  log "starting PostgreSQL"
  bash scripts/postgres.sh start
  pg_started=1
fi
# Scenarios 17 and 18 put network faults between clients and brokers, and between brokers,
# through Toxiproxy (built from its Go module on first use).
toxiproxy_started=0
if ! bash scripts/toxiproxy.sh status >/dev/null 2>&1; then
  log "starting Toxiproxy"
  bash scripts/toxiproxy.sh start
  toxiproxy_started=1
fi
eval "$(bash scripts/toxiproxy.sh env)"
cleanup() {
  if [[ $toxiproxy_started == 1 ]]; then
    bash scripts/toxiproxy.sh stop || true
  fi
  if [[ $pg_started == 1 ]]; then
    bash scripts/postgres.sh stop || true
  fi
  if [[ $started == 1 ]]; then
    log "stopping the services this script started"
    bash scripts/services.sh down || true
  fi
}
trap cleanup EXIT

layout_file="${ORDERSTREAM_RUN_DIR:-.run}/kafka/layout"
nodes="$(cat "$layout_file" 2>/dev/null || echo '?')"
if [[ $nodes != 3 ]]; then
  echo "the running Kafka cluster is not the 3-node layout (layout: $nodes); stop it (scripts/services.sh down) and rerun" >&2
  exit 2
fi

export ORDERSTREAM_BOOTSTRAP="${ORDERSTREAM_BOOTSTRAP:-$(bash scripts/kafka.sh bootstrap)}"
export ORDERSTREAM_REGISTRY_URL="${ORDERSTREAM_REGISTRY_URL:-$(bash scripts/registry.sh url)}"
export ORDERSTREAM_NODES=3

# One seed for every random choice of the run (kill points, handler latencies, which member
# leaves): recorded in RELIABILITY.md; RELIABILITY_SEED=N replays a run's choices.
RELIABILITY_SEED="${RELIABILITY_SEED:-$(python3 -c 'import secrets; print(secrets.randbits(63))')}"
export RELIABILITY_SEED
log "seed $RELIABILITY_SEED (replay with RELIABILITY_SEED=$RELIABILITY_SEED scripts/reliability.sh)"
mkdir -p "$RESULTS_DIR"
rm -f "$RESULTS"
log "reliability suite against $ORDERSTREAM_BOOTSTRAP (registry $ORDERSTREAM_REGISTRY_URL)"
t0=$(date +%s)
set +e
cargo test --workspace --locked --test reliability -- --ignored --test-threads=1 --nocapture "$@" 2>&1 | tee "$RUN_LOG"
rc=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - t0))
log "suite finished in ${elapsed}s (exit $rc)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD 2>/dev/null || commit="$commit+uncommitted changes"
python3 -c 'import json, sys; json.dump({"rc": int(sys.argv[1]), "elapsed_s": int(sys.argv[2]), "commit": sys.argv[3], "command": sys.argv[4], "seed": sys.argv[6]}, open(sys.argv[5], "w"))' \
  "$rc" "$elapsed" "$commit" "RELIABILITY_SEED=$RELIABILITY_SEED scripts/reliability.sh${*:+ $*}" "$RUN_INFO" "$RELIABILITY_SEED"
fi

if [[ $write_table == 1 ]]; then
  python3 - "$RESULTS" "$OUT" "$RUN_INFO" <<'PY'
import json, sys, datetime, platform, os
results, out, run_info = sys.argv[1:4]
run = json.load(open(run_info))
elapsed, rc = run["elapsed_s"], str(run["rc"])
rows = []
if os.path.exists(results):
    with open(results) as f:
        rows = [json.loads(l) for l in f if l.strip()]
def number(r):
    head = r["scenario"].split()[0]
    return (int(head), r["scenario"]) if head.isdigit() else (10**6, r["scenario"])
rows.sort(key=number)
def cell(v):
    return "–" if v is None else str(v)
lines = [
    "# Reliability figures",
    "",
    f"Run: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} on {os.cpu_count()} cores "
    f"({platform.system()} {platform.machine()}); `{run['command']}` at commit {run['commit']} (seed {run.get('seed', 'not recorded')}); suite wall time {elapsed} s; "
    + ("all scenarios passed." if rc == "0" else f"**the suite failed (exit {rc})**: see target/reliability/run.log."),
    "",
    *[f"- **{r['scenario']} failed its checks**: `failures` = {r['extra']['failures']} (see its figures below)."
      for r in rows if r.get("extra", {}).get("failures")],
    "",
    "Cluster: Apache Kafka 4.1.1, 3 KRaft nodes (combined broker + controller) on one host, "
    "replication factor 3, `min.insync.replicas=2`, `unclean.leader.election.enable=false`; "
    f"Apicurio Registry 3.3.3 ({os.environ.get('RELIABILITY_REGISTRY_STORAGE', os.environ.get('REGISTRY_STORAGE', 'file'))} storage). Producer: idempotent, acks=all, lz4, murmur2 keyed. "
    "Consumer: cooperative-sticky, frontier commits.",
    "",
    "Regenerate with `scripts/reliability.sh`. Definitions (tests/reliability/checker.rs): "
    "**lost** = acked but never consumed; **misplaced** = the acked (partition, offset) holds another event; "
    "**dup raw** = consumed records minus distinct event ids (redeliveries); **dup after dedup** = effects "
    "applied twice, counted from the product's durable store (– where a scenario has none: its handler is "
    "the test's recorder, whose own dedup would make the figure 0 by construction; effects exactly once "
    "in PostgreSQL under 20 member SIGKILLs are proven by crates/cli/tests/store_cli.rs); **reorder** = per key, a sequence going backwards in first-consumed order of its partition; "
    "**rewinds** = per partition, consumed offset going backwards (redeliveries after a restart or rebalance: reported, expected after faults); "
    "**gaps** = per key, sequences missing between the lowest and highest consumed one; **unexpl.** = gaps whose send the producer never reported failed (must be 0); "
    "**phantoms** = consumed events never sent (must be 0); "
    "**poss. pers.** = sends reported possibly persisted (timed out / in doubt); **recover** = per "
    "scenario, see its `recover` note.",
    "",
    "| scenario | acked | consumed (distinct) | lost | misplaced | dup raw | dup after dedup | reorder | rewinds | gaps | unexpl. | phantoms | poss. pers. | recover (ms) | time (s) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for r in rows:
    lines.append("| " + " | ".join(cell(r.get(k)) for k in [
        "scenario", "acked", "consumed_distinct", "lost", "misplaced", "dup_raw",
        "dup_after_dedup", "reorderings", "rewinds", "sequence_gaps", "unexplained_gaps", "phantoms",
        "possibly_persisted", "recover_ms", "elapsed_s"]) + " |")
lines += ["", "## Scenario figures", ""]
for r in rows:
    lines.append(f"### {r['scenario']}")
    lines.append("")
    for k, v in r.get("extra", {}).items():
        if isinstance(v, dict):
            v = json.dumps(v, sort_keys=True)
        lines.append(f"- `{k}`: {v}")
    lines.append("")
if not rows:
    lines.append("No scenario reported figures.")
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"wrote {out} ({len(rows)} scenarios)")
PY
fi
exit "$rc"
