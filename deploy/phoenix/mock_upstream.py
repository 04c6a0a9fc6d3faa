#!/usr/bin/env python3
"""Minimal mock of the Anthropic Messages API for deploy/phoenix/e2e.sh (stdlib only).

Binds 127.0.0.1 on an OS-chosen port (or --port), writes the port to
--port-file once listening, and answers:

  POST /v1/messages  (non-streaming JSON Message)
      * last user message carries no tool_result -> one tool_use block
        (tool "Read", input {"file_path": "/tmp/notes.txt"}), stop_reason tool_use
      * last user message carries a tool_result  -> a text block quoting it,
        stop_reason end_turn
  anything else      -> 200 {}

Each request is appended as one JSON line to --log (if given).
"""
import argparse
import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
ARGS = None


def last_user_tool_results(messages):
    for m in reversed(messages or []):
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, list):
            return [b for b in c if isinstance(b, dict) and b.get("type") == "tool_result"]
        return []
    return []


def tool_result_text(tr):
    c = tr.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "".join(b.get("text", "") for b in c if isinstance(b, dict))
    return ""


def reply_for(body):
    trs = last_user_tool_results(body.get("messages"))
    if not trs:
        blocks = [{
            "type": "tool_use",
            "id": "toolu_" + uuid.uuid4().hex[:24],
            "name": "Read",
            "input": {"file_path": "/tmp/notes.txt"},
        }]
        stop = "tool_use"
    else:
        blocks = [{"type": "text", "text": "The file says: " + tool_result_text(trs[-1])[:200]}]
        stop = "end_turn"
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-mock"),
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 20,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while True:
                n = int(self.rfile.readline().strip().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    break
                raw += self.rfile.read(n)
                self.rfile.readline()
            return raw
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_" + uuid.uuid4().hex[:24])
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self):
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        path = self.path.split("?", 1)[0]
        if "/v1/" in path:
            path = path[path.index("/v1/"):]
        if self.command == "POST" and path == "/v1/messages":
            reply = reply_for(body if isinstance(body, dict) else {})
            kind = reply["stop_reason"]
            self._send_json(200, reply)
        else:
            kind = "default"
            self._send_json(200, {})
        if ARGS.log:
            with LOCK, open(ARGS.log, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "reply": kind}) + "\n")

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = _handle


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    ARGS = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    if ARGS.port_file:
        with open(ARGS.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(ARGS.port_file + ".tmp", ARGS.port_file)
    print("mock upstream listening on 127.0.0.1:%d" % port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
