"""Outbound calls under the launcher: trace propagation, the client-call rollup, identity
baggage (opt-in) and the bridge's own HTTP calls staying invisible. Real processes and
loopback servers; the rollup bounds are checked in process with the real SDK."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_posthog.sdk import processor as processor_mod
from otel_posthog.sdk.processor import PostHogSpanProcessor
from otel_posthog.sdk.request_state import LIVE

from .helpers import AppProcess
from .launcher_support import (
    PLAIN_APP,
    HeaderRecorder,
    OtlpRecorder,
    launcher_env,
    uvicorn_argv,
)

SECRET = "demo-secret-change-me-before-any-real-use"
USER = "user_12345"
SESSION = "0190d6a8-3c1e-7c6e-9d2b-4b1f2f7d8e92"
SERVER, CLIENT = 2, 3


def _auth(user: str = USER) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": user, "aud": "authenticated", "iat": now, "exp": now + 600}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}", "X-POSTHOG-SESSION-ID": SESSION}


@pytest.fixture
def downstream():
    server = HeaderRecorder().start()
    yield server
    server.stop()


@pytest.fixture
def recorder():
    server = OtlpRecorder().start()
    yield server
    server.stop()


def _one_request_event(sink, rid: str):
    found = sink.wait_for(lambda evs: len(evs) >= 1, request_id=rid, events=["api_request"])
    assert len(found) == 1, found
    return found[0]


def test_outbound_calls_carry_the_trace_and_roll_up(sink, downstream):
    env = launcher_env(sink, EXAMPLE_DOWNSTREAM_URL=downstream.url)
    with AppProcess(env, argv=uvicorn_argv(PLAIN_APP)) as app:
        rid = str(uuid.uuid4())
        r = requests.get(
            app.url + "/api/recommendations",
            headers={**_auth(), "X-Request-ID": rid},
            timeout=10,
        )
        assert r.status_code == 200
        event = _one_request_event(sink, rid)
    trace_id = rid.replace("-", "")
    assert [path for path, _ in downstream.seen] == ["/movies", "/series"]
    for _, headers in downstream.seen:
        assert headers["traceparent"].split("-")[1] == trace_id
        # identity is not propagated by default (third-party APIs must not get it)
        assert "posthog." not in headers.get("baggage", "")
        assert "authorization" not in headers
    props = event.properties
    assert event.distinct_id == USER
    assert props["http_client_calls"] == 2
    assert 0 < props["http_client_time_ms"] <= props["response_time_ms"]
    assert "db_calls" not in props


def test_identity_baggage_is_opt_in_and_trusted_only_when_enabled(sink):
    """upstream (PROPAGATE_IDENTITY) -> inner service (TRUST_BAGGAGE): the inner service's
    event is on the same person and trace; an untrusting service ignores forged baggage."""
    inner_env = launcher_env(sink, OTEL_SERVICE_NAME="inner", OTEL_POSTHOG_TRUST_BAGGAGE="true")
    with AppProcess(inner_env, argv=uvicorn_argv(PLAIN_APP)) as inner:
        edge_env = launcher_env(
            sink,
            OTEL_SERVICE_NAME="edge",
            OTEL_POSTHOG_PROPAGATE_IDENTITY="true",
            EXAMPLE_DOWNSTREAM_URL=inner.url + "/api/chat",
        )
        with AppProcess(edge_env, argv=uvicorn_argv(PLAIN_APP)) as edge:
            rid = str(uuid.uuid4())
            r = requests.get(
                edge.url + "/api/recommendations",
                headers={**_auth(), "X-Request-ID": rid},
                timeout=10,
            )
            assert r.status_code == 200
            trace_id = rid.replace("-", "")
            found = sink.wait_for(
                lambda evs: len([e for e in evs if e.event == "api_request"]) >= 3
            )
            by_service: dict[str, list] = {}
            for e in found:
                if e.event == "api_request" and e.properties["$trace_id"] == trace_id:
                    by_service.setdefault(e.properties["service"], []).append(e)
            assert len(by_service["edge"]) == 1 and len(by_service["inner"]) == 2
            for e in by_service["inner"]:
                assert e.distinct_id == USER  # from the trusted baggage
                assert e.properties["session_id"] == SESSION
                assert e.properties["endpoint"] == "/api/chat/{chat_id}"
            # the edge service does not trust baggage: a forged identity is ignored
            forged = str(uuid.uuid4())
            requests.get(
                edge.url + "/api/chat/1",
                headers={"X-Request-ID": forged, "baggage": "posthog.distinct_id=mallory"},
                timeout=5,
            )
            event = _one_request_event(sink, forged)
            assert event.distinct_id != "mallory"
            assert event.properties["$process_person_profile"] is False


def test_bridge_http_calls_make_no_spans_under_the_launcher(sink, recorder):
    """requests is instrumented globally; the sender's /batch/ posts make no span or event.
    Also: no http send/receive spans, every server span exported once."""
    env = launcher_env(
        sink,
        OTEL_TRACES_EXPORTER="posthog,otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=recorder.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    n = 6
    with AppProcess(env, argv=uvicorn_argv(PLAIN_APP)) as app:
        rids = []
        for i in range(n):
            rid = str(uuid.uuid4())
            requests.get(f"{app.url}/api/chat/{i}", headers={"X-Request-ID": rid}, timeout=5)
            rids.append(rid)
            # let the sender post between requests: several /batch/ calls while traced
            sink.wait_for(lambda evs, rid=rid: len(evs) >= 1, request_id=rid)
        spans = recorder.wait_for(lambda s: len(s) >= n)
        time.sleep(0.5)
        spans = recorder.spans
    assert all(s.kind != CLIENT for s in spans), [s.name for s in spans]
    assert not [s for s in spans if str(sink.port) in " ".join(map(str, s.attributes.values()))]
    assert all("http send" not in s.name and "http receive" not in s.name for s in spans)
    server_traces = sorted(s.trace_id for s in spans if s.kind == SERVER)
    assert server_traces == sorted({s.trace_id for s in spans if s.kind == SERVER})
    assert set(server_traces) >= {r.replace("-", "") for r in rids}
    events = sink.events("api_request")
    assert sorted(e.properties["request_id"] for e in events) == sorted(rids)


# -- the rollup, in process with the real SDK -------------------------------------------------


@pytest.fixture
def local(sink):
    processor = PostHogSpanProcessor(
        api_key=sink.api_key, host=sink.url, flush_interval_ms=50, excluded_routes=[]
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    yield provider.get_tracer("rollup"), processor
    provider.shutdown()


def _server(tracer, path: str):
    return tracer.start_span(
        f"GET {path}",
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": "GET", "url.path": path, "http.route": path},
    )


def test_rollup_counts_db_and_http_children_once(sink, local):
    tracer, processor = local
    root = _server(tracer, "/api/report")
    ctx = trace.set_span_in_context(root)
    with tracer.start_as_current_span(
        "SELECT orders",
        context=ctx,
        kind=trace.SpanKind.CLIENT,
        attributes={"db.system": "postgresql"},
    ):
        time.sleep(0.01)
    with tracer.start_as_current_span("GET", context=ctx, kind=trace.SpanKind.CLIENT):
        # a transport-level client span inside the library's (urllib3 under requests)
        with tracer.start_as_current_span("GET inner", kind=trace.SpanKind.CLIENT):
            time.sleep(0.01)
    root.set_attribute("http.response.status_code", 200)
    root.end()
    rid = format(root.get_span_context().trace_id, "032x")
    event = _one_request_event(sink, rid)
    props = event.properties
    assert props["db_calls"] == 1 and props["db_time_ms"] >= 10
    assert props["http_client_calls"] == 1 and props["http_client_time_ms"] >= 10
    assert len(processor._children) == 0


def test_requests_that_never_end_are_pruned(sink, local, monkeypatch):
    """Bounded memory: a request (and its children) still open after the max age is
    forgotten at the next sweep, like Sentry's 10-minute rule (shortened here)."""
    tracer, processor = local
    monkeypatch.setattr(processor_mod, "_SWEEP_EVERY_S", 0.0)
    monkeypatch.setattr(processor._children, "_max_age_s", 0.05)
    monkeypatch.setattr(LIVE, "_max_age_s", 0.05)
    stuck = _server(tracer, "/api/stuck")
    child = tracer.start_span(
        "GET", context=trace.set_span_in_context(stuck), kind=trace.SpanKind.CLIENT
    )
    stuck_id = stuck.get_span_context().span_id
    assert LIVE.get(stuck_id) is not None and len(processor._children) == 1
    time.sleep(0.1)
    fresh = _server(tracer, "/api/fresh")  # any new request sweeps
    assert LIVE.get(stuck_id) is None
    assert len(processor._children) == 0
    fresh.end()
    child.end()  # a late end of a pruned child is harmless
