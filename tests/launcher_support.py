"""Real loopback servers for the launcher, co-existence and outbound tests.

* :class:`OtlpRecorder`: an OTLP/HTTP traces endpoint (protobuf) that keeps every span.
* :class:`HeaderRecorder`: a downstream service that records the headers it receives.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otel_posthog.sink.server import ThreadedServer

from .helpers import VENV_BIN


@dataclass
class RecordedSpan:
    name: str
    kind: int  # OTLP: 2 server, 3 client
    trace_id: str
    span_id: str
    parent_span_id: str
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class OtlpRecorder(ThreadedServer):
    """``POST /v1/traces`` (protobuf, optionally gzip): every span, in arrival order."""

    def __init__(self) -> None:
        self.spans: list[RecordedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()

        async def traces(request: Request) -> Response:
            body = await request.body()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            message = ExportTraceServiceRequest()
            message.ParseFromString(body)
            found = []
            for rs in message.resource_spans:
                res = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        found.append(
                            RecordedSpan(
                                name=s.name,
                                kind=s.kind,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_span_id=s.parent_span_id.hex(),
                                service=str(res.get("service.name")),
                                attributes={a.key: _value(a.value) for a in s.attributes},
                            )
                        )
            with self._lock:
                self.spans.extend(found)
                self.requests += 1
            return Response(
                ExportTraceServiceResponse().SerializeToString(),
                media_type="application/x-protobuf",
            )

        super().__init__(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])]))

    @property
    def endpoint(self) -> str:
        return self.url + "/v1/traces"

    def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> list[RecordedSpan]:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)


class HeaderRecorder(ThreadedServer):
    """A downstream JSON service: every request's path and headers are kept."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

        async def anything(request: Request) -> Response:
            self.seen.append((request.url.path, {k.lower(): v for k, v in request.headers.items()}))
            return JSONResponse({"path": request.url.path})

        super().__init__(Starlette(routes=[Route("/{path:path}", anything)]))


def launcher_argv(*command: str) -> list[str]:
    """``opentelemetry-instrument <command...>`` with the venv's executables."""
    return [str(VENV_BIN / "opentelemetry-instrument"), *command]


def uvicorn_argv(app: str, *extra: str) -> list[str]:
    return launcher_argv(
        str(VENV_BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", "{port}", *extra
    )


PLAIN_APP = "otel_posthog.demo.fastapi_app.plain_app:app"


def launcher_env(sink: Any, **extra: str) -> dict[str, str]:
    """The zero-code environment: only variables, our distro selected explicitly."""
    env = {
        "POSTHOG_API_KEY": sink.api_key,
        "POSTHOG_HOST": sink.url,
        "OTEL_SERVICE_NAME": "api",
        "OTEL_PYTHON_DISTRO": "posthog",
        "OTEL_POSTHOG_FLUSH_INTERVAL_MS": "100",
        "OTEL_POSTHOG_JWT_SECRET": "demo-secret-change-me-before-any-real-use",
        "EXAMPLE_SLOW_SECONDS": "1.1",
    }
    env.update(extra)
    return env
