#!/usr/bin/env python3
"""sidetrace's side-by-side benchmark. Run it through bench/run.sh, which installs the tools and builds.

Targets, each measured with the same load generator (oha) against the same mock upstream:
  direct      the mock itself
  nginx       nginx as a plain reverse proxy (proxy_pass, upstream keep-alive)
  sidetrace   recording on: capture + journal + OTLP export to a local sink; batched durability
  sidetrace-wa  the same with --durability write-ahead
  litellm     LiteLLM's proxy configured against the mock

Everything listens on loopback ports chosen free; every run is bounded by a count or a duration; every
process started here is in its own process group and is killed on exit, whatever the exit.
Only the Python standard library is used.
"""

import argparse
import atexit
import datetime
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
RELEASE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
SIDETRACE = os.path.join(RELEASE, "sidetrace")
MOCK = os.path.join(RELEASE, "examples", "bench-mock")
CLIENT = os.path.join(RELEASE, "examples", "bench-client")
OHA = os.path.join(BENCH, ".tools", "bin", "oha")
LITELLM = os.path.join(BENCH, ".venv", "bin", "litellm")

PROFILE_DIR = os.path.join(BENCH, ".profile")
P99_LIMIT_MS = 5.0
MODEL = "bench-model"
# Sent to every target; LiteLLM's proxy refuses to start without a master key, the others ignore it.
API_KEY = "sk-bench-7f3a9c2e5b1d4f6a8c0e2b4d6f8a1c3e"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


class Procs:
    """Every process started, each in its own process group; all killed at exit."""

    def __init__(self):
        self.procs = []
        atexit.register(self.kill_all)

    def start(self, name, argv, cpus=None, env=None, logdir=None, stdout=None):
        if cpus is not None:
            argv = ["taskset", "-c", cpus] + argv
        out = stdout
        if out is None:
            out = open(os.path.join(logdir, f"{name}.log"), "ab") if logdir else subprocess.DEVNULL
        p = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT if out is not subprocess.PIPE else None,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        p.bench_name = name
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=20.0):
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{p.bench_name} did not stop in {timeout}s; killing its group")
        self._kill_group(p)
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    @staticmethod
    def _kill_group(p):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def kill_all(self):
        for p in list(self.procs):
            self._kill_group(p)
        self.procs.clear()


PROCS = Procs()


def on_signal(signum, _frame):
    log(f"signal {signum}: stopping everything")
    PROCS.kill_all()
    sys.exit(128 + signum)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return None, b""


def wait_ready(url, proc, timeout=60.0, accept=(200,)):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.bench_name} exited ({proc.returncode}) before it was ready")
        status, _ = http_get(url, timeout=1.0)
        if status in accept:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.bench_name} not ready at {url} after {timeout}s")


