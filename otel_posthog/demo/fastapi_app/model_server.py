"""A small OpenAI-compatible model server for the example: no network, no key, no model.

``POST /v1/chat/completions`` answers with a reply made from the last user message and
usage figures (one token per word); ``stream: true`` answers with server-sent chunks and,
with ``stream_options.include_usage``, a final usage chunk. ``POST /v1/embeddings``
answers with small vectors. A request can ask to be slow or to fail:

* ``X-Mock-Delay-Ms: 1200`` waits that long before answering (capped at 30 s);
* ``X-Mock-Status: 429`` (or 500, 503, ...) answers that error, as OpenAI does, with
  ``retry-after-ms: 10`` so a client's retries are quick.

Run it alone with ``python -m otel_posthog.demo.fastapi_app.model_server --port 8766`` and point
the ``openai`` client at it with ``OPENAI_BASE_URL=http://127.0.0.1:8766/v1``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MAX_DELAY_MS = 30_000
_ERRORS = {
    400: ("invalid_request_error", "The request is invalid."),
    401: ("invalid_api_key", "Incorrect API key provided."),
    429: ("rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", "The server had an error while processing your request."),
    503: ("server_error", "The engine is currently overloaded."),
}


def _tokens(text: str) -> int:
    return len(text.split())


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text")
        )
    return ""


def reply_for(messages: list[Any]) -> str:
    """The model's answer: deterministic, from the last user message."""
    last = ""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            last = _text(message.get("content"))
    return f"You said: {last.strip()}" if last.strip() else "Hello! How can I help?"


def _error(status: int) -> Response:
    code, message = _ERRORS.get(status, ("server_error", "The server had an error."))
    body = {"error": {"message": message, "type": code, "param": None, "code": code}}
    return JSONResponse(body, status, headers={"retry-after-ms": "10"})


async def _control(request: Request) -> Response | None:
    """Honour ``X-Mock-Delay-Ms`` and ``X-Mock-Status``; an error response or None."""
    try:
        delay_ms = min(max(int(request.headers.get("x-mock-delay-ms", "0")), 0), MAX_DELAY_MS)
    except ValueError:
        delay_ms = 0
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    try:
        status = int(request.headers.get("x-mock-status", "200"))
    except ValueError:
        status = 200
    return _error(status) if 400 <= status <= 599 else None


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def chat_completions(request: Request) -> Response:
    body = await _json_body(request)
    if body is None or not isinstance(body.get("messages"), list):
        return _error(400)
    failed = await _control(request)
    if failed is not None:
        return failed
    model = str(body.get("model") or "mock-chat")
    messages = body["messages"]
    reply = reply_for(messages)
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    finish = "stop"
    if isinstance(max_tokens, int) and 0 < max_tokens < _tokens(reply):
        reply, finish = " ".join(reply.split()[:max_tokens]), "length"
    prompt_tokens = sum(_tokens(_text(m.get("content"))) for m in messages if isinstance(m, dict))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": _tokens(reply),
        "total_tokens": prompt_tokens + _tokens(reply),
    }
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    served = f"{model}-2026-01-01"  # the served snapshot, as OpenAI reports it
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _chunks(
                completion_id, created, served, reply, finish, usage if include_usage else None
            ),
            media_type="text/event-stream",
        )
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": served,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": finish,
                }
            ],
            "usage": usage,
        }
    )


async def _chunks(
    completion_id: str,
    created: int,
    model: str,
    reply: str,
    finish: str,
    usage: dict[str, int] | None,
) -> AsyncIterator[bytes]:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
    words = reply.split(" ")
    for i, word in enumerate(words):
        await asyncio.sleep(0)
        piece = word if i == 0 else " " + word
        yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield chunk([{"index": 0, "delta": {}, "finish_reason": finish}])
    if usage is not None:
        yield chunk([], usage=usage)
    yield b"data: [DONE]\n\n"


async def embeddings(request: Request) -> Response:
    body = await _json_body(request)
    if body is None or "input" not in body:
        return _error(400)
    failed = await _control(request)
    if failed is not None:
        return failed
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = []
    for i, item in enumerate(inputs):
        digest = hashlib.sha256(str(item).encode()).digest()
        data.append({"object": "embedding", "index": i, "embedding": [b / 255 for b in digest[:8]]})
    tokens = sum(_tokens(str(item)) for item in inputs)
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": str(body.get("model") or "mock-embed"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


app = create_app()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="a local OpenAI-compatible model server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
