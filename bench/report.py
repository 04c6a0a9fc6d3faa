"""The report: one table of ratios against direct and the peer, the targets, the raw numbers."""

import json
import os

from procs import ROLES
from settings import ROOT


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
    L += cpu_by_thread(T)
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


def cpu_by_thread(T):
    """sidetrace's CPU per request split by thread, for every rate run that measured it."""
    L = ["", "### Where sidetrace's CPU goes (µs per request, by thread)", "",
         "Per-thread CPU clock ticks (`/proc/<pid>/task/*/stat`) from the start of each run until sidetrace, the "
         "mock and the sink are idle again, so the recording a run left behind is counted; divided by the "
         "requests that succeeded. The mock and the sink are not included.", "",
         "| target | run | " + " | ".join(ROLES) + " | total |", "|---" * (len(ROLES) + 3) + "|"]
    rows = 0
    for n in ("sidetrace", "sidetrace-wa"):
        t = T.get(n, {})
        runs = [t["saturated"]] if t.get("saturated") else []
        for r in runs + t.get("fixed", []):
            us = r.get("thread_us_per_req")
            if not us:
                continue
            rows += 1
            L.append(f"| {NAMES[n]} | {r['label']} | " + " | ".join(fmt(us.get(role), 1) for role in ROLES)
                     + f" | {fmt(us.get('total'), 1)} |")
    return L if rows else []


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
