"""A Responses API WebSocket endpoint for the integration tests (the far end).

Usage: responses_ws_server.py (SSE_FIXTURE | --agent MODEL) [--tls-cert PEM --tls-key PEM]

Serves /v1/responses over WebSocket on 127.0.0.1, any free port, with the
`websockets` library (permessage-deflate on, as the real endpoint offers).
Each `response.create` the client sends is answered with the events of the
golden SSE fixture, one JSON text message per event, in order, as the
documented WebSocket mode does. With --agent, it plays a model for a coding
agent instead: a request whose input ends with a function call's output gets
a message quoting it; any other a `exec_command` call running `cat notes.txt`
(a request with `generate: false`, a warm-up, gets an empty completed
response). Prints {"url": ...} once listening, then serves until killed.
Anything else than /v1/responses gets a 404.
"""

import argparse
import asyncio
import json
import ssl
import sys
from http import HTTPStatus

from websockets.asyncio.server import serve


def scripted(request: dict, model: str, turn: int) -> list[str]:
    """One output item as the Responses stream events that produce it."""
    rid = f"resp_ws_scripted{turn:04}"
    seq = 0
    events = []

    def ev(kind: str, data: dict) -> None:
        nonlocal seq
        events.append(json.dumps(dict(data, type=kind, sequence_number=seq)))
        seq += 1

    def response(status: str, output: list, usage=None) -> dict:
        return {"id": rid, "object": "response", "created_at": 1774092570, "status": status, "model": model,
                "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "usage": usage}

    ev("response.created", {"response": response("in_progress", [])})
    if request.get("generate") is False:
        ev("response.completed", {"response": response("completed", [])})
        return events
    ev("response.in_progress", {"response": response("in_progress", [])})
    last = (request.get("input") or [{}])[-1]
    if last.get("type") == "function_call_output":
        output = last.get("output")
        output = output if isinstance(output, str) else json.dumps(output)
        line = next((l for l in output.splitlines() if "4242" in l), "nothing")
        text = f"The command printed: {line}"
        item = {"id": f"msg_ws_scripted{turn:04}", "type": "message", "role": "assistant",
                "content": [{"type": "output_text", "annotations": [], "text": text}]}
        ev("response.output_item.added", {"output_index": 0, "item": dict(item, status="in_progress", content=[])})
        ev("response.content_part.added", {"item_id": item["id"], "output_index": 0, "content_index": 0,
                                           "part": {"type": "output_text", "annotations": [], "text": ""}})
        for word in text.split(" "):
            ev("response.output_text.delta", {"item_id": item["id"], "output_index": 0, "content_index": 0, "delta": word + " "})
        ev("response.output_text.done", {"item_id": item["id"], "output_index": 0, "content_index": 0, "text": text})
        ev("response.content_part.done", {"item_id": item["id"], "output_index": 0, "content_index": 0, "part": item["content"][0]})
    else:
        args = json.dumps({"cmd": "cat notes.txt"}, separators=(",", ":"))
        item = {"id": f"fc_ws_scripted{turn:04}", "type": "function_call", "call_id": "call_WsScriptedCat0001",
                "name": "exec_command", "arguments": args}
        ev("response.output_item.added", {"output_index": 0, "item": dict(item, status="in_progress", arguments="")})
        ev("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": 0, "delta": args})
        ev("response.function_call_arguments.done", {"item_id": item["id"], "output_index": 0, "arguments": args})
    done = dict(item, status="completed")
    ev("response.output_item.done", {"output_index": 0, "item": done})
    usage = {"input_tokens": 2100, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 37,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2137}
    ev("response.completed", {"response": response("completed", [done], usage)})
    return events


def events_of(path: str) -> list[str]:
    events = []
    with open(path) as f:
        for line in f:
            if line.startswith("data: "):
                events.append(line[len("data: "):].rstrip("\n"))
    return events


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("fixture", nargs="?")
    parser.add_argument("--agent", metavar="MODEL")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    events = events_of(args.fixture) if args.fixture else None
    turns = 0

    async def answer(ws):
        nonlocal turns
        async for message in ws:
            request = json.loads(message)
            print(f"responses_ws_server: {request.get('type')} {sorted(request)}", file=sys.stderr, flush=True)
            if request.get("type") != "response.create":
                await ws.send(json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": "expected response.create"}}))
                continue
            turns += 1
            for event in events if events is not None else scripted(request, args.agent, turns):
                await ws.send(event)

    def only_responses(connection, request):
        if request.path.split("?")[0] != "/v1/responses":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        return None

    tls = None
    scheme = "ws"
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        scheme = "wss"
    async with serve(answer, "127.0.0.1", 0, ssl=tls, process_request=only_responses, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"url": f"{scheme}://127.0.0.1:{port}"}), flush=True)
        print(f"responses_ws_server: serving on port {port}", file=sys.stderr, flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
