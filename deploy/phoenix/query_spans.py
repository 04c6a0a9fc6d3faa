#!/usr/bin/env python3
"""Poll Phoenix for sidetrace's spans and assert they can be found by attribute.

Run with the Phoenix venv's python (the DSL check uses `phoenix.client`, which
`arize-phoenix` installs as a dependency). Two independent query paths are used:

  REST  GET /v1/projects/{project}/spans?attribute=KEY:VALUE   (stdlib urllib)
  DSL   phoenix.client.Client().spans.get_spans_dataframe(
            query=SpanQuery().where("enduser.id == '...'"), project_identifier=...)

Phoenix stores OTLP attributes as a nested JSON document, splitting keys on ".":
`enduser.id` is kept as {"enduser": {"id": ...}}. So in the DSL write
`enduser.id == 'x'` or `attributes['enduser']['id'] == 'x'`;
`attributes['enduser.id'] == 'x'` silently matches nothing. The REST
`attribute=` parameter takes the dotted key as is.

Asserts, for the given project:
  * filtering by enduser.id == USER finds exactly the expected spans:
    1 `invoke_agent *`, 2 `chat *`, 1 `execute_tool *`, all in one trace,
    each carrying enduser.id, vcs.change.id (and sidetrace.execution.id if given);
  * filtering by vcs.change.id == CHANGE finds the same spans;
  * filtering by enduser.id == OTHER_USER finds none;
  * both via REST and via the DSL.
Exit status 0 on success, 1 on a failed assertion or timeout.
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

EXPECTED = {"invoke_agent": 1, "chat": 2, "execute_tool": 1}


def rest_spans(base, project, key, value):
    """Spans of `project` whose attribute `key` equals the string `value`."""
    # JSON-quote the value so numeric- or boolean-looking ids stay strings.
    params = [("attribute", "%s:%s" % (key, json.dumps(value))), ("limit", "1000")]
    url = "%s/v1/projects/%s/spans?%s" % (
        base, urllib.parse.quote(project, safe=""), urllib.parse.urlencode(params))
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:  # project not created yet: nothing ingested so far
            return []
        raise
    return body["data"]


def dsl_spans(client, project, key, value):
    from phoenix.client.types.spans import SpanQuery

    cond = "%s == %s" % (key, json.dumps(value))
    df = client.spans.get_spans_dataframe(
        query=SpanQuery().where(cond), project_identifier=project, limit=1000, timeout=10)
    if df is None or len(df) == 0:
        return cond, []
    cols = set(df.columns)
    out = []
    for idx, row in df.iterrows():
        span_id = row["context.span_id"] if "context.span_id" in cols else idx
        out.append({"name": row["name"], "span_id": span_id})
    return cond, out


def op(name):
    return name.split(" ", 1)[0]


def composition(spans):
    counts = {}
    for s in spans:
        counts[op(s["name"])] = counts.get(op(s["name"]), 0) + 1
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-url", required=True, help="Phoenix web URL, e.g. http://127.0.0.1:6006")
    ap.add_argument("--project", required=True)
    ap.add_argument("--user", required=True, help="expected enduser.id")
    ap.add_argument("--change", required=True, help="expected vcs.change.id")
    ap.add_argument("--other-user", required=True, help="an enduser.id that must match nothing")
    ap.add_argument("--execution-id", help="expected sidetrace.execution.id (optional)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the spans")
    a = ap.parse_args()
    base = a.base_url.rstrip("/")
    failures = []

    def check(ok, msg):
        print(("  ok    " if ok else "  FAIL  ") + msg)
        if not ok:
            failures.append(msg)

    # 1. Poll until the four spans (root included) are queryable.
    t0 = time.monotonic()
    spans = []
    while True:
        try:
            spans = rest_spans(base, a.project, "enduser.id", a.user)
        except (urllib.error.URLError, OSError) as e:
            print("  (query failed: %s; retrying)" % e)
            spans = []
        if all(composition(spans).get(k, 0) >= n for k, n in EXPECTED.items()):
            break
        if time.monotonic() - t0 > a.timeout:
            print("FAIL: after %.0fs Phoenix project %r has %d span(s) for enduser.id=%s: %s"
                  % (a.timeout, a.project, len(spans), a.user, composition(spans)))
            return 1
        time.sleep(0.5)
    waited = time.monotonic() - t0
    time.sleep(1.0)  # let any late duplicates land before counting exactly

    # 2. REST: filter by enduser.id, by vcs.change.id, and by another user.
    print("REST  GET /v1/projects/%s/spans?attribute=..." % a.project)
    by_user = rest_spans(base, a.project, "enduser.id", a.user)
    check(composition(by_user) == EXPECTED,
          "enduser.id == %s -> %d spans %s" % (a.user, len(by_user), composition(by_user)))
    ids_user = sorted(s["context"]["span_id"] for s in by_user)
    traces = {s["context"]["trace_id"] for s in by_user}
    check(len(traces) == 1, "all in one trace (%s)" % ", ".join(sorted(traces)))
    roots = [s for s in by_user if s["parent_id"] is None]
    check(len(roots) == 1 and op(roots[0]["name"]) == "invoke_agent",
          "one root span, invoke_agent (%s)" % [r["name"] for r in roots])
    for s in by_user:
        at = s["attributes"]
        good = at.get("enduser.id") == a.user and at.get("vcs.change.id") == a.change
        if a.execution_id:
            good = good and at.get("sidetrace.execution.id") == a.execution_id
        check(good, "%-22s kind=%-7s enduser.id=%s vcs.change.id=%s sidetrace.execution.id=%s"
              % (s["name"], s.get("span_kind"), at.get("enduser.id"), at.get("vcs.change.id"),
                 at.get("sidetrace.execution.id")))

    by_change = rest_spans(base, a.project, "vcs.change.id", a.change)
    ids_change = sorted(s["context"]["span_id"] for s in by_change)
    check(ids_change == ids_user, "vcs.change.id == %s -> %d spans%s" % (
        a.change, len(by_change), ", the same ones" if ids_change == ids_user else ""))
    by_other = rest_spans(base, a.project, "enduser.id", a.other_user)
    check(by_other == [], "enduser.id == %s -> %d spans" % (a.other_user, len(by_other)))

    # 3. DSL through the Phoenix client (POST /v1/spans with a filter condition).
    print("DSL   phoenix.client spans.get_spans_dataframe(SpanQuery().where(...))")
    from phoenix.client import Client

    client = Client(base_url=base)
    for key, value, want in (("enduser.id", a.user, ids_user),
                             ("vcs.change.id", a.change, ids_user),
                             ("enduser.id", a.other_user, [])):
        cond, got = dsl_spans(client, a.project, key, value)
        got_ids = sorted(g["span_id"] for g in got)
        check(got_ids == want, "where(%s) -> %d spans%s"
              % (cond, len(got), ", the same ones" if want and got_ids == want else ""))

    print("%s: project=%s spans=%d trace=%s waited=%.1fs"
          % ("PASS" if not failures else "FAIL", a.project, len(by_user),
             next(iter(traces)) if len(traces) == 1 else "?", waited))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
