"""A Responses API WebSocket endpoint for the integration tests (the far end).

Usage: responses_ws_server.py SSE_FIXTURE [--tls-cert PEM --tls-key PEM]

Serves /v1/responses over WebSocket on 127.0.0.1, any free port, with the
`websockets` library (permessage-deflate on, as the real endpoint offers).
Each `response.create` the client sends is answered with the events of the
golden SSE fixture, one JSON text message per event, in order, as the
documented WebSocket mode does. Prints {"url": ...} once listening, then
serves until killed. Anything else than /v1/responses gets a 404.
"""

import argparse
import asyncio
import json
import ssl
import sys
from http import HTTPStatus

from websockets.asyncio.server import serve


def events_of(path: str) -> list[str]:
    events = []
    with open(path) as f:
        for line in f:
            if line.startswith("data: "):
                events.append(line[len("data: "):].rstrip("\n"))
    return events


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("fixture")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    events = events_of(args.fixture)

    async def answer(ws):
        async for message in ws:
            request = json.loads(message)
            if request.get("type") != "response.create":
                await ws.send(json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": "expected response.create"}}))
                continue
            for event in events:
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
