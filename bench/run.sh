#!/usr/bin/env bash
# sidetrace's side-by-side benchmark: the one command.
#
#   bench/run.sh            full run (about 10 minutes of measuring on 2 cores, after the one-time installs)
#   bench/run.sh --quick    short smoke run
#   bench/run.sh --profile  run sidetrace under perf instead (batched, then write-ahead) and write
#                           bench/results/profile-*.txt and flamegraph-*.svg
#   bench/run.sh --help     the other flags (--only, --skip-litellm, --skip-nginx, --no-pin, ...)
#
# It installs what it measures with, pinned: oha (cargo install, into bench/.tools), LiteLLM's proxy
# (PyPI, into the venv bench/.venv), nginx (Debian's package, via apt-get) and, for --profile, perf
# (Debian's linux-perf) and inferno (cargo install). Then it builds sidetrace, the mock upstream and the
# measuring client in release mode and runs bench/bench.py, which writes bench/results/latest.md.
# Everything it starts listens on 127.0.0.1 only and is killed when it exits, however it exits.
set -euo pipefail

OHA_VERSION=1.16.0
INFERNO_VERSION=0.12.8
LITELLM_VERSION=1.106.12

cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=$ROOT/bench/.tools
VENV=$ROOT/bench/.venv

profile=0
for arg in "$@"; do
    case "$arg" in
        --profile) profile=1 ;;
        -h|--help) exec python3 "$ROOT/bench/bench.py" --help ;;
    esac
done

say() { printf '[bench] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        say "need root for: $*"; return 1; fi
}

apt_install() {
    # Debian's packages; installing does not start a system nginx where no init system runs.
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- the load generator
if ! "$TOOLS/bin/oha" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
    say "installing oha $OHA_VERSION into bench/.tools (once)"
    cargo install oha --version "$OHA_VERSION" --locked --root "$TOOLS"
fi

# --- nginx, the one-hop floor
if ! command -v nginx >/dev/null; then
    say "installing nginx (Debian package nginx-light)"
    apt_install nginx-light || say "nginx could not be installed: it will be skipped"
fi

# --- LiteLLM, the peer proxy
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$LITELLM_VERSION')" 2>/dev/null; then
    say "installing litellm[proxy]==$LITELLM_VERSION into bench/.venv (once)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION" \
        || say "LiteLLM could not be installed: it will be skipped"
fi

# --- profiling tools
if [ "$profile" = 1 ]; then
    command -v perf >/dev/null || apt_install linux-perf
    if ! cargo install --list --root "$TOOLS" 2>/dev/null | grep -q "^inferno v$INFERNO_VERSION:"; then
        say "installing inferno $INFERNO_VERSION into bench/.tools (once)"
        cargo install inferno --version "$INFERNO_VERSION" --locked --root "$TOOLS" \
            || say "inferno could not be installed: no flamegraph, the perf report is still written"
    fi
fi

# --- build
say "building sidetrace, bench-mock and bench-client (release)"
cargo build --release --locked --bin sidetrace --example bench-mock --example bench-client

# --- measure (bench.py kills everything it started on exit; this trap covers the rest)
child=
cleanup() { [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null; true; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM HUP
python3 "$ROOT/bench/bench.py" "$@" &
child=$!
status=0
wait "$child" || status=$?
child=
exit "$status"
