"""A real collector hop: Python SDK -> rotel (Rust OTel collector, PyPI ``rotel``) -> receiver.

rotel receives OTLP/HTTP from the SDK, batches, and exports OTLP/HTTP protobuf with gzip
and a bearer token to ``otel-posthog receive``'s app; backpressure (429 + Retry-After)
makes it retry rather than drop.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import rotel
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from otel_posthog.sink.server import free_port

from .helpers import stop_process
from .receiver_fixtures import Receiver, server_attributes

AGENT = Path(rotel.__file__).parent / "rotel-agent"
TOKEN = "collector-token"


class Rotel:
    """rotel in the foreground: OTLP/HTTP in on 127.0.0.1, OTLP/HTTP out to ``traces_url``."""

    def __init__(self, traces_url: str, workdir: Path) -> None:
        self.http_port, grpc_port = free_port(), free_port()
        base = traces_url.rsplit("/v1/traces", 1)[0]
        self.log = workdir / "rotel.out"
        argv = [
            str(AGENT),
            "start",
            "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
            "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
            "--otlp-receiver-metrics-disabled",
            "--otlp-receiver-logs-disabled",
            "--exporter", "otlp",
            "--otlp-exporter-protocol", "http",
            "--otlp-exporter-endpoint", base,
            "--otlp-exporter-traces-endpoint", traces_url,
            "--otlp-exporter-compression", "gzip",
            "--otlp-exporter-custom-headers", f"Authorization=Bearer {TOKEN}",
            "--batch-timeout", "100ms",
            "--pid-file", str(workdir / "rotel.pid"),
            "--log-file", str(workdir / "rotel.log"),
        ]  # fmt: skip
        self._out = open(self.log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"rotel did not start:\n{self.output()}") from None
                time.sleep(0.05)

    @property
    def traces_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        self._out.close()


@pytest.fixture
def receiver(sink) -> Iterator[Receiver]:
    server = Receiver(sink, receiver_token=TOKEN, max_queue_size=4, max_retries=30).start()
    yield server
    server.stop()


@pytest.fixture
def collector(receiver, tmp_path) -> Iterator[Rotel]:
    hop = Rotel(receiver.traces_url, tmp_path)
    yield hop
    hop.stop()


def send_requests(collector: Rotel, count: int, service: str = "checkout") -> list[str]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url))
    )
    tracer = provider.get_tracer("test")
    trace_ids = []
    for i in range(count):
        span = tracer.start_span(
            "GET /api/orders/{order_id}",
            kind=SpanKind.SERVER,
            attributes=server_attributes(order_id=str(i)),
        )
        span.end()
        trace_ids.append(format(span.get_span_context().trace_id, "032x"))
    provider.shutdown()
    return trace_ids


def test_python_sdk_through_rotel_to_receiver(sink, collector):
    (trace_id,) = send_requests(collector, 1)
    found = sink.wait_for(lambda evs: len(evs) >= 1, timeout_s=15)
    assert len(found) == 1, collector.output()
    event = found[0]
    assert event.event == "api_request"
    assert event.distinct_id == "user-123"
    assert event.properties["$trace_id"] == trace_id
    assert event.properties["service"] == "checkout"
    assert event.properties["path"] == "/api/orders/0"


def test_backpressure_makes_rotel_retry_not_drop(sink, receiver, collector):
    sink.faults.status = 503  # PostHog down: the receiver's queue (4 events) fills, it answers 429
    trace_ids = []
    for _ in range(4):
        trace_ids += send_requests(collector, 3)
        time.sleep(0.3)  # separate collector batches
    time.sleep(1.0)
    sink.faults.clear()
    found = sink.wait_for(lambda evs: len(evs) >= len(trace_ids), timeout_s=60)
    assert sorted(e.properties["$trace_id"] for e in found) == sorted(trace_ids), collector.output()
    assert receiver.app.state.counts["throttled"] >= 1  # rotel did get 429s, and retried
