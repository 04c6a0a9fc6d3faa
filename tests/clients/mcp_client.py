"""MCP test client for sidetrace's MCP capture tests, built on the official SDK.

Requires the `mcp` package, version 2.x (see mcp_requirements.txt).

Usage:
    python mcp_client.py [options] stdio -- <command> [args...]
    python mcp_client.py [options] http URL
    python mcp_client.py [options] sse URL      (older HTTP+SSE transport; URL of the GET /sse stream)

Options (before the transport word):
    --timeout SECONDS   limit for every step, connect included (default 30)
    --mode MODE         legacy (default): initialize handshake, the pre-2026 protocol;
                        auto: the SDK's own default - probe server/discover, fall back to initialize;
                        2026-07-28: adopt the modern per-request protocol without a probe
    --read-path PATH    connect, then only call read_file(PATH) (for MCP_TEST_MISBEHAVE die/hang)
    --confirm           after the script, call confirm(question="Deploy?"); the server asks
                        back with elicitation/create, which the client's elicitation
                        callback accepts with {"ok": true}. Adds "confirm": {"result",
                        "is_error", "error", "asked", "mode", "schema", "requests"} to the
                        output: the tool's text and isError (or the JSON-RPC error "CODE:
                        message" answering tools/call), the elicitation's message, mode and
                        requestedSchema as the callback saw them (null if none arrived) and
                        how many arrived. Exit 1 unless the call succeeded after exactly
                        one elicitation. With the flag the client also declares the
                        elicitation capability at initialize (without it, none, as before).
                        Legacy mode: the question is a server-to-client request mid-call;
                        2026-07-28: it rides an InputRequiredResult and tools/call is retried.

Runs a fixed script (initialize, tools/list, read_file notes.txt, read_file
missing.txt, slow_count n=3 with progress, resources/read file:///notes.txt,
prompts/get review) and prints ONE JSON object on stdout. Exit code 0 when the
whole script succeeded, 1 otherwise (the JSON then has "ok": false and "error").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp import types as mcp_types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

NOTES_URI = "file:///notes.txt"


def _texts(content: list[Any]) -> str:
    return "".join(getattr(block, "text", "") for block in content)


def _tool_result(result: Any) -> dict[str, Any]:
    return {
        "text": _texts(result.content),
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
    }


class HttpLog:
    """httpx2 event hooks: records each HTTP exchange the SDK transport makes."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []
        self.session_ids: list[str] = []

    async def on_response(self, response: httpx2.Response) -> None:
        req = response.request
        sid = response.headers.get("mcp-session-id")
        if sid and sid not in self.session_ids:
            self.session_ids.append(sid)
        self.exchanges.append(
            {
                "method": req.method,
                "path": req.url.path,
                "query": req.url.query.decode() if isinstance(req.url.query, bytes) else str(req.url.query),
                "status": response.status_code,
                "content_type": response.headers.get("content-type"),
                "request_session_id": req.headers.get("mcp-session-id"),
                "request_protocol_version": req.headers.get("mcp-protocol-version"),
            }
        )


