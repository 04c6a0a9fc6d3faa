#!/usr/bin/env python3
"""Run a two-turn, tool-using Anthropic Messages exchange through sidetrace (stdlib only).

Turn 1: the user asks about a file, the (mock) model answers with a tool_use.
Turn 2: the client sends the tool_result back, the model answers with text.
sidetrace turns this into `chat` x2 and `execute_tool` x1 under one `invoke_agent`.
"""
import argparse
import json
import sys
import urllib.request

TOOLS = [{
    "name": "Read",
    "description": "Read a file from the local filesystem",
    "input_schema": {"type": "object",
                     "properties": {"file_path": {"type": "string"}},
                     "required": ["file_path"]},
}]


def post(url, body, user_agent):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-e2e-not-a-real-key",
        "user-agent": user_agent,
    })
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status != 200:
            raise SystemExit("HTTP %d from %s" % (r.status, url))
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="e.g. http://127.0.0.1:PORT/anthropic/v1/messages")
    ap.add_argument("--model", default="claude-mock-e2e")
    ap.add_argument("--user-agent", default="sidetrace-e2e/1.0")
    a = ap.parse_args()

    body = {"model": a.model, "max_tokens": 256, "tools": TOOLS,
            "messages": [{"role": "user", "content": "What does /tmp/notes.txt say?"}]}
    r1 = post(a.url, body, a.user_agent)
    uses = [b for b in r1.get("content", []) if b.get("type") == "tool_use"]
    if r1.get("stop_reason") != "tool_use" or len(uses) != 1:
        raise SystemExit("turn 1: expected one tool_use, got %s" % json.dumps(r1))
    print("turn 1: %s -> tool_use %s(%s)" % (r1["id"], uses[0]["name"], json.dumps(uses[0]["input"])))

    body["messages"] += [
        {"role": "assistant", "content": r1["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0]["id"],
                                      "content": "remember the milk"}]},
    ]
    r2 = post(a.url, body, a.user_agent)
    texts = [b.get("text", "") for b in r2.get("content", []) if b.get("type") == "text"]
    if r2.get("stop_reason") != "end_turn" or not texts:
        raise SystemExit("turn 2: expected a text answer, got %s" % json.dumps(r2))
    print("turn 2: %s -> %r" % (r2["id"], texts[0]))


if __name__ == "__main__":
    sys.exit(main())
