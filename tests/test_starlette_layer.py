"""The response layer of :mod:`otel_posthog.sdk.starlette_layer` on a response sent after the
request span ended, before the exporter that submits it ran (a ``BatchSpanProcessor``
holds the span: the request's state is not marked finished yet)."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from otel_posthog import PostHogASGIMiddleware
from otel_posthog.sdk.request_state import SCOPE_STATE_KEY, RequestState


def _respond(state: RequestState) -> list[tuple[bytes, bytes]]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope[SCOPE_STATE_KEY].append(state)  # as the bridge's propagator does
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    asyncio.run(PostHogASGIMiddleware(app)({"type": "http"}, receive, send))
    return sent[0]["headers"]


def test_a_500_after_the_span_ended_gets_the_request_id_before_the_export():
    span = TracerProvider().get_tracer("t").start_span("GET /boom", kind=SpanKind.SERVER)
    state = RequestState()
    state.span, state.span_id, state.trace_id = span, span.context.span_id, span.context.trace_id
    assert dict(_respond(state)) == {}  # the span runs: its own layer sets the headers
    span.end()
    assert not state.finished  # the exporter has not submitted it
    headers = dict(_respond(state))
    assert headers[b"x-request-id"] == f"{state.trace_id:032x}".encode()
    assert headers[b"traceresponse"].split(b"-")[1] == f"{state.trace_id:032x}".encode()
