"""`--profile`: perf reports of sidetrace's threads and components."""

import os
import re
import subprocess

from settings import ROOT


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
