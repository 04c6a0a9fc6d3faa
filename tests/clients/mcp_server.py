"""MCP test server for sidetrace's MCP capture tests, built on the official SDK.

Requires the `mcp` package, version 2.x (see mcp_requirements.txt): the 2.x
server class is `mcp.server.MCPServer` (1.x's `FastMCP` is gone).

Usage:
    python mcp_server.py stdio
    python mcp_server.py http --port N [--host 127.0.0.1] [--path /mcp]
                              [--json-response] [--stateless] [--event-store] [--retry-ms MS]
    python mcp_server.py sse --port N [--host 127.0.0.1]

    http: Streamable HTTP on PATH (default /mcp).
    sse:  the older HTTP+SSE transport (protocol 2024-11-05): GET /sse opens the
          event stream, whose first event is `endpoint` naming the POST URL
          (/messages/?session_id=...); POSTs get 202 and replies arrive on the stream.

    --port 0 binds any free port. In http/sse mode, once the server is accepting
    connections, exactly ONE line goes to stdout, a JSON object naming the endpoint:
        {"url": "http://127.0.0.1:PORT/mcp"}     (http; the configured --path)
        {"url": "http://127.0.0.1:PORT/sse"}     (sse)
    Nothing else is written to stdout in those modes; logs go to stderr.

Offers:
    tool     read_file(path)   "notes.txt" -> fixed text; other paths -> isError result
    tool     slow_count(n)     n progress notifications, then "counted n"
    tool     confirm(question) asks the client elicitation/create (form mode, message =
                               question, requestedSchema {ok: boolean}), then returns
                               "confirmed: yes" / "confirmed: no" (accepted, ok true/false),
                               "declined" or "cancelled". Up to protocol 2025-11-25 that is a
                               server-to-client JSON-RPC request sent while tools/call is
                               open (stdio, http with SSE responses, sse; http with
                               --json-response or --stateless has no back-channel, so
                               tools/call gets a JSON-RPC error instead). From 2026-07-28 the
                               question rides an InputRequiredResult and the client retries
                               tools/call with inputResponses (works on every transport).
    resource file:///notes.txt (text/plain)
    prompt   review(code)      one user message "Please review:\n{code}"

Debugging escape hatch, env MCP_TEST_MISBEHAVE:
    garbage  write a non-JSON line to stdout before serving (stdio only)
    die      read_file("die") exits the process with os._exit(3)
    hang     read_file("hang") sleeps forever
    drop-sse slow_count closes its SSE response stream after the first progress
             notification (http with --event-store only; a no-op otherwise), so the
             client reconnects with GET + Last-Event-ID and the rest is replayed/streamed there
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sys
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context, Elicit, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from pydantic import BaseModel

SERVER_NAME = "sidetrace-test-server"
SERVER_VERSION = "1.0.0"
NOTES_TEXT = "The launch code is 4242-ALPHA.\n"

MISBEHAVE = os.environ.get("MCP_TEST_MISBEHAVE", "")

# log_level only affects the SDK's own Python logging (stderr), never stdout.
mcp = MCPServer(SERVER_NAME, version=SERVER_VERSION, log_level="WARNING")


@mcp.tool()
async def read_file(path: str) -> str:
    """Read a file from the (fake) workspace."""
    if path == "notes.txt":
        return NOTES_TEXT
    if MISBEHAVE == "die" and path == "die":
        os._exit(3)
    if MISBEHAVE == "hang" and path == "hang":
        await anyio.sleep_forever()
    # ToolError -> CallToolResult(isError=true, content=[text=str(exc)]), no traceback logged.
    raise ToolError(f"file not found: {path}")


@mcp.tool()
async def slow_count(n: int, ctx: Context) -> str:
    """Count to n, reporting progress once per step."""
    for i in range(1, n + 1):
        # Sent as notifications/progress only if the request carried _meta.progressToken.
        await ctx.report_progress(i, n, f"step {i}/{n}")
        if MISBEHAVE == "drop-sse" and i == 1:
            await ctx.close_sse_stream()  # no-op unless http with --event-store
        await anyio.sleep(0.01)
    return f"counted {n}"


class Confirmation(BaseModel):
    # The elicitation form: one required boolean field. (No docstring: it would become the
    # schema's "description".)
    ok: bool


def ask_confirmation(question: str) -> Elicit[Confirmation]:
    # An SDK resolver: the framework asks the client in whatever way the negotiated protocol
    # uses (see the module docstring) and injects the outcome into confirm's `answer`.
    return Elicit(question, Confirmation)


@mcp.tool()
async def confirm(
    question: str, answer: Annotated[ElicitationResult[Confirmation], Resolve(ask_confirmation)]
) -> str:
    """Ask the user to confirm something."""
    if answer.action == "accept":
        return "confirmed: yes" if answer.data.ok else "confirmed: no"
    return "declined" if answer.action == "decline" else "cancelled"


@mcp.resource("file:///notes.txt", name="notes", mime_type="text/plain")
def notes() -> str:
    """The notes file."""
    return NOTES_TEXT


@mcp.prompt()
def review(code: str) -> str:
    """Ask for a code review."""
    # A plain string becomes one user message with a text content block.
    return f"Please review:\n{code}"


class MemoryEventStore(EventStore):
    """Minimal in-memory event store: gives SSE events ids and allows Last-Event-ID replay."""

    def __init__(self) -> None:
        self._events: list[tuple[StreamId, EventId, object]] = []
        self._ids = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message) -> EventId:  # type: ignore[override]
        event_id = str(next(self._ids))
        self._events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        stream = next((s for s, e, _ in self._events if e == last_event_id), None)
        if stream is None:
            return None
        after = False
        for s, e, message in self._events:
            if after and s == stream and message is not None:
                await send_callback(EventMessage(message, e))  # type: ignore[arg-type]
            if e == last_event_id:
                after = True
        return stream


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 = any free port)."""
    family, type_, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_http(app: Any, sock: socket.socket, url: str) -> None:
    """Serve app on the already-listening sock; print {"url": url} once uvicorn is accepting."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        # uvicorn's access log handler writes to stdout; stdout carries only the URL line.
        access_log=False,
        # Don't let open SSE streams hold up shutdown on SIGTERM/SIGINT.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)

    async def announce() -> None:
        # started is set after the lifespan (Streamable HTTP session manager) is up and
        # the socket is handed to the event loop; should_exit means startup failed.
        while not server.started and not server.should_exit:
            await anyio.sleep(0.005)
        if server.started:
            sys.stdout.write(json.dumps({"url": url}) + "\n")
            sys.stdout.flush()

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="transport", required=True)
    sub.add_parser("stdio", help="serve newline-delimited JSON-RPC on stdin/stdout")
    http = sub.add_parser("http", help="serve Streamable HTTP")
    http.add_argument("--host", default="127.0.0.1")
    http.add_argument("--port", type=int, required=True, help="TCP port, 0 = any free port")
    http.add_argument("--path", default="/mcp", help="endpoint path (default /mcp)")
    http.add_argument(
        "--json-response", action="store_true", help="answer POSTs with application/json instead of SSE"
    )
    http.add_argument("--stateless", action="store_true", help="no Mcp-Session-Id, no GET stream")
    http.add_argument(
        "--event-store", action="store_true", help="in-memory event store: SSE ids, priming events, Last-Event-ID"
    )
    http.add_argument("--retry-ms", type=int, default=None, help="SSE retry interval sent in priming events")
    sse = sub.add_parser("sse", help="serve the older HTTP+SSE transport (GET /sse, POST /messages/)")
    sse.add_argument("--host", default="127.0.0.1")
    sse.add_argument("--port", type=int, required=True, help="TCP port, 0 = any free port")
    args = parser.parse_args()

    if args.transport == "stdio":
        if MISBEHAVE == "garbage":
            # Raw write on fd 1 before the SDK claims stdout.
            os.write(1, b"this is not json-rpc\n")
        mcp.run("stdio")
        return

    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    # host= also drives the SDK's DNS-rebinding protection: for 127.0.0.1/localhost/::1 it
    # allows Host 127.0.0.1:*, localhost:*, [::1]:* (and matching Origins), as mcp.run() did.
    if args.transport == "http":
        app = mcp.streamable_http_app(
            streamable_http_path=args.path,
            json_response=args.json_response,
            stateless_http=args.stateless,
            event_store=MemoryEventStore() if args.event_store else None,
            retry_interval=args.retry_ms,
            host=args.host,
        )
        url = f"http://{host}:{port}{args.path}"
        detail = f" json_response={args.json_response} stateless={args.stateless} event_store={args.event_store}"
    else:
        app = mcp.sse_app(sse_path="/sse", message_path="/messages/", host=args.host)
        url = f"http://{host}:{port}/sse"
        detail = " (HTTP+SSE, POST /messages/)"
    print(f"mcp_server: serving {args.transport} on {url}{detail}", file=sys.stderr, flush=True)
    anyio.run(serve_http, app, sock, url)


if __name__ == "__main__":
    main()
