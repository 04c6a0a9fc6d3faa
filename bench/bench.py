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
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from settings import API_KEY, BENCH, CLIENT, LITELLM, MOCK, MODEL, OHA, PROFILE_DIR, ROOT, SIDETRACE
from procs import (PROCS, RssSampler, free_port, http_get, log, on_signal, per_request_us, pids_of_tree, read_stat,
                   rss_kb, thread_ticks, wait_ready)
from machine import cpu_plan, machine_description, sh
from load import Oha, passes, percentile, write_payloads
from profiling import write_profile_report
from report import sat, write_report


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
        return {"proc": p, "pid": target_pid, "threads": True, "port": port, "admin": admin, "journal": journal,
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
        return sum(stat[2] for stat in map(read_stat, (f"/proc/{p}/stat" for p in set(pids))) if stat)

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
        threads0 = thread_ticks(t["pid"]) if t.get("threads") else None
        try:
            r = self.oha.run(t["url"], self.bodies, rate=rate, secs=secs, conns=conns, label=label)
        finally:
            rss = sampler.stop()
        res["rss_load_kb"] = max(res.get("rss_load_kb", 0), rss)
        if r["ok"]:
            r["cpu_us_per_req"] = round((self.cpu_ticks(t) - cpu0) / os.sysconf("SC_CLK_TCK") / r["ok"] * 1e6)
        if threads0 is not None and r["ok"]:
            # Recording finishes after the load stops (a backlog, the last batches exported): wait for it,
            # so each thread's share includes the work the run left behind.
            res["catch_up_s"].append(self.wait_quiet(name))
            r["thread_us_per_req"] = per_request_us(threads0, thread_ticks(t["pid"]), r["ok"])
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
