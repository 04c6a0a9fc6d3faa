"""Drives the official Anthropic Python SDK through sidetrace for the integration tests.

Usage: anthropic_client.py MODE REQUEST_JSON
  MODE: messages | messages-stream | raw
Environment: BASE_URL (the proxy route, e.g. http://127.0.0.1:PORT/anthropic),
             EXTRA_HEADERS (optional JSON object of headers to add).
Prints one JSON object describing what the SDK saw.
"""

import base64
import json
import os
import sys

import anthropic


def main() -> None:
    mode, request_path = sys.argv[1], sys.argv[2]
    with open(request_path) as f:
        request = json.load(f)
    client = anthropic.Anthropic(
        base_url=os.environ["BASE_URL"],
        api_key="sk-ant-test-not-a-real-key-0123456789",
        max_retries=0,
        timeout=60,
        default_headers=json.loads(os.environ.get("EXTRA_HEADERS", "{}")),
    )
    try:
        out = run(client, mode, request)
    except anthropic.APIStatusError as e:
        out = {"error": {"class": type(e).__name__, "status": e.status_code, "body": e.body, "message": str(e)}}
    except anthropic.APIConnectionError as e:
        out = {"error": {"class": type(e).__name__, "message": str(e)}}
    print(json.dumps(out))


def describe(message) -> dict:
    blocks = []
    for b in message.content:
        if b.type == "text":
            blocks.append({"type": "text", "text": b.text})
        elif b.type == "tool_use":
            blocks.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
        elif b.type == "thinking":
            blocks.append({"type": "thinking", "thinking": b.thinking})
        else:
            blocks.append({"type": b.type})
    return {
        "id": message.id,
        "model": message.model,
        "stop_reason": message.stop_reason,
        "content": blocks,
        "usage": message.usage.model_dump(),
    }


def run(client: anthropic.Anthropic, mode: str, request: dict) -> dict:
    request = {k: v for k, v in request.items() if k != "stream"}
    if mode == "messages":
        return describe(client.messages.create(**request))
    if mode == "messages-stream":
        events = []
        with client.messages.stream(**request) as stream:
            for event in stream:
                events.append(event.type)
            final = stream.get_final_message()
        return {"events": events, **describe(final)}
    if mode == "raw":
        with client.messages.with_streaming_response.create(stream=True, **request) as resp:
            raw = b"".join(resp.http_response.iter_raw())
            return {
                "status": resp.status_code,
                "content_encoding": resp.headers.get("content-encoding"),
                "raw_b64": base64.b64encode(raw).decode(),
            }
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
