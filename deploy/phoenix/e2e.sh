#!/usr/bin/env bash
# End-to-end check: sidetrace -> OTLP -> Arize Phoenix, spans queryable by
# enduser.id and vcs.change.id. See README.md beside this file.
#
# Loopback only: Phoenix, the mock upstream and sidetrace all listen on
# 127.0.0.1 on free ports; every process started here is stopped on exit.
#
# Knobs (environment):
#   E2E_VENV              venv for Phoenix        [<repo>/target/phoenix-env]
#   E2E_PHOENIX_VERSION   arize-phoenix version   [20.26.1]
#   E2E_CONSTRAINTS       pip constraints file, empty = none [deploy/phoenix/constraints.txt]
#   E2E_PYTHON            python (>=3.11,<3.15) that creates the venv [python3]
#   E2E_SIDETRACE_BIN     sidetrace binary        [<repo>/target/debug/sidetrace; built if missing]
#   E2E_BUILD=1           run `cargo build` even if the binary exists
#   E2E_PROTOCOLS         OTLP protocols to test  ["http/protobuf grpc"]
#   E2E_TIMEOUT           seconds to wait for spans in Phoenix [60]
#   E2E_KEEP=1            keep the temp dir (logs, Phoenix db) even on success
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

VENV=${E2E_VENV:-$REPO/target/phoenix-env}
PHOENIX_PIN=${E2E_PHOENIX_VERSION:-20.26.1}
CONSTRAINTS=${E2E_CONSTRAINTS-$HERE/constraints.txt}
BASE_PYTHON=${E2E_PYTHON:-python3}
SIDETRACE_BIN=${E2E_SIDETRACE_BIN:-$REPO/target/debug/sidetrace}
FORCE_BUILD=${E2E_BUILD:-0}
PROTOCOLS=${E2E_PROTOCOLS:-"http/protobuf grpc"}
SPAN_TIMEOUT=${E2E_TIMEOUT:-60}
KEEP=${E2E_KEEP:-0}

SPONSOR='alice@example.com'
CHANGE_ID='!1234'
OTHER_USER='mallory@example.com'

# Nothing from the caller's environment may redirect Phoenix, sidetrace or
# their OTLP settings (a stray OTEL_EXPORTER_OTLP_ENDPOINT, PHOENIX_SQL_DATABASE_URL, ...).
while IFS= read -r var; do
  case $var in PHOENIX_* | SIDETRACE_* | OTEL_*) unset "$var" ;; esac
done < <(compgen -e)

