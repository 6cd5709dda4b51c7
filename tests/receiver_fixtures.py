"""The OTLP receiver on a real uvicorn server, and OTLP/JSON bodies built per the spec."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from otel_posthog.core.settings import resolve_settings
from otel_posthog.receiver import create_app
from otel_posthog.sink.server import LocalSink, ThreadedServer


class Receiver(ThreadedServer):
    """``create_app`` served on 127.0.0.1, posting to ``sink``; settings as keywords."""

    def __init__(self, sink: LocalSink, app_options: dict[str, Any] | None = None, **settings: Any):
        options: dict[str, Any] = {
            "api_key": sink.api_key,
            "host": sink.url,
            "flush_interval_ms": 50,
        }
        options.update(settings)
        self.settings = resolve_settings(env={}, **options)
        self.app = create_app(self.settings, **(app_options or {}))
        super().__init__(self.app)

    @property
    def traces_url(self) -> str:
        return self.url + "/v1/traces"

    def flush(self) -> None:
        self.app.state.sender.flush(5)

    def stop(self) -> None:
        self.app.state.sender.shutdown(5)
        super().stop()


def new_ids() -> tuple[str, str]:
    """(traceId, spanId) as OTLP/JSON hex."""
    return secrets.token_hex(16), secrets.token_hex(8)


def json_attr(key: str, value: Any) -> dict[str, Any]:
    """An OTLP/JSON KeyValue; ints as strings (the spec's int64 form)."""
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def json_span(
    trace_id: str | None = None,
    span_id: str | None = None,
    *,
    name: str = "GET /api/orders/{order_id}",
    kind: Any = 2,
    attributes: dict[str, Any] | None = None,
    duration_ms: float = 12.5,
    parent_span_id: str = "",
    **extra: Any,
) -> dict[str, Any]:
    tid, sid = new_ids()
    end = time.time_ns()
    span: dict[str, Any] = {
        "traceId": trace_id if trace_id is not None else tid,
        "spanId": span_id if span_id is not None else sid,
        "parentSpanId": parent_span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(end - int(duration_ms * 1e6)),
        "endTimeUnixNano": str(end),
        "attributes": [json_attr(k, v) for k, v in (attributes or {}).items()],
        "status": {},
    }
    span.update(extra)
    return span


def json_request(spans: list[dict[str, Any]], service: str = "node-api", **resource: Any) -> dict:
    attrs = {"service.name": service, "deployment.environment.name": "test", **resource}
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [json_attr(k, v) for k, v in attrs.items()]},
                "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
            }
        ]
    }


def server_attributes(order_id: str = "42", status: int = 200, **extra: Any) -> dict[str, Any]:
    """Stable-semconv attributes of an HTTP server span, with identity."""
    attrs: dict[str, Any] = {
        "http.request.method": "GET",
        "url.path": f"/api/orders/{order_id}",
        "url.scheme": "http",
        "http.route": "/api/orders/{order_id}",
        "http.response.status_code": status,
        "enduser.id": "user-123",
        "session.id": str(uuid.UUID(int=0x0190_0000_0000_7000_8000_0000_0000_0001)),
    }
    attrs.update(extra)
    return attrs
