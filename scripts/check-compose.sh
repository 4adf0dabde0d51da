#!/usr/bin/env bash
# Validates docker-compose.yml without Docker: against the Compose Specification's JSON schema
# (schema/compose-spec.json of the compose-go module, the schema `docker compose` itself applies),
# then a few consistency checks the schema cannot express:
#   - every named volume a service mounts is declared in the top-level `volumes:`
#   - every healthcheck says its `test` (or is `disable: true`), and its times are durations
#   - every published port binds to 127.0.0.1, as the scripts bind to loopback only
#   - each Kafka service's KAFKA_NODE_ID is unique and is a voter in
#     KAFKA_CONTROLLER_QUORUM_VOTERS, and every voter is one of the services
# YAML anchors and merge keys (`<<: *kafka-env`) are resolved first, as Compose does, and a key
# repeated in one mapping is refused, as Compose refuses it (a plain YAML load keeps the last).
#
#   scripts/check-compose.sh                 # the repo's docker-compose.yml
#   scripts/check-compose.sh path/to/file    # another compose file
#
# The first run downloads the module zip from the Go module proxy (the schema file is kept, its
# sha256 checked) and makes a venv with pinned jsonschema and PyYAML, both under the git-ignored
# cache; later runs need no network. Environment: PYTHON (python3: the interpreter the venv is
# made from, 3.10 or newer), GOPROXY (its first URL is used; default the public proxy),
# ORDERSTREAM_CACHE_DIR.
set -euo pipefail

LOG_TAG=compose
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned: a newer schema may accept or refuse more. Bump the three together.
COMPOSE_GO_VERSION=v2.17.0
COMPOSE_SPEC_SHA256=49eb9a1e1de41315949f302f8e6221bb42acd6038977f7c0974e38596ec4cdf6
readonly COMPOSE_GO_MODULE=github.com/compose-spec/compose-go/v2
JSONSCHEMA_VERSION=4.26.0
PYYAML_VERSION=6.0.3

readonly CHECK_CACHE="$CACHE_DIR/compose-check"
readonly SCHEMA="$CHECK_CACHE/compose-go-$COMPOSE_GO_VERSION/compose-spec.json"
readonly VENV="$CHECK_CACHE/venv-jsonschema-$JSONSCHEMA_VERSION-pyyaml-$PYYAML_VERSION"
readonly MARKER="$VENV/.installed"
readonly INSTALL_LOG="$CHECK_CACHE/install.log"