T0=$SECONDS
log() { printf '[e2e %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { log "FAIL: $*"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sidetrace-phoenix-e2e.XXXXXX")
PIDS=()

stop_pid() { # stop_pid PID [SIGNAL] [SECONDS]: signal one process we started, wait, then KILL
  local pid=$1 sig=${2:-TERM} secs=${3:-15} i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid ignored SIG$sig for ${secs}s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do stop_pid "$pid" TERM 15; done
  if [[ $rc -ne 0 ]]; then
    for f in "$WORK"/phoenix.log "$WORK"/mock.out "$WORK"/*/sidetrace.log; do
      [[ -s $f ]] || continue
      echo "----- last lines of $f"
      tail -n 25 "$f"
    done
    echo "e2e FAILED (exit $rc); logs kept in $WORK"
  elif [[ $KEEP == 1 ]]; then
    echo "logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- Phoenix venv
"$BASE_PYTHON" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 15)))' ||
  die "$BASE_PYTHON is $("$BASE_PYTHON" -V 2>&1); arize-phoenix $PHOENIX_PIN needs Python >=3.11,<3.15 (set E2E_PYTHON)"

PY=$VENV/bin/python
have_pin() {
  [[ -x $PY ]] && "$PY" - "$PHOENIX_PIN" <<'EOF' 2>/dev/null
import sys, importlib.metadata as m
sys.exit(m.version("arize-phoenix") != sys.argv[1])
EOF
}
INSTALL_NOTE="already installed"
if ! have_pin; then
  log "installing arize-phoenix==$PHOENIX_PIN into $VENV (about 1 minute, ~850 MB)"
  t=$SECONDS
  [[ -x $PY ]] || "$BASE_PYTHON" -m venv "$VENV"
  pip_args=(install --quiet --disable-pip-version-check "arize-phoenix==$PHOENIX_PIN")
  [[ -n $CONSTRAINTS ]] && pip_args+=(-c "$CONSTRAINTS")
  "$PY" -m pip "${pip_args[@]}" || die "pip install arize-phoenix==$PHOENIX_PIN failed"
  have_pin || die "arize-phoenix $PHOENIX_PIN not importable from $VENV after install"
  INSTALL_NOTE="installed in $((SECONDS - t))s"
fi
PHOENIX_VER=$("$PY" -c 'import importlib.metadata as m; print(m.version("arize-phoenix"))')
VENV_SIZE=$(du -sh "$VENV" 2>/dev/null | cut -f1)
log "Phoenix $PHOENIX_VER in $VENV ($VENV_SIZE, $INSTALL_NOTE)"

# ---------------------------------------------------------------- sidetrace
if [[ $FORCE_BUILD == 1 || ! -x $SIDETRACE_BIN ]]; then
  [[ $SIDETRACE_BIN == "$REPO/target/debug/sidetrace" ]] ||
    die "E2E_SIDETRACE_BIN=$SIDETRACE_BIN is not an executable"
  log "cargo build (target/debug/sidetrace)"
  (cd "$REPO" && cargo build --quiet --bin sidetrace) || die "cargo build failed"
fi
log "sidetrace: $("$SIDETRACE_BIN" --version 2>/dev/null || echo "$SIDETRACE_BIN")"

# ---------------------------------------------------------------- helpers
free_ports() { # free_ports N: N distinct free TCP ports on 127.0.0.1
  # Taken below the kernel's ephemeral range when possible: ports handed out
  # for bind(:0) and outgoing connections (other test suites on this machine)
  # come from that range, so a port picked there can be gone by the time
  # Phoenix, ~10 s of imports later, binds it.
  "$PY" - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 0
pool = list(range(10000, low)) if low > 11000 else []
random.shuffle(pool)
ports = []
for port in pool:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    ports.append(port)
    if len(ports) == n:
        break
socks = []
while len(ports) < n:  # no room below the ephemeral range: let the OS pick
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    if s.getsockname()[1] not in ports:
        ports.append(s.getsockname()[1])
for s in socks:
    s.close()
print(" ".join(map(str, ports)))
EOF
}

json_field() { # json_field FILE NEEDLE KEY: KEY of the first JSON log line whose message is NEEDLE
  "$PY" - "$@" <<'EOF'
import json, sys
path, needle, key = sys.argv[1:4]
for line in open(path, errors="replace"):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    if rec.get("message") == needle or rec.get("fields", {}).get("message") == needle:
        print(rec.get(key) or rec.get("fields", {}).get(key, ""))
        break
EOF
}

listeners() { # listeners PID: local addresses of PID's listening TCP sockets
  ss -Hltnp 2>/dev/null | grep "pid=$1," | awk '{print $4}' || true
}

check_loopback_only() { # check_loopback_only PID NAME [PORT...]: PID listens on loopback only, on PORTs
  command -v ss >/dev/null || { log "ss not found; not checking $2's listening addresses"; return 0; }
  local pid=$1 name=$2 addrs port
  shift 2
  addrs=$(listeners "$pid")
  [[ -n $addrs ]] || die "$name (pid $pid) has no listening TCP socket"
  # gRPC's dual-stack socket shows 127.0.0.1 as [::ffff:127.0.0.1]
  if grep -v -E '^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]|\[::1\]):' <<<"$addrs" >/dev/null; then
    echo "$addrs"
    die "$name listens on a non-loopback address"
  fi
  for port in "$@"; do
    grep -q -E ":$port\$" <<<"$addrs" || die "$name (pid $pid) is not the one listening on port $port"
  done
  log "$name listens only on: $(tr '\n' ' ' <<<"$addrs")"
}

# ---------------------------------------------------------------- Phoenix
start_phoenix() { # start_phoenix ATTEMPT: 0 when healthy, 1 when its ports were taken
  local attempt=$1 t
  read -r PHX_PORT PHX_GRPC_PORT < <(free_ports 2)
  [[ -n ${PHX_GRPC_PORT:-} ]] || die "could not pick free ports for Phoenix"
  rm -rf "$WORK/phoenix"
  mkdir -p "$WORK/phoenix"
  log "starting Phoenix: http 127.0.0.1:$PHX_PORT, grpc 127.0.0.1:$PHX_GRPC_PORT, db $WORK/phoenix"
  env \
    PHOENIX_HOST=127.0.0.1 \
    PHOENIX_PORT="$PHX_PORT" \
    PHOENIX_GRPC_PORT="$PHX_GRPC_PORT" \
    PHOENIX_WORKING_DIR="$WORK/phoenix" \
    PHOENIX_TELEMETRY_ENABLED=false \
    PHOENIX_ALLOW_EXTERNAL_RESOURCES=false \
    PHOENIX_DISABLE_AGENT_ASSISTANT=true \
    PHOENIX_AGENTS_DISABLE_BASH=true \
    "$PY" "$HERE/run_phoenix.py" >"$WORK/phoenix.log" 2>&1 &
  PHX_PID=$!
  PIDS+=("$PHX_PID")
  PHX_URL="http://127.0.0.1:$PHX_PORT"
  t=$SECONDS
  # Healthy = our Phoenix process answers /healthz (not some other server that
  # happens to sit on the port).
  until [[ $(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$PHX_URL/healthz" 2>/dev/null) == 200 ]] &&
    { ! command -v ss >/dev/null || listeners "$PHX_PID" | grep -q -E ":$PHX_PORT\$"; }; do
    if ! kill -0 "$PHX_PID" 2>/dev/null; then
      wait "$PHX_PID" 2>/dev/null || true
      if grep -q -i 'address already in use' "$WORK/phoenix.log" && ((attempt < 3)); then
        log "Phoenix could not bind its ports (taken meanwhile); retrying on others"
        mv "$WORK/phoenix.log" "$WORK/phoenix.attempt$attempt.log"
        return 1
      fi
      die "Phoenix exited during startup"
    fi
    ((SECONDS - t < 180)) || die "Phoenix not healthy after 180s"
    sleep 0.5
  done
  log "Phoenix healthy after $((SECONDS - t))s"
}
for attempt in 1 2 3; do start_phoenix "$attempt" && break; done
check_loopback_only "$PHX_PID" Phoenix "$PHX_PORT" "$PHX_GRPC_PORT"

# ---------------------------------------------------------------- mock upstream
"$PY" "$HERE/mock_upstream.py" --port-file "$WORK/mock.port" --log "$WORK/mock.jsonl" \
  >"$WORK/mock.out" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
for ((i = 0; i < 100; i++)); do [[ -s $WORK/mock.port ]] && break; sleep 0.1; done
[[ -s $WORK/mock.port ]] || die "mock upstream did not start"
MOCK_PORT=$(<"$WORK/mock.port")
log "mock Anthropic upstream on 127.0.0.1:$MOCK_PORT"

# ---------------------------------------------------------------- one run per protocol
declare -a SUMMARY=()
run_protocol() { # run_protocol PROTOCOL
  local proto=$1 tag endpoint project dir st_pid listen execution rc n_before n_after
  case $proto in
    http/protobuf) tag=http endpoint=$PHX_URL ;;
    grpc) tag=grpc endpoint="http://127.0.0.1:$PHX_GRPC_PORT" ;;
    *) die "unknown protocol $proto (http/protobuf or grpc)" ;;
  esac
  project="sidetrace-e2e-$tag"
  dir="$WORK/$tag"
  mkdir -p "$dir"
  log "[$tag] starting sidetrace -> $endpoint ($proto), Phoenix project $project"
  # Phoenix files spans under the project named by the resource attribute
  # openinference.project.name (else "default"); sidetrace takes extra resource
  # attributes from OTEL_RESOURCE_ATTRIBUTES.
  OTEL_RESOURCE_ATTRIBUTES="openinference.project.name=$project" \
    "$SIDETRACE_BIN" --log-format json proxy \
    --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
    --journal "$dir/journal.db" \
    --route "/anthropic=http://127.0.0.1:$MOCK_PORT" \
    --otlp-endpoint "$endpoint" --otlp-protocol "$proto" \
    --export-content delta \
    --sponsor "$SPONSOR" --change-id "$CHANGE_ID" \
    >"$dir/sidetrace.log" 2>&1 &
  st_pid=$!
  PIDS+=("$st_pid")
  for ((i = 0; i < 300; i++)); do
    grep -q 'sidetrace proxy listening' "$dir/sidetrace.log" 2>/dev/null && break
    kill -0 "$st_pid" 2>/dev/null || die "[$tag] sidetrace exited during startup"
    sleep 0.1
  done
  listen=$(json_field "$dir/sidetrace.log" "sidetrace proxy listening" listen)
  execution=$(json_field "$dir/sidetrace.log" "sidetrace proxy listening" execution)
  [[ -n $listen ]] || die "[$tag] sidetrace did not log its listen address"
  check_loopback_only "$st_pid" "[$tag] sidetrace" "${listen##*:}"
  log "[$tag] sidetrace on $listen, execution $execution"

  n_before=$(grep -c '"/v1/messages"' "$WORK/mock.jsonl" 2>/dev/null || true)
  "$PY" "$HERE/drive_turns.py" --url "http://$listen/anthropic/v1/messages" |
    sed "s/^/[e2e]   [$tag] /" || die "[$tag] the two-turn exchange failed"
  n_after=$(grep -c '"/v1/messages"' "$WORK/mock.jsonl" 2>/dev/null || true)
  ((${n_after:-0} - ${n_before:-0} == 2)) || die "[$tag] upstream saw $((${n_after:-0} - ${n_before:-0})) requests, want 2"

  log "[$tag] SIGTERM sidetrace (ends the execution: the invoke_agent root span is exported now)"
  kill -TERM "$st_pid"
  rc=0
  for ((i = 0; i < 300; i++)); do kill -0 "$st_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$st_pid" 2>/dev/null && die "[$tag] sidetrace still running 30s after SIGTERM"
  wait "$st_pid" || rc=$?
  ((rc == 0)) || die "[$tag] sidetrace exited with status $rc after SIGTERM"
  grep -q 'journal closed' "$dir/sidetrace.log" || die "[$tag] sidetrace did not close its journal"
  if grep -E '"level":"(WARN|ERROR)"' "$dir/sidetrace.log" | grep -i -E 'export|otlp' >/dev/null; then
    grep -E '"level":"(WARN|ERROR)"' "$dir/sidetrace.log" | grep -i -E 'export|otlp' | tail -n 5
    die "[$tag] sidetrace reported OTLP export problems"
  fi

  log "[$tag] querying Phoenix (up to ${SPAN_TIMEOUT}s)"
  if "$PY" "$HERE/query_spans.py" --base-url "$PHX_URL" --project "$project" \
    --user "$SPONSOR" --change "$CHANGE_ID" --other-user "$OTHER_USER" \
    --execution-id "$execution" --timeout "$SPAN_TIMEOUT" 2>&1 | sed "s/^/[e2e]   [$tag] /"; then
    SUMMARY+=("PASS  $proto -> project $project: 1 invoke_agent + 2 chat + 1 execute_tool found by enduser.id and vcs.change.id; 0 for $OTHER_USER")
  else
    die "[$tag] span assertions failed"
  fi
}

for proto in $PROTOCOLS; do run_protocol "$proto"; done

# ---------------------------------------------------------------- summary
echo
echo "== sidetrace -> Phoenix e2e: PASS ($((SECONDS - T0))s total)"
echo "   Phoenix:   arize-phoenix $PHOENIX_VER ($VENV, $VENV_SIZE, $INSTALL_NOTE)"
echo "   sidetrace: $SIDETRACE_BIN"
for line in "${SUMMARY[@]}"; do echo "   $line"; done
