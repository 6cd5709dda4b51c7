"""Same span, two paths, same events: the in-process bridge and ``otel-posthog receive``.

One FastAPI app (the example routes) with the in-process bridge posting to one sink, and
the Python SDK's OTLP exporter on the same tracer provider sending the very same spans to
the receiver, which posts to another sink. The bridge puts ``enduser.id`` / ``session.id``
on its spans, so the receiver resolves the same person and session from attributes.
"""

from __future__ import annotations

import time
from datetime import datetime

import jwt
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_posthog.sink.server import LocalSink

from .bridge_fixtures import SUPABASE_SECRET, Bridge
from .receiver_fixtures import Receiver

SESSION = "0190f3a2-7b1c-7d4e-8f00-123456789abc"
REQUEST_EVENTS = {"api_request", "api_error", "slow_request"}


@pytest.fixture
def paths(sink):
    receiver_sink = LocalSink().start()
    receiver = Receiver(receiver_sink).start()
    bridge = Bridge(sink)
    bridge.provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.traces_url))
    )
    yield bridge, receiver, receiver_sink
    bridge.stop()
    receiver.stop()
    receiver_sink.stop()


def test_in_process_and_receiver_events_are_identical(sink, paths):
    bridge, receiver, receiver_sink = paths
    token = jwt.encode(
        {"sub": "user-9", "aud": "authenticated", "exp": int(time.time()) + 600},
        SUPABASE_SECRET,
        "HS256",
    )
    auth = {"Authorization": f"Bearer {token}", "X-POSTHOG-SESSION-ID": SESSION}
    assert bridge.request("GET", "/api/chat/abc", headers=auth).status_code == 200
    assert bridge.request("GET", "/api/fail", headers=auth).status_code == 500
    assert bridge.request("GET", "/api/chat/missing").status_code == 404  # anonymous
    login = {"user_id": "user-10"}
    assert bridge.request("POST", "/api/auth/login", json=login).status_code == 200
    bridge.processor.force_flush(5000)
    receiver.flush()

    def request_events(s: LocalSink) -> list[dict]:
        found = s.wait_for(lambda evs: len([e for e in evs if e.event in REQUEST_EVENTS]) >= 5)
        return sorted(
            (e.as_dict() for e in found if e.event in REQUEST_EVENTS),
            key=lambda e: (e["properties"]["$span_id"], e["event"]),
        )

    in_process, received = request_events(sink), request_events(receiver_sink)
    assert [e["event"] for e in in_process].count("api_request") == 4
    assert len(received) == len(in_process)
    for got, want in zip(received, in_process, strict=True):
        diff = {
            k: (got["properties"].get(k), want["properties"].get(k))
            for k in set(got["properties"]) | set(want["properties"])
            if got["properties"].get(k) != want["properties"].get(k)
        }
        assert not diff, (got["event"], diff)
        # uuids and persons too; stored timestamps only differ by the sink's clock-skew
        # correction (PostHog's: now - (sent_at - timestamp)), i.e. by delivery time
        assert {**got, "timestamp": None} == {**want, "timestamp": None}
        skew = datetime.fromisoformat(got["timestamp"]) - datetime.fromisoformat(want["timestamp"])
        assert abs(skew.total_seconds()) < 1
    people = {e["distinct_id"] for e in received}
    assert {"user-9", "user-10"} <= people
