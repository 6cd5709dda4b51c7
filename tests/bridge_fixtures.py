"""A real FastAPI app on a real uvicorn server, instrumented on its own tracer provider.

Each :class:`Bridge` has its own ``TracerProvider`` (so tests can run several bridge
configurations in one process), an ``InMemorySpanExporter`` beside the PostHog processor
(to see exactly what other exporters get), and posts to a real local sink.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_posthog
from otel_posthog.demo.fastapi_app.routes import add_routes
from otel_posthog.sink.server import LocalSink, ThreadedServer

SUPABASE_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


class Bridge:
    def __init__(self, sink: LocalSink, service: str = "test-api", **settings: Any) -> None:
        self.sink = sink
        self.provider = TracerProvider(
            resource=Resource.create(
                {"service.name": service, "deployment.environment.name": "test"}
            )
        )
        self.spans = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.spans))
        defaults: dict[str, Any] = {
            "api_key": sink.api_key,
            "host": sink.url,
            "flush_interval_ms": 50,
            "jwt_secret": SUPABASE_SECRET,
            "jwt_audience": "authenticated",
        }
        defaults.update(settings)
        self.processor = otel_posthog.configure(self.provider, **defaults)
        self.app = FastAPI()
        add_routes(self.app)
        FastAPIInstrumentor.instrument_app(
            self.app, tracer_provider=self.provider, exclude_spans=["send", "receive"]
        )
        self.server = ThreadedServer(self.app).start()
        self.url = self.server.url

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, timeout=10, **kwargs)

    def events_for(self, request_id: str, expect: set[str], timeout_s: float = 10.0) -> list:
        """Events of one request, once all of ``expect`` arrived and the queue is flushed."""
        found = self.sink.wait_for(
            lambda evs: expect <= {e.event for e in evs}, timeout_s, request_id=request_id
        )
        self.processor.force_flush(5000)
        time.sleep(0.05)
        return self.sink.events(request_id=request_id) if found else found

    def stop(self) -> None:
        self.server.stop()
        self.processor.shutdown()
        self.provider.shutdown()


def by_event(events: list) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in events:
        assert e.event not in out or e.event not in ("api_request", "api_error", "slow_request"), (
            f"two {e.event} events for one request"
        )
        out[e.event] = e
    return out
