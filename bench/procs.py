"""Processes the benchmark starts: own process groups, killed on exit however it exits; readiness, RSS."""

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


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


def read_stat(path):
    """(comm, parent pid, CPU clock ticks user + system) from a /proc/<pid>[/task/<tid>]/stat file, or None
    if it is gone. comm sits between the first "(" and the last ")" and may hold spaces or parentheses."""
    try:
        with open(path) as f:
            stat = f.read()
        fields = stat.rsplit(")", 1)[1].split()
        return stat[stat.index("(") + 1:stat.rindex(")")], int(fields[1]), int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def pids_of_tree(pid):
    """pid and its descendants (via /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        stat = read_stat(f"/proc/{d}/stat")
        if stat:
            children.setdefault(stat[1], []).append(int(d))
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


# sidetrace's threads by name (as /proc shows them: at most 15 characters), most specific first.
THREAD_ROLES = [
    ("sidetrace-recor", "recording pool"),
    ("journal-writer", "journal writer"),
    ("journal-wal", "WAL copier"),
    ("sidetrace-expor", "exporter"),
    ("sidetrace", "forwarding"),
]
ROLES = ["forwarding", "recording pool", "journal writer", "WAL copier", "exporter", "other"]


def thread_ticks(pid):
    """CPU clock ticks (user + system) of each of a process's threads, summed by role; threads that ended
    are gone from /proc, so compare only snapshots of a process whose threads live as long as it does."""
    out = dict.fromkeys(ROLES, 0)
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        stat = read_stat(f"/proc/{pid}/task/{tid}/stat")
        if stat:
            comm, _, ticks = stat
            out[next((r for prefix, r in THREAD_ROLES if comm.startswith(prefix)), "other")] += ticks
    return out


def per_request_us(before, after, requests):
    """µs of CPU per request for each role between two `thread_ticks` snapshots, and their total."""
    hz = os.sysconf("SC_CLK_TCK")
    us = {role: round((after[role] - before[role]) / hz / requests * 1e6, 1) for role in ROLES}
    us["total"] = round(sum(us[role] for role in ROLES), 1)
    return us


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
