"""The receiver's Starlette app: ``POST /v1/traces`` answers per the OTLP/HTTP spec.

200 with an ``ExportTraceServiceResponse`` in the request's content type (with
``partial_success`` when spans were rejected), 400 undecodable or nested too deep, 401 bad
token, 413 too large or too many spans/items (:mod:`.limits`), 415 unsupported type or
encoding, 429 with ``Retry-After`` when the outgoing queue is full or every decode slot is
busy (the collector retries; we never drop what we accepted), 503 while shutting down.
Bad input never gets a 500: collectors drop data on a 500 without retrying.

A body is counted on the wire before it becomes objects, and at most
``Limits.concurrent_decodes`` bodies are decoded at once, so memory stays bounded whatever
is sent. Decoding runs in a thread and returns a plain outcome, never an exception: an
exception's traceback would keep the decoded body alive until the garbage collector runs.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.genai import link_batch
from ..core.headers import bearer_token
from ..core.mapping import Event, map_span
from ..core.settings import Settings
from ..counters import STATS
from ..delivery.before_send import apply_before_send
from ..delivery.sender import EventSender
from .body import BodyError, decode_content, read_body
from .decode import Decoded, DecodeError, decode_json, decode_protobuf
from .limits import Limits

log = logging.getLogger("otel_posthog.receiver")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY_BYTES = 16 * 1024 * 1024  # on the wire
MAX_DECODED_BYTES = 64 * 1024 * 1024  # after gzip
RETRY_AFTER_S = 2
# google.rpc.Code values for the error body.
_INVALID_ARGUMENT, _RESOURCE_EXHAUSTED, _UNAVAILABLE, _UNAUTHENTICATED = 3, 8, 14, 16


class ReceiverSender(EventSender):
    """The delivery sender, plus how many more events its queue takes (backpressure).

    With ``OTEL_POSTHOG_SPOOL_DIR`` failed batches go to the on-disk spool, as in-process.
    """

    def __init__(self, settings: Settings) -> None:
        spool = None
        if settings.spool_dir:
            from ..delivery.spool import open_spool

            spool = open_spool(settings, required=True)  # the receiver's start fails
        super().__init__(settings, _already_events, spool=spool)

    def room(self) -> int:
        return self.settings.max_queue_size - len(self._queue)

    @property
    def stopped(self) -> bool:
        return self._stopped


def _already_events(item: Any) -> list[Event]:
    return list(item)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _status_body(code: int, message: str, protobuf: bool) -> bytes:
    """A ``google.rpc.Status`` (code, message), encoded by hand to need no extra package."""
    if not protobuf:
        return json.dumps({"code": code, "message": message}).encode()
    msg = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg


def _error(status: int, code: int, message: str, protobuf: bool, **headers: str) -> Response:
    return Response(
        _status_body(code, message, protobuf),
        status,
        headers=headers or None,
        media_type=PROTOBUF if protobuf else JSON,
    )


@dataclass
class _Outcome:
    """What decoding one body gave: events and counts, or an HTTP status and a reason."""

    status: int = 200
    message: str = ""
    events: list[Event] = field(default_factory=list)
    spans: int = 0
    rejected: int = 0


def _decode_and_map(
    body: bytes, encoding: str, protobuf: bool, max_decoded: int, limits: Limits, s: Settings
) -> _Outcome:
    """Inflate, count, decode and map one body (on a worker thread); never raises."""
    try:
        raw = decode_content(body, encoding, max_decoded)
        decoded = (decode_protobuf if protobuf else decode_json)(raw, limits)
        del raw
        events = _map(decoded, s)
        return _Outcome(200, decoded.first_error, events, len(decoded.views), decoded.rejected)
    except BodyError as exc:
        return _Outcome(exc.status, exc.message)
    except DecodeError as exc:
        return _Outcome(exc.status, str(exc))
    except MemoryError:
        return _Outcome(413, "request too large to decode")
    except Exception as exc:  # never a 500 for any input
        STATS.error("receiver.decode", exc)
        return _Outcome(400, f"cannot decode the request: {exc.__class__.__name__}")


def _success(outcome: _Outcome, protobuf: bool) -> Response:
    if protobuf:
        response = ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(
                    rejected_spans=outcome.rejected, error_message=outcome.message
                )
            )
        return Response(response.SerializeToString(), 200, media_type=PROTOBUF)
    body: dict[str, Any] = {}
    if outcome.rejected:
        body["partialSuccess"] = {
            "rejectedSpans": str(outcome.rejected),
            "errorMessage": outcome.message,
        }
    return JSONResponse(body, 200)


def _map(decoded: Decoded, settings: Settings) -> list[Event]:
    """The in-process bridge's mapping core, span by span; a span it chokes on is rejected."""
    events: list[Event] = []
    if settings.ai_events:
        try:
            link_batch(decoded.views)  # GenAI spans: their request, parent and HTTP child
        except Exception as exc:  # mapped from their own attributes then
            STATS.error("receiver.link_batch", exc)
    for view in decoded.views:
        try:
            events.extend(map_span(view, settings))
        except Exception as exc:  # never a 500 for one odd span
            STATS.error("receiver.map", exc)
            decoded.reject(f"span could not be mapped: {exc.__class__.__name__}")
    return apply_before_send(events, settings)