def pids_of_tree(pid):
    """pid and its descendants (via /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kb(pid, tree=False):
    total = 0
    for p in pids_of_tree(pid) if tree else [pid]:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class RssSampler:
    """Samples the RSS of a process (tree) every 100 ms in a thread; keeps the max."""

    def __init__(self, pid, tree=False):
        self.pid, self.tree = pid, tree
        self.max_kb = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_flag.is_set():
            self.max_kb = max(self.max_kb, rss_kb(self.pid, self.tree))
            self.stop_flag.wait(0.1)

    def stop(self):
        self.stop_flag.set()
        self.thread.join()
        return self.max_kb


# ---------------------------------------------------------------- machine


def cpu_plan(pin):
    cpus = sorted(os.sched_getaffinity(0))
    n = len(cpus)
    if not pin or n < 2 or not shutil.which("taskset"):
        return {
            "load": None,
            "mock": None,
            "proxy": None,
            "note": f"not pinned ({n} CPU(s) available): load generator, mock and proxy share all CPUs",
        }
    if n == 2:
        return {
            "load": str(cpus[1]),
            "mock": str(cpus[0]),
            "proxy": str(cpus[0]),
            "note": f"load generator (oha) and measuring clients on CPU {cpus[1]}; the mock upstream, the "
            f"OTLP sink and the proxy under test share CPU {cpus[0]}",
        }
    load = cpus[n // 2 :]
    mock = cpus[:1]
    proxy = cpus[1 : n // 2] or cpus[:1]
    j = lambda xs: ",".join(map(str, xs))  # noqa: E731
    return {
        "load": j(load),
        "mock": j(mock),
        "proxy": j(proxy),
        "note": f"load generator on CPUs {j(load)}; mock upstream and OTLP sink on CPU {j(mock)}; "
        f"proxy under test on CPUs {j(proxy)}",
    }


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except subprocess.TimeoutExpired:
        return ""


def machine_description():
    lscpu = sh("lscpu")
    keep = ("Architecture", "Model name", "CPU(s):", "Thread(s) per core", "Core(s) per socket",
            "Hypervisor vendor", "L2 cache", "L3 cache", "CPU max MHz")
    lines = [l for l in lscpu.splitlines() if l.strip().startswith(keep)]
    return {
        "lscpu": "\n".join(lines),
        "nproc": sh("nproc"),
        "uname": sh("uname -srvmo"),
        "memory": sh("free -m | sed -n 1,2p"),
        "loadavg_start": sh("cat /proc/loadavg"),
        "busy_at_start": sh("ps -eo pcpu,comm --sort=-pcpu | sed -n 2,6p"),
        "rustc": sh("rustc --version"),
        "oha": sh(f"{OHA} --version"),
        "nginx": sh("nginx -v 2>&1"),
        "litellm": sh(f"{os.path.join(BENCH, '.venv', 'bin', 'pip')} show litellm 2>/dev/null | sed -n 2p"),
        "sidetrace": sh(f"git -C {ROOT} describe --always --dirty"),
    }


# ---------------------------------------------------------------- payloads

WORDS = ("the parser returns an error when input is empty please fix failing test in module and explain "
         "why function handles bytes stream buffer request response journal record agent tool call result "
         "file line change review commit branch pipeline green").split()


def prose(rng, n):
    out = []
    size = 0
    while size < n:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n]


def chat_body(rng, target_bytes=1024, stream=False):
    body = {"model": MODEL, "messages": [
        {"role": "system", "content": "You are a careful coding agent. Answer briefly."},
        {"role": "user", "content": ""},
    ], "max_tokens": 256}
    if stream:
        body["stream"] = True
    room = target_bytes - len(json.dumps(body, separators=(",", ":")))
    body["messages"][1]["content"] = prose(rng, max(room, 16))
    return json.dumps(body, separators=(",", ":"))


def write_payloads(tmp):
    rng = random.Random(9)
    lines = os.path.join(tmp, "chat-bodies.jsonl")
    with open(lines, "w") as f:
        for _ in range(1000):
            f.write(chat_body(rng) + "\n")
    stream = os.path.join(tmp, "stream-body.json")
    with open(stream, "w") as f:
        f.write(chat_body(rng, stream=True))
    return lines, stream


# ---------------------------------------------------------------- load generation


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    rank = max(1, min(len(sorted_vals), int(-(-p / 100.0 * len(sorted_vals) // 1))))
    return sorted_vals[rank - 1]


class Oha:
    def __init__(self, cfg, tmp):
        self.cfg, self.tmp = cfg, tmp
        self.count = 0

    def run(self, url, bodies, rate=None, secs=5.0, conns=16, label=""):
        """One oha run: fixed rate (latency-corrected, as wrk2) or closed loop (rate=None)."""
        self.count += 1
        out = os.path.join(self.tmp, f"oha-{self.count}.json")
        db = os.path.join(self.tmp, f"oha-{self.count}.db")
        argv = [OHA, "--no-tui", "--output-format", "json", "-o", out, "--db-url", db,
                "-m", "POST", "-T", "application/json", "-H", f"Authorization: Bearer {API_KEY}",
                "-Z", bodies, "-c", str(conns), "-z", f"{secs}s", "-w", "-t", "10s", url]
        if rate:
            argv += ["-q", str(rate), "--latency-correction"]
        if self.cfg["load"] is not None:
            argv = ["taskset", "-c", self.cfg["load"]] + argv
        started = time.time()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
        if r.returncode != 0:
            raise RuntimeError(f"oha failed ({r.returncode}): {r.stderr[-2000:]}")
        with open(out) as f:
            report = json.load(f)
        durations = []
        if os.path.exists(db):
            con = sqlite3.connect(db)
            rows = con.execute("SELECT start, duration, status FROM oha ORDER BY start").fetchall()
            con.close()
            # The first request on each connection includes the TCP connect: left out for every target.
            rows = rows[conns:]
            durations = sorted(d * 1000.0 for _, d, s in rows)
            os.unlink(db)
        statuses = report.get("statusCodeDistribution", {})
        errors = sum(report.get("errorDistribution", {}).values())
        non2xx = sum(v for k, v in statuses.items() if not k.startswith("2"))
        ok = sum(v for k, v in statuses.items() if k.startswith("2"))
        res = {
            "label": label,
            "rate": rate,
            "secs": secs,
            "conns": conns,
            "requests": ok + non2xx,
            "ok": ok,
            "errors": errors,
            "non2xx": non2xx,
            "error_kinds": report.get("errorDistribution", {}),
            "achieved_rps": round(ok / secs, 1),
            "p50_ms": round(percentile(durations, 50), 4),
            "p99_ms": round(percentile(durations, 99), 4),
            "p999_ms": round(percentile(durations, 99.9), 4),
            "max_ms": round(durations[-1], 4) if durations else None,
            "wall_s": round(time.time() - started, 1),
        }
        os.unlink(out)
        return res


def passes(res):
    return (res["errors"] == 0 and res["non2xx"] == 0 and res["p99_ms"] < P99_LIMIT_MS
            and res["achieved_rps"] >= 0.95 * res["rate"])


def perf_report(data, how):
    """`perf report` as compact text: padding collapsed, header comments and empty IPC columns dropped."""
    r = subprocess.run(["perf", "report", "-i", data, "-g", "none", "--stdio"] + how,
                       capture_output=True, text=True, timeout=900)
    out = []
    for line in r.stdout.splitlines():
        if line.startswith("#") and not line.startswith("# Samples") and not line.startswith("# Overhead"):
            continue
        line = re.sub(r"\s+-\s+-\s*$", "", line.rstrip())
        line = re.sub(r"\s{3,}", "   ", line).rstrip()
        if line:
            out.append(line)
    return "\n".join(out) + "\n"


# Parts of sidetrace worth knowing the cost of: (label, symbol whose inclusive share is shown).
PROFILE_PARTS = [
    ("journal writer thread: group commit into SQLite", "thread:journal-writer"),
    ("WAL checkpoint thread (idle priority)", "thread:journal-wal"),
    ("  WAL copied back into the file (all threads)", "sqlite3WalCheckpoint"),
    ("  fsync (all threads)", "unixSync"),
    ("export thread: spans built, encoded and sent", "thread:sidetrace-expor"),
    ("  building spans (from the journal's tail, or the file)", "sidetrace::export::batch::build"),
    ("  span content (message blobs resolved)", "sidetrace::export::spans::chat"),
    ("capture: exchange → record (parse, digest, scrub, link)", "sidetrace::capture::exchange::build"),
    ("  secret scrubbing", "sidetrace::record::secrets::Cleaner::clean"),
    ("write-ahead: recording the request before forwarding", "sidetrace::capture::exchange::request_start"),
    ("request handling in proxy::forward", "sidetrace::proxy::forward::handle::{{closure}}"),
    ("hyper server connections (agent side)", "hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_catch"),
    ("background threads offering the core back (sched_yield)", "__GI_sched_yield (inlined)"),
    ("SQL statements compiled (sqlite3Prepare, all callers)", "sqlite3Prepare"),
    ("malloc", "__GI___libc_malloc (inlined)"),
]


def write_profile_report(report, data, durability, cpus, rate, secs):
    with open(report, "w") as f:
        f.write(f"# perf profile of sidetrace ({durability}), on CPU {cpus} with the mock: "
                f"{rate} req/s for {secs:.0f} s, closed loop (16 connections) for {secs:.0f} s, then "
                f"20 SSE streams. perf data: {os.path.relpath(data, ROOT)}\n\n")
        f.write("## where the time goes (inclusive share of sidetrace's samples)\n\n")
        f.write(profile_components(data))
        f.write("\n## self time by symbol (all threads)\n\n")
        f.write(perf_report(data, ["--no-children", "--sort", "dso,symbol", "--percent-limit", "0.4"]))
        f.write("\n## inclusive time by symbol (callers included)\n\n")
        f.write(perf_report(data, ["--children", "--sort", "symbol", "--percent-limit", "1.5"]))
        f.write("\n## self time by thread\n\n")
        f.write(perf_report(data, ["--no-children", "--sort", "comm", "--percent-limit", "0.5"]))


def profile_components(data):
    r = subprocess.run(["perf", "report", "-i", data, "--children", "--sort", "symbol", "-g", "none",
                        "--percent-limit", "0.1", "--stdio"], capture_output=True, text=True, timeout=900)
    share = {}
    for line in r.stdout.splitlines():
        line = re.sub(r"\s+-\s+-\s*$", "", line.rstrip())
        m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[[.k]\]\s+(.*?)\s*$", line)
        if m:
            share.setdefault(m.group(2), float(m.group(1)))
    r = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "comm", "-g", "none",
                        "--stdio"], capture_output=True, text=True, timeout=900)
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
        if m:
            share.setdefault(f"thread:{m.group(2)}", float(m.group(1)))
    out = ["| part | share |", "|---|---|"]
    for label, sym in PROFILE_PARTS:
        v = share.get(sym)
        out.append(f"| {label} | {'—' if v is None else f'{v:.1f}%'} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- targets


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.cfg = cpu_plan(not args.no_pin)
        self.tmp = tempfile.mkdtemp(prefix="sidetrace-bench-")
        self.logs = os.path.join(self.tmp, "logs")
        os.makedirs(self.logs)
        self.bodies, self.stream_body = write_payloads(self.tmp)
        self.oha = Oha(self.cfg, self.tmp)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SIDETRACE_", "OTEL_", "RUST_LOG"))}
        self.env["XDG_DATA_HOME"] = os.path.join(self.tmp, "xdg")
        self.results = {"targets": {}, "cpu": self.cfg["note"], "quick": self.quick}
        if self.quick:
            self.rates = [(100, 2.0), (500, 2.0), (1000, 2.0), (2000, 2.0)]
            self.search_steps, self.search_secs, self.sat_secs = 3, 1.5, 2.0
            self.sse_streams, self.hold_streams, self.turns = 20, 200, 20
        else:
            self.rates = [(100, 10.0), (500, 6.0), (1000, 5.0), (2000, 5.0)]
            self.search_steps, self.search_secs, self.sat_secs = 6, 3.0, 5.0
            self.sse_streams, self.hold_streams, self.turns = 200, 1000, 100

    # -- servers

    def start_mock(self, name, **kw):
        port = free_port()
        argv = [MOCK, "--listen", f"127.0.0.1:{port}"]
        for k, v in kw.items():
            argv += [f"--{k.replace('_', '-')}", str(v)]
        p = PROCS.start(name, argv, cpus=self.cfg["mock"], env=self.env, logdir=self.logs)
        wait_ready(f"http://127.0.0.1:{port}/health", p)
        return p, port

    def sidetrace_argv(self, durability, port, admin, journal, upstream, sink):
        return [SIDETRACE, "proxy", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                "--route", f"/openai=http://127.0.0.1:{upstream}",
                "--route", f"/anthropic=http://127.0.0.1:{upstream}",
                "--journal", journal, "--sponsor", "bench@example.com", "--change-id", "!bench",
                "--otlp-endpoint", f"http://127.0.0.1:{sink}", "--otlp-protocol", "http/protobuf",
                "--durability", durability, "--log-level", "warn", "--drain-timeout", "5s",
                "--export-shutdown-timeout", "5s"]

    def start_sidetrace(self, name, durability, upstream, sink, perf_out=None):
        port, admin = free_port(), free_port()
        jdir = os.path.join(self.tmp, name)
        os.makedirs(jdir, exist_ok=True)
        journal = os.path.join(jdir, "journal.db")
        argv = self.sidetrace_argv(durability, port, admin, journal, upstream, sink)
        if perf_out:
            argv = ["perf", "record", "-e", "cpu-clock", "-F", "499", "--call-graph", "dwarf,16384",
                    "-o", perf_out, "--"] + argv
        p = PROCS.start(name, argv, cpus=self.cfg["proxy"], env=self.env, logdir=self.logs)
        wait_ready(f"http://127.0.0.1:{admin}/readyz", p)
        target_pid = p.pid
        if perf_out:
            # perf's child is sidetrace
            deadline = time.time() + 5
            while time.time() < deadline:
                kids = [x for x in pids_of_tree(p.pid) if x != p.pid]
                if kids:
                    target_pid = kids[0]
                    break
                time.sleep(0.05)
        return {"proc": p, "pid": target_pid, "port": port, "admin": admin, "journal": journal,
                "url": f"http://127.0.0.1:{port}/openai/v1/chat/completions"}

    def start_nginx(self, upstream):
        port = free_port()
        d = os.path.join(self.tmp, "nginx")
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  upstream mock {{
    server 127.0.0.1:{upstream};
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    keepalive_requests 1000000;
    location /openai/ {{
      proxy_pass http://mock/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""")
        p = PROCS.start("nginx", ["nginx", "-e", f"{d}/error.log", "-c", conf, "-p", d],
                        cpus=self.cfg["proxy"], env=self.env, logdir=self.logs)
        wait_ready(f"http://127.0.0.1:{port}/openai/health", p)
        return {"proc": p, "pid": p.pid, "tree": True,
                "url": f"http://127.0.0.1:{port}/openai/v1/chat/completions"}

    def start_litellm(self, upstream):
        port = free_port()
        d = os.path.join(self.tmp, "litellm")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "config.yaml")
        with open(conf, "w") as f:
            f.write(f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: http://127.0.0.1:{upstream}/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  master_key: {API_KEY}
""")
        env = dict(self.env)
        env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                    "LITELLM_TELEMETRY": "False", "HOME": d, "NO_DOCS": "True"})
        p = PROCS.start("litellm", [LITELLM, "--config", conf, "--host", "127.0.0.1", "--port", str(port),
                                    "--num_workers", "1"],
                        cpus=self.cfg["proxy"], env=env, logdir=self.logs)
        wait_ready(f"http://127.0.0.1:{port}/health/liveliness", p, timeout=180)
        return {"proc": p, "pid": p.pid, "tree": True,
                "url": f"http://127.0.0.1:{port}/v1/chat/completions"}

    # -- measurements

    def client(self, *argv, timeout=300):
        cmd = [CLIENT] + list(argv) + ["-H", f"Authorization: Bearer {API_KEY}"]
        if self.cfg["load"] is not None:
            cmd = ["taskset", "-c", self.cfg["load"]] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"bench-client {argv[0]} failed: {r.stderr[-2000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def cpu_ticks(self, t):
        pids = pids_of_tree(t["pid"]) + [self.mock.pid, self.sink.pid]
        total = 0
        for p in set(pids):
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        return total

    def wait_quiet(self, name, limit=60.0):
        """Waits until the target (with the mock and the sink) stops using CPU: work left over from the
        previous run (a recorder catching up, an export backlog) must not land on the next one."""
        t = self.targets[name]
        hz = os.sysconf("SC_CLK_TCK")
        started = time.time()
        last = self.cpu_ticks(t)
        while time.time() - started < limit:
            time.sleep(0.3)
            now = self.cpu_ticks(t)
            if (now - last) / hz < 0.3 * 0.05:  # under 5% of a CPU for 300 ms
                break
            last = now
        waited = time.time() - started - 0.3
        if waited > 0.5:
            log(f"{name:>13} kept working {waited:.1f} s after the previous run")
        return round(max(waited, 0.0), 1)

    def oha_run(self, name, rate=None, secs=5.0, conns=16, label=""):
        t = self.targets[name]
        res = self.results["targets"][name]
        res.setdefault("catch_up_s", []).append(self.wait_quiet(name))
        sampler = RssSampler(t["pid"], tree=t.get("tree", False))
        cpu0 = self.cpu_ticks(t)
        try:
            r = self.oha.run(t["url"], self.bodies, rate=rate, secs=secs, conns=conns, label=label)
        finally:
            rss = sampler.stop()
        res["rss_load_kb"] = max(res.get("rss_load_kb", 0), rss)
        if r["ok"]:
            r["cpu_us_per_req"] = round((self.cpu_ticks(t) - cpu0) / os.sysconf("SC_CLK_TCK") / r["ok"] * 1e6)
        return r

    # -- the phases; every target is up at once and the runs interleave, so drifting background load
    # (this machine is shared) spreads over all targets alike.

    def phase_warmup(self):
        for name in self.targets:
            warm = self.oha_run(name, rate=200, secs=1.0 if self.quick else 2.0, label="warm-up")
            if warm["ok"] == 0:
                raise RuntimeError(f"{name}: warm-up got no successful response: {warm}")

    def phase_sse(self):
        """Streams through each target, interleaved: two rounds with 20 ms between one stream's end and the
        next request on a connection (an agent acting on the answer), one round back to back."""
        per_round = max(self.sse_streams // 2, 1)
        plan = [("sse", 20), ("sse_b2b", 0), ("sse", 20)]
        raw = {(name, key): {"ttfc_us": [], "gap_us": [], "delay_us": [], "chunks": [], "errors": 0,
                             "examples": []} for name in self.targets for key, _ in plan}
        for rnd, (key, think) in enumerate(plan):
            for name, t in self.targets.items():
                self.results["targets"][name].setdefault("catch_up_s", []).append(self.wait_quiet(name))
                out = os.path.join(self.tmp, f"sse-{name}-{rnd}.json")
                s = self.client("sse", "--url", t["url"], "--body-file", self.stream_body,
                                "--streams", str(per_round), "--concurrency", "4", "--think-ms", str(think),
                                "--samples-out", out)
                with open(out) as f:
                    samples = json.load(f)
                r = raw[(name, key)]
                for k in ("ttfc_us", "gap_us", "delay_us", "chunks"):
                    r[k] += samples[k]
                r["errors"] += s["errors"]
                r["examples"] += s["error_examples"]

        def summ(v):
            v = sorted(v)
            if not v:
                return {"n": 0}
            out = {k: round(percentile(v, p), 1)
                   for k, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))}
            return {"n": len(v), **out, "max": round(v[-1], 1)}

        for (name, key), r in raw.items():
            s = {"streams": len(r["ttfc_us"]), "errors": r["errors"], "error_examples": r["examples"][:3],
                 "chunks_min": min(r["chunks"], default=None), "chunks_max": max(r["chunks"], default=None),
                 "ttfc_us": summ(r["ttfc_us"]), "gap_us": summ(r["gap_us"]), "delay_us": summ(r["delay_us"])}
            self.results["targets"][name][key] = s
            log(f"{name:>13} {key}: ttfc p50/p99 {s['ttfc_us'].get('p50')}/{s['ttfc_us'].get('p99')} us, "
                f"chunk delay p50/p99 {s['delay_us'].get('p50')}/{s['delay_us'].get('p99')} us, "
                f"errors {s['errors']}")

    def phase_closed_loop(self):
        for name in self.targets:
            sat = self.oha_run(name, rate=None, secs=self.sat_secs, conns=16, label="closed loop")
            self.results["targets"][name]["saturated"] = sat
            log(f"{name:>13} closed loop (16 conns): {sat['achieved_rps']} req/s, p99 {sat['p99_ms']:.2f} ms, "
                f"errors {sat['errors'] + sat['non2xx']}, {sat.get('cpu_us_per_req')} µs CPU/request")

    def phase_fixed(self):
        for rate, secs in self.rates:
            for name in self.targets:
                res = self.results["targets"][name]
                cap = res["saturated"]["achieved_rps"]
                if rate > 1.5 * cap:
                    # Far over what it can do at all: the run would only measure a growing queue.
                    res.setdefault("fixed", []).append({"label": f"{rate}/s", "rate": rate, "over_capacity": True})
                    log(f"{name:>13} {rate:>5}/s  skipped: closed-loop capacity is {cap} req/s")
                    continue
                r = self.oha_run(name, rate=rate, secs=secs, label=f"{rate}/s")
                res.setdefault("fixed", []).append(r)
                log(f"{name:>13} {rate:>5}/s  p50 {r['p50_ms']:.3f}  p99 {r['p99_ms']:.3f}  "
                    f"p99.9 {r['p999_ms']:.3f} ms  ok {r['ok']}  err {r['errors'] + r['non2xx']}")

    def phase_search(self):
        """Highest fixed rate with p99 < 5 ms and no errors: bisect between the best passing fixed rate and
        a little above the closed-loop throughput."""
        for name in self.targets:
            res = self.results["targets"][name]
            res["search"] = []
            lo = max([r["rate"] for r in res["fixed"] if not r.get("over_capacity") and passes(r)], default=0)
            hi = max(res["saturated"]["achieved_rps"] * 1.1, lo * 1.25, 20)
            for _ in range(self.search_steps):
                mid = int((lo + hi) / 2)
                if mid <= lo or mid >= hi:
                    break
                r = self.oha_run(name, rate=mid, secs=self.search_secs, label=f"search {mid}/s")
                ok = passes(r)
                res["search"].append(r | {"pass": ok})
                log(f"{name:>13} search {mid:>6}/s: p99 {r['p99_ms']:.3f} ms, achieved {r['achieved_rps']}, "
                    f"errors {r['errors'] + r['non2xx']} -> {'pass' if ok else 'fail'}")
                lo, hi = (mid, hi) if ok else (lo, mid)
            res["max_rate"] = lo

    def export_stats(self, st):
        _, metrics = http_get(f"http://127.0.0.1:{st['admin']}/metrics")
        out = {}
        for line in metrics.decode(errors="replace").splitlines():
            for key in ("sidetrace_export_spans_total", "sidetrace_journal_entries_written_total",
                        "sidetrace_journal_records_lost_total", "sidetrace_export_lag_entries",
                        "sidetrace_interactions_captured_total", "sidetrace_capture_errors_total"):
                if line.startswith(key):
                    try:
                        out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
                    except ValueError:
                        pass
        return out

    def hold(self, name):
        """RSS of sidetrace with N concurrent open streams (slow streams from the mock)."""
        st = self.targets[name]
        self.wait_quiet(name)
        ready = os.path.join(self.tmp, "hold-ready.json")
        hold_secs = 6.0 if self.quick else 10.0
        before = rss_kb(st["pid"])
        argv = [CLIENT, "hold", "--url", st["url"], "--body-file", self.stream_body,
                "--streams", str(self.hold_streams), "--hold-secs", str(hold_secs), "--ready-file", ready,
                "-H", f"Authorization: Bearer {API_KEY}", "-H", "x-mock-chunks: 600",
                "-H", "x-mock-chunk-delay-us: 500000"]
        if self.cfg["load"] is not None:
            argv = ["taskset", "-c", self.cfg["load"]] + argv
        p = PROCS.start("hold", argv, env=self.env, stdout=subprocess.PIPE)
        deadline = time.time() + 150
        while not os.path.exists(ready) and time.time() < deadline and p.poll() is None:
            time.sleep(0.1)
        time.sleep(0.5)
        samples = []
        t_end = time.time() + hold_secs - 1.5
        while time.time() < t_end and p.poll() is None:
            samples.append(rss_kb(st["pid"]))
            time.sleep(0.25)
        out, _ = p.communicate(timeout=60)
        PROCS.stop(p)
        summary = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
        res = {"streams": self.hold_streams, "rss_before_kb": before,
               "rss_open_kb": max(samples) if samples else None, "client": summary}
        log(f"{name:>13} {self.hold_streams} open streams: RSS {res['rss_open_kb']} kB "
            f"(before {before} kB); client {summary}")
        return res

    def run_conversation(self, mock_port):
        st = self.start_sidetrace("sidetrace-conversation", "batched", mock_port, self.sink_port)
        try:
            conv = self.client("conversation", "--url", st["url"], "--turns", str(self.turns),
                               "--journal", st["journal"], "--cpu-pid", str(st["pid"]), timeout=600)
        finally:
            PROCS.stop(st["proc"], timeout=30)
        conv_rows = conv.pop("rows")
        conv["rows_sampled"] = [r for r in conv_rows if r["turn"] in (1, 2, 5, 10, 25, 50, 75, 100)
                                or r["turn"] == self.turns]
        self.results["conversation"] = conv
        log(f"    journal growth: {conv['row_bytes_per_turn_fit']} B/turn of rows "
            f"(first half {conv['row_bytes_per_turn_first_half']}, second half "
            f"{conv['row_bytes_per_turn_second_half']}), file {conv['file_bytes_per_turn_fit']} B/turn, "
            f"new content {conv['new_content_bytes_per_turn']} B/turn")

    # -- profile

    def profile(self, mock_port):
        outdir = os.path.join(BENCH, "results")
        os.makedirs(outdir, exist_ok=True)
        os.makedirs(PROFILE_DIR, exist_ok=True)
        for durability in ("batched", "write-ahead"):
            data = os.path.join(PROFILE_DIR, f"perf-{durability}.data")
            st = self.start_sidetrace(f"profile-{durability}", durability, mock_port, self.sink_port,
                                      perf_out=data)
            try:
                rate = 500 if durability == "batched" else 300
                secs = 4.0 if self.quick else 10.0
                r = self.oha.run(st["url"], self.bodies, rate=rate, secs=secs, label="profile")
                log(f"profile {durability}: {rate}/s p50 {r['p50_ms']} p99 {r['p99_ms']} ms (under perf)")
                sat = self.oha.run(st["url"], self.bodies, rate=None, secs=secs, conns=16, label="profile")
                log(f"profile {durability}: closed loop {sat['achieved_rps']} req/s (under perf)")
                self.client("sse", "--url", st["url"], "--body-file", self.stream_body,
                            "--streams", "20", "--concurrency", "4")
            finally:
                # SIGTERM to sidetrace itself; perf writes its data when its child exits.
                try:
                    os.kill(st["pid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    st["proc"].wait(60)
                except subprocess.TimeoutExpired:
                    pass
                PROCS.stop(st["proc"])
            report = os.path.join(outdir, f"profile-{durability}.txt")
            write_profile_report(report, data, durability, self.cfg["proxy"], rate, secs)
            log(f"profile written to {os.path.relpath(report, ROOT)}")
            collapse = os.path.join(BENCH, ".tools", "bin", "inferno-collapse-perf")
            flame = os.path.join(BENCH, ".tools", "bin", "inferno-flamegraph")
            if os.path.exists(collapse) and os.path.exists(flame):
                svg = os.path.join(outdir, f"flamegraph-{durability}.svg")
                script = subprocess.Popen(["perf", "script", "-i", data], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
                folded = subprocess.run([collapse], stdin=script.stdout, capture_output=True, timeout=900)
                script.wait()
                with open(svg, "wb") as f:
                    subprocess.run([flame, "--title", f"sidetrace ({durability})"], input=folded.stdout,
                                   stdout=f, timeout=300)
                log(f"flamegraph written to {os.path.relpath(svg, ROOT)}")

    # -- the whole run

    def start_targets(self, mock_port):
        only = set(self.args.only.split(",")) if self.args.only else None
        want = lambda t: only is None or t in only  # noqa: E731
        self.targets = {}
        if want("direct"):
            self.targets["direct"] = {"pid": self.mock.pid,
                                      "url": f"http://127.0.0.1:{mock_port}/v1/chat/completions"}
        if want("nginx") and not self.args.skip_nginx:
            if shutil.which("nginx"):
                self.targets["nginx"] = self.start_nginx(mock_port)
            else:
                log("nginx not found: skipped")
        for name, durability in (("sidetrace", "batched"), ("sidetrace-wa", "write-ahead")):
            if want(name):
                st = self.start_sidetrace(name, durability, mock_port, self.sink_port)
                time.sleep(1.0)
                st["rss_idle_kb"] = rss_kb(st["pid"])
                self.targets[name] = st
        if want("litellm") and not self.args.skip_litellm:
            if os.path.exists(LITELLM):
                log("starting LiteLLM (slow to start)")
                self.targets["litellm"] = self.start_litellm(mock_port)
            else:
                log("LiteLLM not installed (bench/.venv): skipped")
        for name, t in self.targets.items():
            self.results["targets"][name] = {k: t[k] for k in ("rss_idle_kb",) if k in t}

    def run(self):
        started = time.time()
        self.results["machine"] = machine_description()
        self.results["started"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        log(f"CPU plan: {self.cfg['note']}")
        log(f"work dir {self.tmp}")
        self.mock, mock_port = self.start_mock("mock")
        self.sink, self.sink_port = self.start_mock("otlp-sink")
        self.results["mock"] = {"response_bytes": 1024, "chunks": 100, "chunk_delay_us": 2000}
        if self.args.profile:
            self.profile(mock_port)
            return None
        self.start_targets(mock_port)
        if self.targets:
            self.phase_warmup()
            self.phase_sse()
            self.phase_closed_loop()
            self.phase_fixed()
            self.phase_search()
        if "sidetrace" in self.targets and not self.args.skip_hold:
            self.results["targets"]["sidetrace"]["hold"] = self.hold("sidetrace")
        for name in ("sidetrace", "sidetrace-wa"):
            if name in self.targets:
                st = self.targets[name]
                self.wait_quiet(name)
                res = self.results["targets"][name]
                res["metrics"] = self.export_stats(st)
                res["exit_code"] = PROCS.stop(st["proc"], timeout=30)
                res["journal_bytes"] = sum(
                    os.path.getsize(st["journal"] + ext) for ext in ("", "-wal")
                    if os.path.exists(st["journal"] + ext))
        for name in ("nginx", "litellm"):
            if name in self.targets:
                PROCS.stop(self.targets[name]["proc"], sig=signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        only = set(self.args.only.split(",")) if self.args.only else None
        if only is None or "conversation" in only:
            self.run_conversation(mock_port)
        _, sink_stats = http_get(f"http://127.0.0.1:{self.sink_port}/stats")
        self.results["otlp_sink"] = json.loads(sink_stats or b"{}")
        self.results["machine"]["loadavg_end"] = sh("cat /proc/loadavg")
        self.results["elapsed_s"] = round(time.time() - started)
        return self.results


# ---------------------------------------------------------------- report

NAMES = {"direct": "direct", "nginx": "nginx", "sidetrace": "sidetrace (batched)",
         "sidetrace-wa": "sidetrace (write-ahead)", "litellm": "LiteLLM"}
ORDER = ["direct", "nginx", "sidetrace", "sidetrace-wa", "litellm"]


def fmt(x, digits=3):
    if x is None:
        return "—"
    if isinstance(x, float) and x != x:
        return "—"
    if isinstance(x, int) or (isinstance(x, float) and abs(x) >= 100):
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def fixed_at(t, rate):
    for r in t.get("fixed", []):
        if r["rate"] == rate and not r.get("over_capacity"):
            return r
    return None


def added(targets, name, rate, key):
    a, d = fixed_at(targets.get(name, {}), rate), fixed_at(targets.get("direct", {}), rate)
    if not a or not d:
        return None
    return a[key] - d[key]


def sse_added(targets, name, key, p="p99", kind="sse"):
    a, d = targets.get(name, {}).get(kind), targets.get("direct", {}).get(kind)
    if not a or not d or p not in a[key] or p not in d[key]:
        return None
    return (a[key][p] - d[key][p]) / 1000.0


def sat(t):
    s = t.get("saturated")
    if not s or s["errors"] or s["non2xx"]:
        return None
    return s["achieved_rps"]


def render(res):
    """The one table: each target's numbers, and the ratios against direct, nginx and the peer."""
    T = res["targets"]
    present = [n for n in ORDER if n in T]
    L = ["| | " + " | ".join(NAMES[n] for n in present) + " |", "|---" * (len(present) + 1) + "|"]

    def row(label, f):
        L.append(f"| {label} | " + " | ".join(f(n) for n in present) + " |")

    def base(n, v):
        return "baseline" if n == "direct" else v

    for key, lab in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        row(f"added {lab} at 500 req/s (ms)", lambda n, key=key: base(n, fmt(added(T, n, 500, key))))
    row("added p99 at 1,000 / 2,000 req/s (ms)",
        lambda n: base(n, f"{fmt(added(T, n, 1000, 'p99_ms'))} / {fmt(added(T, n, 2000, 'p99_ms'))}"))
    row("**throughput**, closed loop, 16 connections (req/s)", lambda n: fmt(sat(T[n]), 0))
    row("  × direct", lambda n: fmt(ratio(sat(T[n]), sat(T.get("direct", {}))), 2))
    row("  × nginx", lambda n: fmt(ratio(sat(T[n]), sat(T.get("nginx", {}))), 2))
    row("  × LiteLLM (peer)", lambda n: fmt(ratio(sat(T[n]), sat(T.get("litellm", {}))), 1))
    row("**max rate with p99 < 5 ms**, no errors (req/s)", lambda n: fmt(T[n].get("max_rate")))
    row("  × direct", lambda n: fmt(ratio(T[n].get("max_rate"), T.get("direct", {}).get("max_rate")), 2))
    row("  × nginx", lambda n: fmt(ratio(T[n].get("max_rate"), T.get("nginx", {}).get("max_rate")), 2))
    row("  × LiteLLM (peer)" + (" — LiteLLM meets it at no rate" if T.get("litellm", {}).get("max_rate") == 0
                                else ""),
        lambda n: fmt(ratio(T[n].get("max_rate"), T.get("litellm", {}).get("max_rate")), 1))
    row("CPU per request at full load (µs, proxy + mock + sink)",
        lambda n: fmt((T[n].get("saturated") or {}).get("cpu_us_per_req")))
    row("SSE added time to first chunk p99 (ms)", lambda n: base(n, fmt(sse_added(T, n, "ttfc_us"))))
    row("  … back-to-back streams (ms)",
        lambda n: base(n, fmt(sse_added(T, n, "ttfc_us", kind="sse_b2b"))))
    row("SSE added per-chunk delay p99 (ms)", lambda n: base(n, fmt(sse_added(T, n, "delay_us"))))
    row("SSE added per-chunk delay p50 (ms)", lambda n: base(n, fmt(sse_added(T, n, "delay_us", "p50"))))
    row("RSS idle / peak under load (MB)",
        lambda n: (fmt(T[n]["rss_idle_kb"] / 1024, 1) + " / " if "rss_idle_kb" in T[n] else "")
        + fmt(T[n].get("rss_load_kb", 0) / 1024, 1))
    row("longest catch-up after a run (s)", lambda n: fmt(max(T[n].get("catch_up_s", [0]), default=0), 1))
    return "\n".join(L)


def targets_table(res):
    T = res["targets"]
    st, wa, ng, ll = (T.get(k, {}) for k in ("sidetrace", "sidetrace-wa", "nginx", "litellm"))
    rows = []

    def check(label, value, ok, unit=""):
        if value is None:
            rows.append(f"| {label} | not measured | — |")
        else:
            rows.append(f"| {label} | {value}{unit} | {'met' if ok else '**missed**'} |")

    def pct(r):
        return None if r is None else f"{r * 100:.0f}%"

    a50, a99 = added(T, "sidetrace", 500, "p50_ms"), added(T, "sidetrace", 500, "p99_ms")
    check("added p50 ≤ 0.2 ms at 500 req/s (recording on, batched)", None if a50 is None else f"{a50:.3f}",
          a50 is not None and a50 <= 0.2, " ms")
    check("added p99 ≤ 1 ms at 500 req/s (recording on, batched)", None if a99 is None else f"{a99:.3f}",
          a99 is not None and a99 <= 1.0, " ms")
    r = ratio(sat(st), sat(ng))
    check("throughput ≥ 70% of nginx (closed loop)", pct(r), r is not None and r >= 0.7)
    r = ratio(st.get("max_rate"), ng.get("max_rate"))
    check("max rate with p99 < 5 ms ≥ 70% of nginx's", pct(r), r is not None and r >= 0.7)
    r = ratio(sat(st), sat(ll))
    check("throughput ≥ 10× LiteLLM (closed loop)", None if r is None else f"{r:.1f}×", r is not None and r >= 10)
    if ll.get("max_rate") == 0:
        rows.append(f"| max rate with p99 < 5 ms ≥ 10× LiteLLM's | LiteLLM meets p99 < 5 ms at no rate; "
                    f"sidetrace at {fmt(st.get('max_rate'))} req/s | met |")
    else:
        r = ratio(st.get("max_rate"), ll.get("max_rate"))
        check("max rate with p99 < 5 ms ≥ 10× LiteLLM's", None if r is None else f"{r:.1f}×",
              r is not None and r >= 10)
    t = sse_added(T, "sidetrace", "ttfc_us")
    check("SSE added time to first chunk p99 ≤ 1 ms", None if t is None else f"{t:.3f}",
          t is not None and t <= 1.0, " ms")
    t = sse_added(T, "sidetrace", "ttfc_us", kind="sse_b2b")
    check("  … the same with each stream's request sent as soon as the previous stream ends",
          None if t is None else f"{t:.3f}", t is not None and t <= 1.0, " ms")
    t = sse_added(T, "sidetrace", "delay_us")
    check("SSE added per-chunk delay p99 ≤ 0.2 ms", None if t is None else f"{t:.3f}",
          t is not None and t <= 0.2, " ms")
    r = ratio(sat(wa), sat(st))
    check("write-ahead throughput ≥ 50% of batched (closed loop)", pct(r), r is not None and r >= 0.5)
    idle = st.get("rss_idle_kb")
    check("RSS idle ≤ 40 MB", None if idle is None else f"{idle / 1024:.1f}", idle is not None and idle <= 40 * 1024,
          " MB")
    h = (st.get("hold") or {}).get("rss_open_kb")
    n = (st.get("hold") or {}).get("streams", 1000)
    opened = ((st.get("hold") or {}).get("client") or {}).get("open")
    check(f"RSS ≤ 200 MB with {n:,} open streams", None if h is None else f"{h / 1024:.1f} MB ({opened} open)",
          h is not None and h <= 200 * 1024 and opened == n)
    c = res.get("conversation")
    if c:
        lin = c["row_bytes_per_turn_second_half"] / max(c["row_bytes_per_turn_first_half"], 1)
        check("journal grows linearly: bytes per turn, 2nd half ÷ 1st half ≈ 1 (quadratic: ≈ 3)",
              f"{lin:.2f} ({c['row_bytes_per_turn_fit']:,.0f} B/turn for "
              f"{c['new_content_bytes_per_turn']:,.0f} B of new content)", lin < 1.2)
    return "| target | measured | |\n|---|---|---|\n" + "\n".join(rows)


def raw_tables(res):
    T = res["targets"]
    L = ["### Rate runs (oha; fixed rates latency-corrected; ms)", "",
         "The first request on each connection (it includes the TCP connect) is left out, for every target.", "",
         "| target | run | achieved req/s | p50 | p99 | p99.9 | max | errors | non-2xx | CPU µs/req |",
         "|---" * 10 + "|"]
    for n in ORDER:
        if n not in T:
            continue
        runs = [T[n]["saturated"]] if T[n].get("saturated") else []
        for r in runs + T[n].get("fixed", []) + T[n].get("search", []):
            if r.get("over_capacity"):
                L.append(f"| {NAMES[n]} | {r['label']} | skipped: over 1.5× its closed-loop throughput "
                         "| | | | | | | |")
                continue
            flag = "" if "pass" not in r else (" ✓" if r["pass"] else " ✗")
            L.append(f"| {NAMES[n]} | {r['label']}{flag} | {r['achieved_rps']:,.0f} | {r['p50_ms']:.3f} | "
                     f"{r['p99_ms']:.3f} | {r['p999_ms']:.3f} | {fmt(r['max_ms'])} | {r['errors']} | "
                     f"{r['non2xx']} | {fmt(r.get('cpu_us_per_req'))} |")
    L += ["", "### SSE (100 chunks, 2 ms apart; µs)", "",
          "TTFC: request sent → first chunk. Chunk delay: arrival − the mock's send time stamped in the chunk. "
          "Gap: between consecutive chunks. 4 connections; 20 ms between a stream's end and the next request on "
          "its connection, or none (back to back).", "",
          "| target | streams | errors | TTFC p50 | TTFC p99 | delay p50 | delay p99 | delay p99.9 | "
          "gap p50 | gap p99 | chunks/stream |", "|---" * 11 + "|"]
    for n, kind in [(n, k) for k in ("sse", "sse_b2b") for n in ORDER]:
        s = T.get(n, {}).get(kind)
        if not s:
            continue
        f = lambda d, k: fmt(d.get(k), 0) if d.get(k) is not None else "—"  # noqa: E731
        label = NAMES[n] + (" (back to back)" if kind == "sse_b2b" else "")
        L.append(f"| {label} | {s['streams']} | {s['errors']} | {f(s['ttfc_us'], 'p50')} | "
                 f"{f(s['ttfc_us'], 'p99')} | {f(s['delay_us'], 'p50')} | {f(s['delay_us'], 'p99')} | "
                 f"{f(s['delay_us'], 'p99.9')} | {f(s['gap_us'], 'p50')} | {f(s['gap_us'], 'p99')} | "
                 f"{s['chunks_min']}–{s['chunks_max']} |")
    L += ["", "### Memory (RSS; direct is the mock, nginx and LiteLLM all their processes)", ""]
    for n in ORDER:
        t = T.get(n)
        if not t:
            continue
        parts = [f"peak under load {t.get('rss_load_kb', 0) / 1024:.1f} MB"]
        if "rss_idle_kb" in t:
            parts.insert(0, f"idle {t['rss_idle_kb'] / 1024:.1f} MB")
        if t.get("hold"):
            h = t["hold"]
            parts.append(f"{h['streams']:,} open streams {fmt((h['rss_open_kb'] or 0) / 1024, 1)} MB "
                         f"(just before opening them {h['rss_before_kb'] / 1024:.1f} MB; client: {h['client']})")
        L.append(f"- {NAMES[n]}: " + "; ".join(parts))
    L += ["", "### Recording evidence", ""]
    for n in ("sidetrace", "sidetrace-wa"):
        t = T.get(n)
        if t:
            L.append(f"- {NAMES[n]}: metrics at the end {t.get('metrics')}; journal {t.get('journal_bytes', 0):,} "
                     f"bytes; exit code {t.get('exit_code')}; catch-up after each run (s) {t.get('catch_up_s')}")
    L.append(f"- OTLP sink received: {res.get('otlp_sink')}")
    c = res.get("conversation")
    if c:
        L += ["", f"### Journal growth ({c['turns']}-turn conversation, each turn resending the whole history)", ""]
        L.append(f"- new content per turn (user message + answer): {c['new_content_bytes_per_turn']:,.0f} B; "
                 f"request size at the last turn {c['request_bytes_last']:,} B; all requests together "
                 f"{c['request_bytes_total']:,} B")
        L.append(f"- journal rows (entries + blobs): {c['row_bytes_per_turn_fit']:,.0f} B per turn (least squares, "
                 f"R² {c['row_fit_r2']}); first half {c['row_bytes_per_turn_first_half']:,.0f} B/turn, second "
                 f"half {c['row_bytes_per_turn_second_half']:,.0f} B/turn")
        L.append(f"- journal file (pages in use): {c['file_bytes_per_turn_fit']:,.0f} B per turn (R² "
                 f"{c['file_fit_r2']}); {c['journal_file_bytes']:,.0f} B after {c['turns']} turns")
        L.append(f"- sidetrace CPU per turn (whole process, 10 ms clock ticks): first half "
                 f"{c.get('cpu_ms_per_turn_first_half')} ms, second half {c.get('cpu_ms_per_turn_second_half')} ms")
        L += ["", "| turn | request bytes | this turn's interaction entry | journal file bytes | entries | "
              "entry bytes | blobs | blob bytes |", "|---" * 8 + "|"]
        for r in c["rows_sampled"]:
            L.append(f"| {r['turn']} | {r['request_bytes']:,} | {r.get('interaction_entry_bytes', 0):,} | "
                     f"{r['file_bytes']:,} | {r['entries']} | {r['entry_bytes']:,} | {r['blobs']} | "
                     f"{r['blob_bytes']:,} |")
    return "\n".join(L)


def machine_md(res):
    m = res["machine"]
    return "\n".join([
        "```", m["lscpu"], f"nproc: {m['nproc']}", f"uname: {m['uname']}", m["memory"],
        f"load average at start: {m['loadavg_start']}; at end: {m.get('loadavg_end', '')}",
        "busiest processes at start (%CPU, command):", m["busy_at_start"],
        f"{m['rustc']}; {m['oha']}; {m['nginx']}; LiteLLM {m['litellm']}; sidetrace {m['sidetrace']}",
        "```",
    ])


def write_report(res, path):
    summary = render(res)
    targets = targets_table(res)
    md = [
        "# sidetrace benchmark: latest run", "",
        f"Run {res['started']}{' (--quick: short smoke run, not a result)' if res['quick'] else ''}, "
        f"{res['elapsed_s']} s. CPU placement: {res['cpu']}. Request: 1 KB chat completion, response 1 KB "
        "(non-streaming); SSE: 100 chunks 2 ms apart. Added = this target's percentile minus direct's at the "
        f"same rate. Method: docs/benchmarks.md.", "",
        "## Summary", "", summary, "", "## Targets (issue 9)", "", targets, "",
        "## Machine", "", machine_md(res), "", "## Raw numbers", "", raw_tables(res), "",
        "<details><summary>all results as JSON</summary>", "", "```json",
        json.dumps(res, indent=1, default=str), "```", "</details>", "",
    ]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(md))
    print("\n" + summary + "\n\n" + targets + "\n")
    print(f"written to {os.path.relpath(path, ROOT)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (about 3 minutes)")
    ap.add_argument("--profile", action="store_true",
                    help="instead of the benchmark: run sidetrace under perf (batched, then write-ahead) "
                         "and write bench/results/profile-*.txt (and flamegraph-*.svg with inferno)")
    ap.add_argument("--only", help="comma-separated subset: direct,nginx,sidetrace,sidetrace-wa,litellm,"
                                   "conversation")
    ap.add_argument("--skip-litellm", action="store_true")
    ap.add_argument("--skip-nginx", action="store_true")
    ap.add_argument("--skip-hold", action="store_true", help="skip the open-streams memory measurement")
    ap.add_argument("--no-pin", action="store_true", help="do not pin CPUs with taskset")
    ap.add_argument("--no-nice", action="store_true",
                    help="do not raise the priority of the benchmark's processes (nice -10, as root)")
    ap.add_argument("--out", default=os.path.join(BENCH, "results", "latest.md"))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    for exe in (SIDETRACE, MOCK, CLIENT, OHA):
        if not os.path.exists(exe):
            sys.exit(f"missing {exe}: run bench/run.sh, which builds and installs it")
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    except (ValueError, OSError):
        pass
    if os.geteuid() == 0 and not args.no_nice:
        # Inherited by everything started from here: a concurrent build disturbs the measurement less.
        os.nice(-10)
    b = Bench(args)
    try:
        res = b.run()
        if res is not None:
            raw = os.path.join(os.path.dirname(args.out), "latest.json")
            os.makedirs(os.path.dirname(raw), exist_ok=True)
            with open(raw, "w") as f:
                json.dump(res, f, indent=1, default=str)
            write_report(res, args.out)
    finally:
        PROCS.kill_all()
        if os.environ.get("BENCH_KEEP_TMP"):
            log(f"kept {b.tmp}")
        else:
            shutil.rmtree(b.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
