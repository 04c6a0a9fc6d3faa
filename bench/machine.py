"""The machine: which CPUs the load generator, the mock and the proxy get, and its description."""

import os
import shutil
import subprocess

from settings import BENCH, OHA, ROOT


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
