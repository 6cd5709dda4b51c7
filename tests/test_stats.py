"""``otel_posthog.stats()`` reports the queue of every kind of setup."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import otel_posthog
from otel_posthog.core.settings import resolve_settings
from otel_posthog.sdk.exporter import PostHogSpanExporter


def test_exporter_only_setup_reports_its_queue_depth(sink):
    # a long flush interval and a large batch: submitted spans wait in the queue
    settings = resolve_settings(
        env={}, api_key=sink.api_key, host=sink.url, flush_interval_ms=600_000, batch_size=500
    )
    exporter = PostHogSpanExporter(settings=settings)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    before = otel_posthog.stats()["queue_depth"]
    try:
        for _ in range(3):
            with tracer.start_as_current_span(
                "GET /x", kind=trace.SpanKind.SERVER, attributes={"http.request.method": "GET"}
            ):
                pass
        assert otel_posthog.stats()["queue_depth"] - before == 3
    finally:
        exporter.shutdown()  # delivers them
    assert otel_posthog.stats()["queue_depth"] == before
