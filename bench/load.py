"""What is sent (1 KB chat requests) and how load is generated and read (oha)."""

import json
import os
import random
import sqlite3
import subprocess
import time

from settings import API_KEY, MODEL, OHA, P99_LIMIT_MS


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