case "${1:-}" in
  -h | --help)
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
(($# <= 1)) || die "expected at most one argument, the compose file (see --help)"
FILE="${1:-$ROOT_DIR/docker-compose.yml}"
[[ -f "$FILE" ]] || die "no such file: $FILE"

# The proxy the go command would ask first; `direct` and `off` have no URL to offer.
proxy_url() {
  local first="${GOPROXY:-}"
  first="${first%%[,|]*}"
  if [[ "$first" == http://* || "$first" == https://* ]]; then
    printf '%s\n' "${first%/}"
  else
    printf '%s\n' https://proxy.golang.org
  fi
}

sha256_of() {
  sha256sum "$1" | cut -d' ' -f1
}

# Only schema/compose-spec.json is taken from the module zip; the zip itself is not kept.
fetch_schema() {
  local url scratch
  require_cmd curl "It downloads the schema once (Debian/Ubuntu: apt-get install curl)."
  command -v "${PYTHON:-python3}" >/dev/null 2>&1 ||
    die "'${PYTHON:-python3}' is not on PATH (set PYTHON to a Python 3.10+ interpreter)"
  url="$(proxy_url)/$COMPOSE_GO_MODULE/@v/$COMPOSE_GO_VERSION.zip"
  log "fetching schema/compose-spec.json of $COMPOSE_GO_MODULE@$COMPOSE_GO_VERSION (once) from $url"
  scratch="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now: the local is gone when the trap runs
  trap "rm -rf '$scratch'" EXIT
  curl -fsSL --retry 3 --max-time 120 -o "$scratch/module.zip" "$url" ||
    die "could not download $url"
  "${PYTHON:-python3}" - "$scratch/module.zip" "$COMPOSE_GO_MODULE@$COMPOSE_GO_VERSION/schema/compose-spec.json" \
    "$scratch/compose-spec.json" <<'PY' || die "no schema/compose-spec.json in $url"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], "wb") as out:
    out.write(z.read(sys.argv[2]))
PY
  local got
  got="$(sha256_of "$scratch/compose-spec.json")"
  [[ "$got" == "$COMPOSE_SPEC_SHA256" ]] ||
    die "compose-spec.json of $COMPOSE_GO_VERSION has sha256 $got, expected $COMPOSE_SPEC_SHA256"
  mkdir -p "$(dirname "$SCHEMA")"
  mv "$scratch/compose-spec.json" "$SCHEMA"
  rm -rf "$scratch"
  trap - EXIT
}

venv_ready() {
  [[ -f "$MARKER" ]] && "$VENV/bin/python" -c 'import jsonschema, yaml' 2>/dev/null
}

make_venv() {
  local base="${PYTHON:-python3}"
  command -v "$base" >/dev/null 2>&1 || die "'$base' is not on PATH (set PYTHON to a Python 3.10+ interpreter)"
  log "installing jsonschema==$JSONSCHEMA_VERSION and PyYAML==$PYYAML_VERSION into ${VENV#"$ROOT_DIR"/} (once; log: ${INSTALL_LOG#"$ROOT_DIR"/})"
  rm -rf "$VENV"
  mkdir -p "$CHECK_CACHE"
  "$base" -m venv "$VENV" >"$INSTALL_LOG" 2>&1 ||
    die "'$base -m venv' failed: $(tail -n 1 "$INSTALL_LOG") (Debian/Ubuntu: apt-get install python3-venv)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "jsonschema==$JSONSCHEMA_VERSION" "PyYAML==$PYYAML_VERSION" >>"$INSTALL_LOG" 2>&1 ||
    die "pip install jsonschema==$JSONSCHEMA_VERSION PyYAML==$PYYAML_VERSION failed: $(grep -m 1 -i error "$INSTALL_LOG" || tail -n 1 "$INSTALL_LOG")"
  touch "$MARKER"
}

if [[ ! -s "$SCHEMA" ]] || ! venv_ready; then
  with_lock "$CHECK_CACHE/.lock"
  [[ -s "$SCHEMA" ]] || fetch_schema
  venv_ready || make_venv
fi

display="${FILE#"$ROOT_DIR"/}"
summary="$("$VENV/bin/python" - "$FILE" "$display" "$SCHEMA" <<'PY'
import json
import re
import sys

import jsonschema
import yaml

path, display, schema_path = sys.argv[1:4]
problems = []


def where(parts):
    return ".".join(str(p) for p in parts) or "(top level)"


def problem(parts, message):
    problems.append(f"{display}: {where(parts)}: {message}")


MERGE_TAG = "tag:yaml.org,2002:merge"


# Compose refuses a key repeated in one mapping; yaml.safe_load would silently keep the last.
# Keys brought in by `<<` may be overridden: that is what merging is for.
def find_duplicate_keys(node, parts, seen):
    if id(node) in seen:
        return  # an alias: its anchor's node was checked where it was defined
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            if key in first_line:
                problem(parts + [key], f"repeated in one mapping (lines {first_line[key]} and "
                        f"{key_node.start_mark.line + 1})")
            first_line.setdefault(key, key_node.start_mark.line + 1)
            find_duplicate_keys(value_node, parts + [key], seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            find_duplicate_keys(item, parts + [i], seen)


try:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    find_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), [], set())
    # safe_load resolves anchors, aliases and `<<` merge keys, as Compose does.
    doc = yaml.safe_load(text)
except yaml.YAMLError as e:
    print(f"{display}: not valid YAML: {e}", file=sys.stderr)
    sys.exit(1)
if not isinstance(doc, dict):
    print(f"{display}: (top level): must be a mapping", file=sys.stderr)
    sys.exit(1)


# Merge keys must be gone before validation: the schema would judge `<<` as a key.
def find_merge_keys(node, parts):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "<<":
                problem(parts, "merge key `<<` left unresolved")
            find_merge_keys(v, parts + [k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            find_merge_keys(v, parts + [i])


find_merge_keys(doc, [])

# --- The Compose Specification schema, as compose-go applies it (draft 2020-12).
with open(schema_path, encoding="utf-8") as f:
    schema = json.load(f)
validator = jsonschema.Draft202012Validator(schema)
for error in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
    best = jsonschema.exceptions.best_match([error])
    problem(list(best.absolute_path), best.message)

# --- Consistency checks the schema cannot express.
# A document the schema refused may not have the shapes assumed here: judge what has them.
services = doc.get("services") if isinstance(doc.get("services"), dict) else {}
declared_volumes = set(doc["volumes"]) if isinstance(doc.get("volumes"), dict) else set()


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(str(item).split("=", 1) if "=" in str(item) else (item, None) for item in env)
    return env if isinstance(env, dict) else {}


def named_volume(mount):
    """The named volume a service mount uses, or None for bind mounts, tmpfs and anonymous ones."""
    if isinstance(mount, dict):
        return mount.get("source") if mount.get("type", "volume") == "volume" else None
    if not isinstance(mount, str) or ":" not in mount:
        return None  # anonymous volume: a container path only
    source = mount.split(":", 1)[0]
    if source.startswith(("/", ".", "~", "$")):
        return None  # bind mount (or a variable Compose would interpolate)
    return source


LOOPBACK = "127.0.0.1"
GO_DURATION = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")


def port_binds(port):
    """(host_ip, published host port) of a port entry; host_ip None means every interface."""
    if isinstance(port, dict):
        published = port.get("published")
        return port.get("host_ip"), (str(published) if published is not None else "(a random host port)")
    spec = str(port).split("/", 1)[0]
    if spec.startswith("["):  # [ipv6]:host:container
        host_ip, _, rest = spec[1:].partition("]:")
        return host_ip, rest.split(":", 1)[0]
    parts = spec.split(":")
    if len(parts) == 1:
        return None, "(a random host port)"
    if len(parts) == 2:
        return None, parts[0]
    return ":".join(parts[:-2]), parts[-2]


kafka = {}  # service name -> (node id, service)
for name, service in services.items():
    if not isinstance(service, dict):
        continue
    for i, mount in enumerate(service.get("volumes") or []):
        volume = named_volume(mount)
        if volume is not None and volume not in declared_volumes:
            problem(["services", name, "volumes", i],
                    f"named volume {volume!r} is not declared in the top-level volumes:")
    health = service.get("healthcheck")
    if isinstance(health, dict) and not health.get("disable") and not health.get("test"):
        problem(["services", name, "healthcheck"], "has no test")
    # The schema only asks for strings here; Compose parses them as Go durations later.
    for key in ("interval", "timeout", "start_period", "start_interval"):
        value = health.get(key) if isinstance(health, dict) else None
        if isinstance(value, str) and not GO_DURATION.match(value):
            problem(["services", name, "healthcheck", key], f"{value!r} is not a duration such as 5s or 1m30s")
    for i, port in enumerate(service.get("ports") or []):
        host_ip, published = port_binds(port)
        if host_ip != LOOPBACK:
            problem(["services", name, "ports", i],
                    f"{port!r} publishes {published} on {host_ip or 'every interface'}, "
                    f"not {LOOPBACK} (the scripts bind to loopback only)")
    env = env_of(service)
    if "KAFKA_NODE_ID" in env:
        kafka[name] = (str(env["KAFKA_NODE_ID"]), service)

owners = {}
node_ids = {node_id for node_id, _ in kafka.values()}
voter_lists_checked = set()
for name, (node_id, service) in kafka.items():
    where_id = ["services", name, "environment", "KAFKA_NODE_ID"]
    if node_id in owners:
        problem(where_id, f"node id {node_id} is already service {owners[node_id]}'s")
    owners.setdefault(node_id, name)
    voters_raw = str(env_of(service).get("KAFKA_CONTROLLER_QUORUM_VOTERS") or "")
    voters = [v.strip().partition("@")[0] for v in voters_raw.split(",") if v.strip()]
    where_voters = ["services", name, "environment", "KAFKA_CONTROLLER_QUORUM_VOTERS"]
    if node_id not in voters:
        problem(where_voters, f"node id {node_id} is not among the voters {voters_raw!r}")
    # Shared through an anchor, the same list would be reported once per node.
    if voters_raw not in voter_lists_checked:
        voter_lists_checked.add(voters_raw)
        for voter_id in voters:
            if voter_id not in node_ids:
                problem(where_voters, f"voter {voter_id} is no Kafka service's KAFKA_NODE_ID")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"{len(services)} services ({len(kafka)} Kafka nodes), {len(declared_volumes)} volumes")
PY
)" || die "$display does not conform (problems above)"

log "$display is valid ($summary): Compose Specification schema of compose-go $COMPOSE_GO_VERSION (draft 2020-12) and the consistency checks"