def _authorized(request: Request, token: str | None) -> bool:
    """A constant-time comparison of bytes (headers arrive as latin-1: any byte compares)."""
    if not token:
        return True
    given = bearer_token(request.headers.get("authorization"))
    return given is not None and hmac.compare_digest(
        given.encode("latin-1", "replace"), token.encode("utf-8")
    )


def create_app(
    settings: Settings,
    sender: ReceiverSender | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
    limits: Limits | None = None,
) -> Starlette:
    """The receiver app; ``app.state.sender`` is its sender (flushed at lifespan shutdown)."""
    out = sender if sender is not None else ReceiverSender(settings)
    token = settings.receiver_token
    limits = limits or Limits()
    slots = asyncio.Semaphore(limits.concurrent_decodes)
    counts = dict.fromkeys(
        ("requests", "spans", "rejected_spans", "events", "throttled", "refused", "busy"), 0
    )

    async def decode(body: bytes, encoding: str, protobuf: bool) -> _Outcome:
        try:
            await asyncio.wait_for(slots.acquire(), limits.decode_wait_s)
        except asyncio.TimeoutError:
            counts["busy"] += 1
            return _Outcome(429, "every decode slot is busy")
        try:  # the thread is not cancellable: the slot is held until it is done
            return await run_in_threadpool(
                _decode_and_map, body, encoding, protobuf, max_decoded_bytes, limits, settings
            )
        finally:
            slots.release()

    async def traces(request: Request) -> Response:
        try:
            return await handle(request)
        except Exception as exc:  # never a 500 for any input
            STATS.error("receiver.request", exc)
            return _error(400, _INVALID_ARGUMENT, "cannot read the request", False)

    async def handle(request: Request) -> Response:
        counts["requests"] += 1
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        protobuf = media == PROTOBUF
        if not _authorized(request, token):
            return _error(
                401,
                _UNAUTHENTICATED,
                "missing or wrong bearer token",
                protobuf,
                **{"WWW-Authenticate": "Bearer"},
            )
        if media not in (PROTOBUF, JSON):
            return _error(415, _INVALID_ARGUMENT, f"use {PROTOBUF} or {JSON}", False)
        try:
            body = await read_body(request, max_body_bytes)
        except BodyError as exc:
            return _error(exc.status, _INVALID_ARGUMENT, exc.message, protobuf)
        outcome = await decode(body, request.headers.get("content-encoding", ""), protobuf)
        del body
        if outcome.status == 429:
            return _error(429, _RESOURCE_EXHAUSTED, outcome.message, protobuf, **_retry())
        if outcome.status != 200:
            counts["refused"] += 1
            return _error(outcome.status, _INVALID_ARGUMENT, outcome.message, protobuf)
        events = outcome.events
        if out.stopped:
            return _error(503, _UNAVAILABLE, "shutting down", protobuf, **_retry())
        if len(events) > settings.max_queue_size:
            message = "more events than OTEL_POSTHOG_MAX_QUEUE_SIZE: send smaller batches"
            return _error(413, _INVALID_ARGUMENT, message, protobuf)
        if out.room() < len(events):
            counts["throttled"] += 1
            return _error(429, _RESOURCE_EXHAUSTED, "outgoing queue full", protobuf, **_retry())
        counts["spans"] += outcome.spans
        counts["rejected_spans"] += outcome.rejected
        counts["events"] += len(events)
        for event in events:  # one queue slot per event; the check above holds (one loop)
            out.submit("events", [event])
        return _success(outcome, protobuf)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "queue_room": out.room(), **counts})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(out.shutdown, settings.shutdown_timeout_ms / 1000)

    app = Starlette(
        routes=[
            Route("/v1/traces", traces, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.sender = out
    app.state.counts = counts
    app.state.settings = settings
    return app


def _retry() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_S)}