async def run(args: argparse.Namespace, out: dict[str, Any]) -> None:
    timeout = args.timeout
    http_log: HttpLog | None = None
    http_client: httpx2.AsyncClient | None = None

    if args.transport == "stdio":
        command = list(args.command)
        if command and command[0] == "--":
            command = command[1:]
        if not command:
            raise SystemExit("stdio needs a server command after --")
        out["server_command"] = command
        # env=None -> the SDK passes only a safe subset (HOME, PATH, ...); pass ours through
        # so MCP_TEST_MISBEHAVE, SIDETRACE_* etc. reach the (wrapped) server.
        server: Any = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    elif args.transport == "sse":
        out["url"] = args.url
        http_log = HttpLog()
        sse_session_ids: list[str] = []
        out["sse_session_ids"] = sse_session_ids

        # sse_client builds (and closes) its own httpx2 client through this factory: the
        # SDK's create_mcp_http_client plus the response hook. The timeouts passed below
        # (30s, 300s read) match the http transport's; sse_client's own default is 5s.
        def client_factory(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = None,
            auth: httpx2.Auth | None = None,
        ) -> httpx2.AsyncClient:
            kwargs: dict[str, Any] = {
                "timeout": timeout or httpx2.Timeout(30.0, read=300.0),
                "event_hooks": {"response": [http_log.on_response]},
            }
            if headers is not None:
                kwargs["headers"] = headers
            if auth is not None:
                kwargs["auth"] = auth
            return httpx2.AsyncClient(**kwargs)

        # The session id of this transport is the session_id query parameter of the
        # `endpoint` event's POST URL, not an Mcp-Session-Id header.
        server = sse_client(
            args.url,
            timeout=30.0,
            sse_read_timeout=300.0,
            httpx_client_factory=client_factory,
            on_session_created=sse_session_ids.append,
        )
    else:
        out["url"] = args.url
        http_log = HttpLog()
        # The SDK's default client settings (30s, 300s read for SSE streams; its factory
        # mcp.shared._httpx_utils.create_mcp_http_client is private) plus a response hook.
        http_client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(30.0, read=300.0), event_hooks={"response": [http_log.on_response]}
        )
        # terminate_on_close=True is the SDK default: DELETE on exit when a session id exists.
        server = streamable_http_client(args.url, http_client=http_client, terminate_on_close=True)

    notifications: list[str] = []
    transport_errors: list[str] = []
    out["notifications"] = notifications
    out["transport_errors"] = transport_errors

    async def on_message(message: Any) -> None:
        # Server notifications (progress included) and transport-level errors such as an
        # unparseable stdout line; the SDK logs those and carries on.
        if isinstance(message, Exception):
            transport_errors.append(f"{type(message).__name__}: {str(message).splitlines()[0] if str(message) else ''}")
        else:
            notifications.append(getattr(getattr(message, "root", message), "method", type(message).__name__))

    asked: list[dict[str, Any]] = []

    async def on_elicit(context: Any, params: Any) -> mcp_types.ElicitResult:
        # Deterministic answer for --confirm: always accept with ok=true.
        asked.append(
            {
                "message": params.message,
                "mode": getattr(params, "mode", None),
                "schema": getattr(params, "requested_schema", None),
            }
        )
        return mcp_types.ElicitResult(action="accept", content={"ok": True})

    # Only pass the callback with --confirm: it changes the capabilities sent at initialize.
    extra: dict[str, Any] = {"elicitation_callback": on_elicit} if args.confirm else {}
    client = Client(server, mode=args.mode, read_timeout_seconds=timeout, message_handler=on_message, **extra)
    try:
        # anyio cancel scopes must nest properly around the client's task groups, so the
        # connect and shutdown deadlines live on one scope outside `async with client`.
        with anyio.CancelScope() as guard:
            guard.deadline = anyio.current_time() + timeout
            phase = "connect"
            out["step"] = "connect"
            async with client:
                guard.deadline = math.inf
                try:
                    info = client.server_info
                    init_result = client.session.initialize_result
                    out["handshake"] = "initialize" if init_result is not None else "discover"
                    out["initialize"] = {
                        "server_name": info.name if info else None,
                        "server_version": info.version if info else None,
                        "protocol_version": client.protocol_version,
                        "capabilities": sorted(client.server_capabilities.model_dump(exclude_none=True)),
                    }
                    if args.read_path is not None:
                        out["step"] = "read_path"
                        with anyio.fail_after(timeout):
                            r = await client.call_tool("read_file", {"path": args.read_path})
                        out["read_path"] = {"path": args.read_path, **_tool_result(r)}
                    else:
                        await script(client, timeout, out)
                    if args.confirm:
                        await confirm(client, timeout, out, asked)
                    out["step"] = "done"
                finally:
                    phase = "shutdown"
                    guard.deadline = anyio.current_time() + timeout
        if guard.cancelled_caught:
            raise TimeoutError(f"{phase} did not finish within {timeout}s")
    finally:
        if http_client is not None:
            await http_client.aclose()
        if http_log is not None:
            if args.transport == "sse":
                out["session_id"] = out["sse_session_ids"][0] if out["sse_session_ids"] else None
            else:
                out["session_id"] = http_log.session_ids[0] if http_log.session_ids else None
            out["http"] = http_log.exchanges
            out["delete_sent"] = any(x["method"] == "DELETE" for x in http_log.exchanges)


