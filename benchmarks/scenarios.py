"""The six benchmark scenarios: one trivial FastAPI route, instrumented six ways.

Each builder returns a :class:`Scenario` (the ASGI app, a ``flush`` that delivers
everything the scenario's exporters hold, a ``shutdown`` and a counter of the spans the
no-op exporter got). Every scenario is built in a fresh process (``benchmarks.worker``),
so the global OpenTelemetry and posthog state of one never leaks into another.

With ``size_batching`` (the in-process and callgrind runs) every exporter flushes by
batch size only (time-based flushing pushed out to 60 s): under load batches fill by
size anyway, and under callgrind (~50x slower) timers would otherwise fire after every
few requests and make each scenario post tiny batches.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

SCENARIOS: dict[str, str] = {
    "1": "bare FastAPI",
    "2": "FastAPI + OTel (BatchSpanProcessor, no-op exporter)",
    "3": "2 + OTLP/HTTP exporter to a local recorder",
    "4": "2 + otel-posthog to the local sink",
    "5": "2 + middleware calling posthog.capture",
    "6": "PosthogASGIMiddleware + capture, no OTel",
}
ROUTE = "/api/items/{item_id}"
SERVICE = "bench-api"
_LONG_S = 60.0


@dataclass
class Targets:
    """Where the scenario's exporters send (the servers process's addresses)."""

    sink_url: str = "http://127.0.0.1:9"
    api_key: str = "phc_bench"
    recorder_url: str = "http://127.0.0.1:9"


@dataclass
class Scenario:
    app: Any
    flush: Callable[[], None] = lambda: None
    shutdown: Callable[[], None] = lambda: None
    exported: list[int] = field(default_factory=lambda: [0])  # spans the no-op exporter got
    stats: Callable[[], dict[str, Any]] = dict


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get(ROUTE)
    async def get_item(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "name": "widget"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _otel_base(size_batching: bool) -> tuple[Any, list[int]]:
    """Scenario 2's provider: a BatchSpanProcessor with a no-op (counting) exporter."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    exported = [0]

    class NoopExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            exported[0] += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider(
        resource=Resource.create({"service.name": SERVICE, "deployment.environment.name": "bench"})
    )
    provider.add_span_processor(BatchSpanProcessor(NoopExporter(), **_bsp_args(size_batching)))
    return provider, exported


def _bsp_args(size_batching: bool) -> dict[str, Any]:
    return {"schedule_delay_millis": _LONG_S * 1000} if size_batching else {}


def _instrument(app: FastAPI, provider: Any) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["send", "receive"]
    )


class CaptureMiddleware:
    """What users write today: a pure-ASGI middleware calling ``posthog.capture``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import posthog

        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            headers = dict(scope.get("headers") or ())
            person = headers.get(b"x-posthog-distinct-id", b"").decode("latin-1")
            session = headers.get(b"x-posthog-session-id", b"").decode("latin-1")
            route = scope.get("route")
            props: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "endpoint": getattr(route, "path", None),
                "status_code": status[0],
                "response_time_ms": round((time.perf_counter() - start) * 1000, 3),
                "request_id": str(uuid.uuid4()),
            }
            if session:
                props["$session_id"] = session
            posthog.capture("api_request", distinct_id=person or None, properties=props)


def _posthog_client(targets: Targets, size_batching: bool) -> Any:
    import posthog

    kwargs: dict[str, Any] = {"host": targets.sink_url}
    if size_batching:
        kwargs["flush_interval"] = _LONG_S
    client = posthog.Posthog(targets.api_key, **kwargs)
    posthog.default_client = client  # posthog.capture() uses it
    return client


def build(name: str, targets: Targets, size_batching: bool = False) -> Scenario:
    """The scenario's app, instrumented; ``name`` is a key of :data:`SCENARIOS`."""
    app = make_app()
    if name == "1":
        return Scenario(app)
    if name == "6":
        from posthog.integrations.asgi import PosthogASGIMiddleware

        client = _posthog_client(targets, size_batching)
        app.add_middleware(CaptureMiddleware)
        app.add_middleware(PosthogASGIMiddleware)
        return Scenario(app, flush=client.flush, shutdown=client.shutdown)

    provider, exported = _otel_base(size_batching)
    scenario = Scenario(app, exported=exported)
    flushes: list[Callable[[], Any]] = []
    shutdowns: list[Callable[[], Any]] = []
    if name == "3":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        otlp = OTLPSpanExporter(endpoint=targets.recorder_url + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(otlp, **_bsp_args(size_batching)))
    elif name == "4":
        import otel_posthog

        processor = otel_posthog.configure(
            provider,
            api_key=targets.api_key,
            host=targets.sink_url,
            flush_interval_ms=int(_LONG_S * 1000) if size_batching else 500,
            max_queue_size=int(os.environ.get("BENCH_MAX_QUEUE", "10000")),
        )
        scenario.stats = otel_posthog.stats
        shutdowns.append(processor.shutdown)
    elif name == "5":
        client = _posthog_client(targets, size_batching)
        app.add_middleware(CaptureMiddleware)
        flushes.append(client.flush)
        shutdowns.append(client.shutdown)
    elif name != "2":
        raise ValueError(f"unknown scenario {name!r}")
    _instrument(app, provider)

    def flush() -> None:
        provider.force_flush(30_000)  # spans first, then what they became
        for f in flushes:
            f()
        if name == "4":
            import otel_posthog

            otel_posthog.sdk.processor.flush_all(30)

    def shutdown() -> None:
        for s in shutdowns:
            s()
        provider.shutdown()

    scenario.flush = flush
    scenario.shutdown = shutdown
    return scenario
