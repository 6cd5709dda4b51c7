"""A Node.js service and a Python service, both sending OTLP to the receiver, make the same events.

The Node service (tests/node/orders_service.mjs) uses the OpenTelemetry JS SDK from npm and
stable semantic-convention attributes; the Python service is a FastAPI app with the
OpenTelemetry FastAPI instrumentation and the Python SDK's OTLP/HTTP exporter (whatever
semconv generation that instrumentation emits). Same request, same PostHog event.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_posthog.sink.server import ThreadedServer

from .helpers import ROOT
from .receiver_fixtures import Receiver

# node and node_modules come from `make test` (npm install): missing ones fail, never skip.

SESSION = "0190f3a2-7b1c-7d4e-8f00-123456789abc"
HEADERS = {"x-user-id": "user-123", "x-session-id": SESSION}
# What legitimately differs between two services handling the same request.
PER_SERVICE = {"$trace_id", "$span_id", "request_id", "response_time_ms", "service"}


@pytest.fixture
def receiver(sink) -> Iterator[Receiver]:
    server = Receiver(sink).start()
    yield server
    server.stop()


class NodeService:
    def __init__(self, receiver: Receiver, protocol: str) -> None:
        script = ROOT / "tests/node/orders_service.mjs"
        self.proc = subprocess.Popen(
            ["node", str(script), receiver.traces_url, protocol, "node-orders"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node service did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{json.loads(line)['port']}"

    def stop(self) -> None:
        """SIGTERM: the service flushes its exporter and exits."""
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err


def python_service(receiver: Receiver) -> tuple[ThreadedServer, TracerProvider]:
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "py-orders", "deployment.environment.name": "test"}
        )
    )
    exporter = OTLPSpanExporter(endpoint=receiver.traces_url)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
    app = FastAPI()

    @app.get("/api/orders/{order_id}")
    async def order(order_id: str, request: Request) -> Any:
        span = trace.get_current_span()
        span.set_attribute("enduser.id", request.headers["x-user-id"])
        span.set_attribute("session.id", request.headers["x-session-id"])
        status = 503 if order_id == "down" else 200
        return JSONResponse({"order": order_id}, status)

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["send", "receive"]
    )
    return ThreadedServer(app).start(), provider


def by_service(events: list[Any], service: str) -> dict[str, Any]:
    return {e.event: e for e in events if e.properties["service"] == service}


@pytest.mark.parametrize("protocol", ["json", "proto"])
def test_node_and_python_services_make_identical_events(sink, receiver, protocol):
    node = NodeService(receiver, protocol)
    py_server, provider = python_service(receiver)
    try:
        for base in (node.url, py_server.url):
            assert requests.get(base + "/api/orders/42", headers=HEADERS).status_code == 200
            assert requests.get(base + "/api/orders/down", headers=HEADERS).status_code == 503
    finally:
        node.stop()
        provider.shutdown()
        py_server.stop()
    # per service: api_request x2 (200 and 503) and api_error x1
    found = sink.wait_for(lambda evs: len(evs) >= 6, timeout_s=15)
    assert len(found) == 6, [e.as_dict() for e in found]
    node_events = [e for e in found if e.properties["service"] == "node-orders"]
    py_events = [e for e in found if e.properties["service"] == "py-orders"]
    assert len(node_events) == len(py_events) == 3

    def comparable(event: Any) -> tuple[Any, ...]:
        props = {k: v for k, v in event.properties.items() if k not in PER_SERVICE}
        return event.event, event.distinct_id, json.dumps(props, sort_keys=True)

    assert sorted(map(comparable, node_events)) == sorted(map(comparable, py_events))
    request_ok = next(
        e for e in node_events if e.event == "api_request" and e.properties["status_code"] == 200
    )
    assert request_ok.distinct_id == "user-123"
    assert request_ok.properties["endpoint"] == "/api/orders/{order_id}"
    assert request_ok.properties["path"] == "/api/orders/42"
    assert request_ok.properties["$session_id"] == SESSION
    error = next(e for e in node_events if e.event == "api_error")
    assert error.properties["error_type"] == "HTTP 503"
    for event in node_events:
        assert len(event.properties["$trace_id"]) == 32
        assert event.properties["request_id"] == event.properties["$trace_id"]
