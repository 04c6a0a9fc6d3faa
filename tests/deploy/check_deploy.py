#!/usr/bin/env python3
"""Deployment checks for the Helm chart (helm/sidetrace) and the plain
Kubernetes manifests (deploy/kubernetes), all offline:

- `helm lint --strict` with the default values and with every example values
  file (helm/sidetrace/examples/*.yaml);
- `helm template` of the same, plus the example agent as a Job and as a
  Deployment, and a parent chart that injects the sidecar into its own pod
  with the chart's named templates;
- every rendered object, and every plain manifest, validated against the
  Kubernetes API schemas (kubernetes-validate, strict: unknown fields are
  errors) for the oldest and newest Kubernetes versions the chart supports;
- what the schemas cannot see: the sidecar is a native sidecar with its
  probes, ports, env wiring and Secret mounts; the agent's proxy and CA env;
  every mount names a volume; the NetworkPolicy selects the recorded pods;
- the chart-generated CA and signing key are accepted by sidetrace itself;
- every sidetrace.toml the chart renders (and the plain ConfigMap's) passes
  `sidetrace check-config`;
- values.schema.json rejects bad values (a wrong type, an unknown durability
  mode, an unknown key, ...) with a message naming the value.

Usage: check_deploy.py --helm PATH --sidetrace PATH. Run by
scripts/test-deploy.sh, which installs the pinned tools. Exits 1 if any check
fails, after running them all.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "sidetrace"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))

# The oldest Kubernetes the chart supports (native sidecars are on by default
# from 1.29; kubeVersion in Chart.yaml) and the newest kubernetes-validate bundles.
K8S_VERSIONS = ["1.29.0", "1.35.0"]

# Values of ${VAR}s the rendered configs interpolate (helm/sidetrace/examples).
CONFIG_ENV = {"OTLP_TOKEN": "test-token"}

# CRDs kubernetes-validate has no schema for: the fields the chart sets, checked
# by a small schema of our own.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {"type": "object"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string"},
                                "scrapeTimeout": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


class Checker:
    def __init__(self, helm, sidetrace, work):
        self.helm = helm
        self.sidetrace = sidetrace
        self.work = Path(work)
        self.failures = []
        # Helm keeps its caches and config in the temp dir, not in $HOME.
        self.helm_env = dict(
            os.environ,
            HELM_CACHE_HOME=str(self.work / "helm-cache"),
            HELM_CONFIG_HOME=str(self.work / "helm-config"),
            HELM_DATA_HOME=str(self.work / "helm-data"),
        )
        # sidetrace sees only what the test gives it: no stray SIDETRACE_*,
        # OTEL_* or CI variables from the caller, nothing under $HOME.
        self.sidetrace_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SIDETRACE_", "OTEL_", "CI", "GITLAB_", "GITHUB_"))
        }
        self.sidetrace_env.update(CONFIG_ENV, XDG_DATA_HOME=str(self.work / "xdg"))

    # -- helpers ------------------------------------------------------------

    def run(self, name, fn, *args):
        try:
            fn(*args)
            print(f"ok    {name}")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            self.failures.append(f"{name}: {detail}")
            print(f"FAIL  {name}\n      {detail.strip()}")

    def helm_cmd(self, *args):
        return subprocess.run(
            [self.helm, *args], capture_output=True, text=True, env=self.helm_env, check=False
        )

    def render(self, *args, chart=CHART, kube_version=None):
        extra = ["--kube-version", kube_version] if kube_version else []
        p = self.helm_cmd("template", "rec", str(chart), "--namespace", "agents", *extra, *args)
        assert p.returncode == 0, f"helm template {' '.join(args)} failed:\n{p.stderr}"
        return [d for d in yaml.safe_load_all(p.stdout) if d]

    def validate(self, docs, where):
        assert docs, f"{where}: nothing to validate"
        for d in docs:
            what = f"{where}: {d.get('kind')}/{d.get('metadata', {}).get('name')}"
            crd = CRD_SCHEMAS.get((d.get("apiVersion"), d.get("kind")))
            if crd is not None:
                jsonschema.validate(d, crd)
                continue
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = "/".join(str(p) for p in e.path)
                    raise AssertionError(f"{what} is invalid for Kubernetes {version} at {path}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    raise AssertionError(f"{what}: {e.message}")

    def check_config(self, toml, where):
        path = self.work / "sidetrace.toml"
        path.write_text(toml)
        p = subprocess.run(
            [self.sidetrace, "check-config", "--config", str(path)],
            capture_output=True, text=True, env=self.sidetrace_env, check=False,
        )
        assert p.returncode == 0, f"{where}: sidetrace check-config rejects the config:\n{p.stderr}{p.stdout}\n--- config ---\n{toml}"
        assert "configuration is valid" in p.stdout, p.stdout

    # -- checks -------------------------------------------------------------

    def schema_is_valid(self):
        schema = json.loads((CHART / "values.schema.json").read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        assert schema.get("additionalProperties") is False, "the top level must reject unknown keys"

    def lint(self, values_file=None):
        args = ["lint", "--strict", str(CHART)] + (["-f", str(values_file)] if values_file else [])
        p = self.helm_cmd(*args)
        assert p.returncode == 0, f"helm {' '.join(args)}:\n{p.stdout}{p.stderr}"

    def chart_renders_valid_objects(self, values_args, where, expect_pod):
        for version in K8S_VERSIONS:
            docs = self.render(*values_args, kube_version=version)
            self.validate(docs, f"{where} (kube {version})")
        cm = one(docs, "ConfigMap")
        self.check_config(cm["data"]["sidetrace.toml"], where)
        pods = pod_specs(docs)
        assert bool(pods) == expect_pod, f"{where}: expected {'a' if expect_pod else 'no'} pod template, got {len(pods)}"
        for name, pod in pods:
            check_pod(pod, f"{where} {name}", docs, cm)
        np = [d for d in docs if d["kind"] == "NetworkPolicy"]
        for name, pod in pods:
            for policy in np:
                check_network_policy(policy, pod, f"{where} {name}")
        return docs

    def default_render(self):
        docs = self.chart_renders_valid_objects([], "default values", expect_pod=False)
        kinds = sorted(d["kind"] for d in docs)
        assert kinds == ["ConfigMap", "NetworkPolicy", "Secret", "Service"], kinds
        check_network_policy_shape(one(docs, "NetworkPolicy"))

    def agent_job_and_deployment(self):
        job = self.chart_renders_valid_objects(["--set", "agent.enabled=true"], "agent Job", expect_pod=True)
        assert one(job, "Job")["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        self.chart_renders_valid_objects(
            ["--set", "agent.enabled=true", "--set", "agent.kind=Deployment"], "agent Deployment", expect_pod=True
        )

    def example(self, values_file):
        values = yaml.safe_load(values_file.read_text()) or {}
        expect_pod = bool(values.get("agent", {}).get("enabled"))
        docs = self.chart_renders_valid_objects(["-f", str(values_file)], values_file.name, expect_pod)
        if values.get("serviceMonitor", {}).get("enabled"):
            assert any(d["kind"] == "ServiceMonitor" for d in docs), "no ServiceMonitor rendered"

    def generated_keys_are_accepted(self):
        secret = one(self.render(), "Secret")
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert sorted(data) == ["ca-cert.pem", "ca-key.pem", "signing-key.pem"], sorted(data)
        for k in ("ca-key.pem", "signing-key.pem"):
            assert data[k].startswith("-----BEGIN PRIVATE KEY-----"), f"{k} is not PKCS#8 PEM"
        keys = self.work / "keys"
        keys.mkdir()
        for name, pem in data.items():
            (keys / name).write_text(pem)
            (keys / name).chmod(0o600)
        # `ca init` loads an existing CA, checks it can issue a leaf a client
        # accepts, and never writes when both files are there.
        p = subprocess.run([self.sidetrace, "ca", "init", "--ca-dir", str(keys)],
                           capture_output=True, text=True, env=self.sidetrace_env, check=False)
        assert p.returncode == 0 and "already exists" in p.stdout, f"sidetrace rejects the generated CA:\n{p.stderr}{p.stdout}"
        p = subprocess.run([self.sidetrace, "journal", "export-key", "--journal", str(keys / "journal.db"),
                            "--signing-key", str(keys / "signing-key.pem")],
                           capture_output=True, text=True, env=self.sidetrace_env, check=False)
        assert p.returncode == 0 and "BEGIN PUBLIC KEY" in p.stdout, f"sidetrace rejects the generated signing key:\n{p.stderr}"
        # An existing Secret keeps it from being generated at all.
        kinds = [d["kind"] for d in self.render("--set", "keys.existingSecret=mine")]
        assert "Secret" not in kinds, kinds

    def schema_rejects(self, args, needles):
        p = self.helm_cmd("template", "rec", str(CHART), *args)
        assert p.returncode != 0, f"helm template {' '.join(args)} succeeded; values.schema.json should reject it"
        for n in needles:
            assert n in p.stderr, f"helm template {' '.join(args)}: error does not mention {n!r}:\n{p.stderr}"

    def parent_chart(self, alias=None):
        """A chart of the user's own that depends on sidetrace (under its
        name, or an alias) and puts the sidecar into its pod with the named
        templates."""
        key = alias or "sidetrace"
        parent = self.work / f"my-agents-{key}"
        (parent / "templates").mkdir(parents=True)
        (parent / "charts").mkdir()
        shutil.copytree(CHART, parent / "charts" / "sidetrace")
        (parent / "Chart.yaml").write_text(
            "apiVersion: v2\nname: my-agents\nversion: 1.0.0\n"
            "dependencies:\n  - name: sidetrace\n    version: 0.1.0\n"
            + (f"    alias: {alias}\n" if alias else "")
        )
        (parent / "values.yaml").write_text(
            f"{key}:\n  journal:\n    durability: write-ahead\n"
            "  export:\n    endpoint: http://collector.observability:4317\n    protocol: grpc\n"
        )
        context = f".Subcharts.{alias}" if alias else "."
        (parent / "templates" / "job.yaml").write_text(PARENT_JOB.replace("CONTEXT", context))
        # Helm sees the dependency as present and matching (nothing to download).
        dep = self.helm_cmd("dependency", "list", str(parent))
        rows = [line.split() for line in dep.stdout.splitlines() if line.startswith("sidetrace")]
        status = rows[0][-1] if rows else ""
        assert dep.returncode == 0 and status in ("ok", "unpacked"), dep.stdout + dep.stderr
        for version in K8S_VERSIONS:
            docs = self.render(chart=parent, kube_version=version)
            self.validate(docs, f"parent chart (kube {version})")
        cm = one(docs, "ConfigMap")
        toml = cm["data"]["sidetrace.toml"]
        assert 'durability = "write-ahead"' in toml and 'protocol = "grpc"' in toml, toml
        self.check_config(toml, "parent chart")
        (name, pod), = pod_specs(docs)
        check_pod(pod, f"parent chart {name}", docs, cm)
        check_network_policy(one(docs, "NetworkPolicy"), pod, "parent chart")
        sidecar = container(pod["spec"]["initContainers"], "sidetrace")
        assert sidecar["image"] == "sidetrace:0.1.0", f"image tag from the subchart's appVersion: {sidecar['image']}"
        # The subchart's schema guards the parent's values too.
        p = self.helm_cmd("template", "rec", str(parent), "--set", f"{key}.journal.durability=eventually")
        assert p.returncode != 0 and "/journal/durability" in p.stderr, (
            f"the subchart's schema should reject {key}.journal.durability=eventually:\n{p.stderr}"
        )

    def plain_manifests(self):
        docs = []
        for f in MANIFESTS:
            docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
        self.validate(docs, "deploy/kubernetes")
        cm = one(docs, "ConfigMap")
        self.check_config(cm["data"]["sidetrace.toml"], "deploy/kubernetes/configmap.yaml")
        pods = pod_specs(docs)
        assert sorted(n for n, _ in pods) == ["Deployment/agent", "Job/agent-task"], [n for n, _ in pods]
        policy = one(docs, "NetworkPolicy")
        check_network_policy_shape(policy)
        for name, pod in pods:
            check_pod(pod, f"deploy/kubernetes {name}", docs, cm, keys_secret="sidetrace-keys")
            check_network_policy(policy, pod, name)


# The parent chart's pod template: what a user writes (README.md). CONTEXT is
# "." or, for a dependency with an alias, ".Subcharts.ALIAS".
PARENT_JOB = """\
{{- $st := CONTEXT }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-review
spec:
  template:
    metadata:
      labels:
        app: review
        {{- include "sidetrace.podLabels" $st | nindent 8 }}
      annotations:
        sidetrace.dev/sponsor: bob@example.com
        sidetrace.dev/change-id: "!77"
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 60
      securityContext:
        fsGroup: 65532
      initContainers:
        {{- include "sidetrace.sidecar" $st | nindent 8 }}
      containers:
        - name: agent
          image: registry.example.com/agents/review:1.0.0
          env:
            - name: TASK
              value: review
            {{- include "sidetrace.agentEnv" $st | nindent 12 }}
          volumeMounts:
            - name: work
              mountPath: /work
            {{- include "sidetrace.agentVolumeMounts" $st | nindent 12 }}
      volumes:
        - name: work
          emptyDir: {}
        {{- include "sidetrace.volumes" $st | nindent 8 }}
"""


# -- assertions on objects -----------------------------------------------------


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_specs(docs):
    """(Kind/name, pod template) of every workload."""
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"])
        for d in docs
        if d["kind"] in ("Job", "Deployment", "StatefulSet", "DaemonSet")
    ]


def container(containers, name):
    found = [c for c in containers or [] if c["name"] == name]
    assert len(found) == 1, f"expected one container {name!r}, found {[c['name'] for c in containers or []]}"
    return found[0]


def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}


def check_pod(template, where, docs, cm, keys_secret=None):
    spec = template["spec"]
    annotations = template["metadata"].get("annotations", {})
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    assert len(volumes) == len(spec.get("volumes", [])), f"{where}: duplicate volume names"

    # The sidecar: a native sidecar, after the bundle writer.
    inits = spec.get("initContainers", [])
    names = [c["name"] for c in inits]
    assert "sidetrace" in names, f"{where}: no sidetrace init container: {names}"
    sidecar = container(inits, "sidetrace")
    assert sidecar.get("restartPolicy") == "Always", f"{where}: the sidecar is not a native sidecar (restartPolicy: Always)"
    assert sidecar["args"] == ["proxy"], sidecar["args"]
    if "sidetrace-ca-bundle" in names:
        assert names.index("sidetrace-ca-bundle") < names.index("sidetrace"), names
        bundle = container(inits, "sidetrace-ca-bundle")
        assert "restartPolicy" not in bundle, "the bundle writer must run to completion"
        assert bundle["args"][:2] == ["ca", "bundle"], bundle["args"]

    # Probes on the admin port, which the config binds on all interfaces.
    ports = {p["name"]: p["containerPort"] for p in sidecar.get("ports", [])}
    assert all(len(n) <= 15 for n in ports), f"{where}: port names longer than 15 characters: {list(ports)}"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/readyz")):
        get = sidecar.get(probe, {}).get("httpGet")
        assert get and get["path"] == path, f"{where}: {probe} should GET {path}: {sidecar.get(probe)}"
        assert get["port"] in ports, f"{where}: {probe} port {get['port']} is not a named port of the sidecar"
        admin_port = ports[get["port"]]
    toml = cm["data"]["sidetrace.toml"]
    assert f'admin = "0.0.0.0:{admin_port}"' in toml, f"{where}: the probes' port {admin_port} is not the admin address the config binds on all interfaces"
    assert 'listen = "127.0.0.1:' in toml, f"{where}: the proxy must listen on loopback only"

    # Sponsor and change id from the pod's annotations.
    env = env_of(sidecar)
    for var, what in (("SIDETRACE_SPONSOR", "sponsor"), ("SIDETRACE_CHANGE_ID", "change-id")):
        path = env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
        assert path.startswith("metadata.annotations['") and path.endswith("']"), f"{where}: {var} not from an annotation: {env.get(var)}"
        key = path[len("metadata.annotations['"):-2]
        assert key.endswith(what), f"{where}: {var} reads annotation {key!r}"
        assert key in annotations, f"{where}: the pod has no {key!r} annotation for {var}"
    assert env["SIDETRACE_CONFIG"]["value"].endswith("/sidetrace.toml"), env["SIDETRACE_CONFIG"]

    # Mounts: config from the ConfigMap, keys from the Secret, where the config
    # (and the env for `kubectl exec`) say.
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}
    for c in [*inits, *spec["containers"]]:
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes, f"{where}: container {c['name']} mounts undeclared volume {m['name']!r}"
    config_mount = mounts[str(Path(env["SIDETRACE_CONFIG"]["value"]).parent)]
    assert volumes[config_mount["name"]]["configMap"]["name"] == cm["metadata"]["name"], f"{where}: config not from the ConfigMap"
    ca_dir = env["SIDETRACE_CA_DIR"]["value"]
    key_mount = mounts.get(ca_dir)
    assert key_mount and key_mount.get("readOnly"), f"{where}: the CA dir {ca_dir} is not a read-only mount"
    secret = volumes[key_mount["name"]].get("secret")
    assert secret, f"{where}: the keys are not mounted from a Secret"
    if keys_secret is None:
        keys_secret = next((d["metadata"]["name"] for d in docs if d["kind"] == "Secret"), secret["secretName"])
    assert secret["secretName"] == keys_secret, f"{where}: keys from {secret['secretName']}, expected {keys_secret}"
    assert "items" not in secret, f"{where}: the sidecar needs all three key files"
    assert str(Path(env["SIDETRACE_SIGNING_KEY"]["value"]).parent) == ca_dir, env["SIDETRACE_SIGNING_KEY"]
    for line in (f'ca_dir = "{ca_dir}"', f'signing_key = "{env["SIDETRACE_SIGNING_KEY"]["value"]}"',
                 f'path = "{env["SIDETRACE_JOURNAL"]["value"]}"'):
        assert line in toml, f"{where}: the config and the sidecar's env disagree: {line!r} not in the config"
    data_dir = str(Path(env["SIDETRACE_JOURNAL"]["value"]).parent)
    assert data_dir in mounts and not mounts[data_dir].get("readOnly"), f"{where}: the journal dir {data_dir} is not a writable mount"
    assert "/tmp" in mounts, f"{where}: no writable /tmp for a read-only root"

    sc = sidecar["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"], sc
    assert sc["capabilities"]["drop"] == ["ALL"], sc
    assert sidecar["resources"].get("requests") and sidecar["resources"].get("limits"), sidecar["resources"]
    assert spec.get("securityContext", {}).get("fsGroup") == sc["runAsGroup"], f"{where}: fsGroup must be the sidecar's group so it can read the key files"
    assert spec.get("terminationGracePeriodSeconds", 30) >= 45, f"{where}: too short a grace period for drain + export"

    # The agent: everything through the sidecar, trusting the CA, no keys.
    agents = [c for c in spec["containers"]]
    assert agents, f"{where}: no agent container"
    for agent in agents:
        aenv = env_of(agent)
        listen_port = toml.split('listen = "127.0.0.1:', 1)[1].split('"', 1)[0]
        for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            assert aenv.get(var, {}).get("value") == f"http://127.0.0.1:{listen_port}", f"{where}: agent {var}: {aenv.get(var)}"
        assert aenv.get("NODE_USE_ENV_PROXY", {}).get("value") == "1", f"{where}: NODE_USE_ENV_PROXY"
        no_proxy = aenv.get("NO_PROXY", {}).get("value", "").split(",")
        assert "127.0.0.1" in no_proxy and "localhost" in no_proxy, f"{where}: NO_PROXY {no_proxy}"
        amounts = {m["mountPath"]: m for m in agent.get("volumeMounts", [])}
        cert = aenv.get("NODE_EXTRA_CA_CERTS", {}).get("value")
        assert cert and cert.endswith("/ca-cert.pem"), f"{where}: NODE_EXTRA_CA_CERTS {cert}"
        cert_mount = amounts.get(str(Path(cert).parent))
        assert cert_mount, f"{where}: {cert} is not on a volume the agent mounts"
        cert_secret = volumes[cert_mount["name"]]["secret"]
        assert cert_secret["secretName"] == keys_secret, cert_secret
        assert [i["key"] for i in cert_secret.get("items", [])] == ["ca-cert.pem"], f"{where}: the agent must get the CA certificate only: {cert_secret}"
        for m in agent.get("volumeMounts", []):
            assert m["name"] != key_mount["name"], f"{where}: the agent mounts the keys"
        if "SSL_CERT_FILE" in aenv:
            bundle = aenv["SSL_CERT_FILE"]["value"]
            for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"):
                assert aenv.get(var, {}).get("value") == bundle, f"{where}: {var} {aenv.get(var)}"
            assert str(Path(bundle).parent) in amounts, f"{where}: {bundle} is not on a volume the agent mounts"
            writer = container(inits, "sidetrace-ca-bundle")
            assert writer["args"][-1] == bundle, f"{where}: the bundle is written to {writer['args'][-1]}, the agent reads {bundle}"


def check_network_policy_shape(policy):
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Egress"], spec["policyTypes"]
    dns = [r for r in spec["egress"] if {p["port"] for p in r.get("ports", [])} == {53}]
    assert dns and {p["protocol"] for p in dns[0]["ports"]} == {"UDP", "TCP"}, f"no DNS rule: {spec['egress']}"
    https = [r for r in spec["egress"] if any(p["port"] == 443 for p in r.get("ports", []))]
    assert https, "no upstream (443) rule"
    for r in spec["egress"]:
        assert r.get("to") and r.get("ports"), f"an egress rule without destinations or ports allows everything: {r}"


def check_network_policy(policy, template, where):
    labels = template["metadata"].get("labels", {})
    want = policy["spec"]["podSelector"]["matchLabels"]
    assert want and all(labels.get(k) == v for k, v in want.items()), (
        f"{where}: the NetworkPolicy {policy['metadata']['name']} selects {want}, the pod has {labels}"
    )


# -- main ----------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--helm", required=True)
    ap.add_argument("--sidetrace", required=True)
    args = ap.parse_args()
    assert EXAMPLES, "no example values files"

    with tempfile.TemporaryDirectory(prefix="sidetrace-deploy-") as work:
        c = Checker(args.helm, args.sidetrace, work)
        c.run("values.schema.json is a valid JSON Schema (draft 7)", c.schema_is_valid)
        c.run("helm lint (default values)", c.lint)
        for f in EXAMPLES:
            c.run(f"helm lint -f examples/{f.name}", c.lint, f)
        c.run("render + validate: default values", c.default_render)
        c.run("render + validate: example agent as Job and Deployment", c.agent_job_and_deployment)
        for f in EXAMPLES:
            c.run(f"render + validate: examples/{f.name}", c.example, f)
        c.run("generated CA and signing key are accepted by sidetrace", c.generated_keys_are_accepted)
        c.run("parent chart injects the sidecar with the named templates", c.parent_chart)
        c.run("parent chart with an aliased dependency (.Subcharts.ALIAS)", c.parent_chart, "recorder")
        c.run("plain manifests: deploy/kubernetes", c.plain_manifests)
        rejects = [
            ("a wrong type", ["--set-json", 'sidecar.adminPort="4481"'], ["/sidecar/adminPort", "want integer"]),
            ("an unknown durability mode", ["--set", "journal.durability=eventually"],
             ["/journal/durability", "'batched', 'write-ahead'"]),
            ("an unknown export content mode", ["--set", "export.content=everything"],
             ["/export/content", "'full', 'delta', 'none'"]),
            ("an unknown sponsor requirement", ["--set", "sponsor.require=maybe"], ["/sponsor/require"]),
            ("a misspelled key", ["--set", "journal.retension=400d"], ["/journal", "retension"]),
            ("a route without a leading slash", ["--set-json", 'config.routes=[{"prefix":"openai","upstream":"https://api.openai.com"}]'],
             ["/config/routes/0/prefix"]),
            ("a size without a unit sidetrace knows", ["--set", "config.captureMaxBody=32 parsecs"], ["/config/captureMaxBody"]),
            ("the transparent-redirect placeholder", ["--set", "agent.enabled=true", "--set", "transparentRedirect.enabled=true"],
             ["not implemented yet"]),
        ]
        for what, argv, needles in rejects:
            c.run(f"values are rejected: {what}", c.schema_rejects, argv, needles)

    if c.failures:
        print(f"\n{len(c.failures)} deployment check(s) failed", file=sys.stderr)
        return 1
    print("\nall deployment checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