async def script(client: Client, timeout: float, out: dict[str, Any]) -> None:
    out["step"] = "tools/list"
    with anyio.fail_after(timeout):
        tools = await client.list_tools()
    out["tools"] = [t.name for t in tools.tools]

    out["step"] = "read_file notes.txt"
    with anyio.fail_after(timeout):
        r = await client.call_tool("read_file", {"path": "notes.txt"})
    out["read_file"] = _tool_result(r)

    out["step"] = "read_file missing.txt"
    with anyio.fail_after(timeout):
        r = await client.call_tool("read_file", {"path": "missing.txt"})
    out["read_file_missing"] = _tool_result(r)

    progress: list[dict[str, Any]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": value, "total": total, "message": message})

    out["step"] = "slow_count"
    with anyio.fail_after(timeout):
        r = await client.call_tool("slow_count", {"n": 3}, progress_callback=on_progress)
    out["slow_count"] = {**_tool_result(r), "progress": [p["progress"] for p in progress], "progress_events": progress}

    out["step"] = "resources/read"
    with anyio.fail_after(timeout):
        res = await client.read_resource(NOTES_URI)
    contents = res.contents
    out["resource"] = {
        "uri": str(contents[0].uri) if contents else None,
        "mime_type": contents[0].mime_type if contents else None,
        "text": "".join(getattr(c, "text", "") for c in contents),
    }

    out["step"] = "prompts/get"
    with anyio.fail_after(timeout):
        p = await client.get_prompt("review", {"code": "x=1"})
    out["prompt"] = {
        "messages": [{"role": m.role, "text": getattr(m.content, "text", None)} for m in p.messages],
    }


async def confirm(client: Client, timeout: float, out: dict[str, Any], asked: list[dict[str, Any]]) -> None:
    out["step"] = "confirm"
    result: dict[str, Any] = {"result": None, "is_error": None, "error": None}
    out["confirm"] = result
    try:
        with anyio.fail_after(timeout):
            r = await client.call_tool("confirm", {"question": "Deploy?"})
        result["result"] = _texts(r.content)
        result["is_error"] = bool(r.is_error)
    except MCPError as exc:  # a JSON-RPC error answering tools/call (e.g. no back-channel)
        result["error"] = f"{exc.error.code}: {exc.error.message}"
    first = asked[0] if asked else {}
    result.update(
        asked=first.get("message"), mode=first.get("mode"), schema=first.get("schema"), requests=len(asked)
    )
    if result["error"] or result["is_error"] or len(asked) != 1:
        raise RuntimeError(f"confirm failed: {json.dumps(result)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--mode", default="legacy", help="legacy | auto | 2026-07-28 (default legacy)")
    parser.add_argument("--read-path", default=None)
    parser.add_argument("--confirm", action="store_true", help='call confirm("Deploy?"), answering its elicitation')
    sub = parser.add_subparsers(dest="transport", required=True)
    stdio = sub.add_parser("stdio")
    stdio.add_argument("command", nargs=argparse.REMAINDER)
    http = sub.add_parser("http")
    http.add_argument("url")
    sse = sub.add_parser("sse")
    sse.add_argument("url")
    args = parser.parse_args()

    out: dict[str, Any] = {"transport": args.transport, "mode": args.mode}
    ok = True
    try:
        anyio.run(run, args, out)
    except BaseException as exc:  # noqa: BLE001 - report everything as JSON
        if isinstance(exc, SystemExit) and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
            return 2
        ok = False
        # Unwrap anyio/asyncio exception groups to the first leaf.
        leaf: BaseException = exc
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        detail = str(leaf) or (
            f"step {out.get('step')!r} did not finish within {args.timeout}s" if isinstance(leaf, TimeoutError) else ""
        )
        out["error"] = f"{type(leaf).__name__}: {detail}"
        traceback.print_exception(leaf, file=sys.stderr)
    out["ok"] = ok
    print(json.dumps(out))
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
