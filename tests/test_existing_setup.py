"""Adding PostHog to an existing OpenTelemetry setup: real processes, a real OTLP/HTTP
recorder beside the local capture server."""

from __future__ import annotations

import textwrap
import time
import uuid
from collections import Counter

import jwt
import pytest
import requests

from .helpers import AppProcess, bridge_env
from .launcher_support import OtlpRecorder, launcher_env, uvicorn_argv

SECRET = "demo-secret-change-me-before-any-real-use"
USER = "user_777"
SESSION = "0190d6a8-3c1e-7c6e-9d2b-4b1f2f7d8e91"
SERVER, INTERNAL = 2, 1

EXISTING_APP = textwrap.dedent(
    '''
    """A team's app that already exports to an OTLP backend, then adds otel_posthog."""
    import os

    from fastapi import BackgroundTasks, FastAPI
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import otel_posthog

    provider = TracerProvider(resource=Resource.create({"service.name": "orders"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=os.environ["RECORDER"]), schedule_delay_millis=100
        )
    )
    trace.set_tracer_provider(provider)
    processor = otel_posthog.configure()  # the one line added for PostHog
    tracer = trace.get_tracer("orders")
    app = FastAPI()


    @app.get("/api/orders/{order_id}")
    async def order(order_id: str, tasks: BackgroundTasks) -> dict:
        with tracer.start_as_current_span("load_order"):
            pass

        def index() -> None:  # runs after the response: same request, not a second one
            with tracer.start_as_current_span("index_order"):
                otel_posthog.capture("order_indexed", {"order_id": order_id})

        tasks.add_task(index)
        return {"order_id": order_id}


    @app.get("/setup")
    async def setup() -> dict:
        current = trace.get_tracer_provider()
        return {
            "same_provider": current is provider,
            "processors": [
                type(p).__name__ for p in current._active_span_processor._span_processors
            ],
            "configure_again_is_same": otel_posthog.configure() is processor,
        }


    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}


    FastAPIInstrumentor.instrument_app(app, exclude_spans=["send", "receive"])
    '''
)


@pytest.fixture
def recorder():
    server = OtlpRecorder().start()
    yield server
    server.stop()


def _token(user: str = USER) -> str:
    now = int(time.time())
    claims = {"sub": user, "aud": "authenticated", "iat": now, "exp": now + 600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize("span_attributes", ["true", "false"])
def test_configure_beside_an_otlp_exporter(sink, recorder, tmp_path, span_attributes):
    (tmp_path / "orders_app.py").write_text(EXISTING_APP)
    env = bridge_env(sink, RECORDER=recorder.endpoint, OTEL_POSTHOG_SPAN_ATTRIBUTES=span_attributes)
    env["PYTHONPATH"] = str(tmp_path)
    app = AppProcess(env, app="orders_app:app")
    headers = {"Authorization": f"Bearer {_token()}", "X-POSTHOG-SESSION-ID": SESSION}
    with app:
        setup = requests.get(app.url + "/setup", timeout=5).json()
        rids = []
        for i in range(5):
            r = requests.get(f"{app.url}/api/orders/{i}", headers=headers, timeout=5)
            assert r.status_code == 200
            rids.append(r.headers["X-Request-ID"])
        events = sink.wait_for(
            lambda evs: (
                len([e for e in evs if e.event == "order_indexed"]) >= 5
                and len([e for e in evs if e.event == "api_request"]) >= 6
            )
        )
        # 6 traces (setup + 5 orders); orders have server + load_order + index_order
        spans = recorder.wait_for(lambda s: len([x for x in s if x.name == "index_order"]) >= 5)
        time.sleep(0.3)  # anything doubled would arrive now
        spans = recorder.spans

    # no second provider; our processor beside the team's, added once
    assert setup == {
        "same_provider": True,
        "processors": ["BatchSpanProcessor", "PostHogSpanProcessor"],
        "configure_again_is_same": True,
    }
    # the OTLP exporter gets every span, once (readiness probes on /health aside)
    spans = [s for s in spans if s.name != "GET /health"]
    assert len({s.span_id for s in spans}) == len(spans)
    by_trace: dict[str, list] = {}
    for s in spans:
        by_trace.setdefault(s.trace_id, []).append(s)
    for rid in rids:
        trace_spans = by_trace[rid.replace("-", "")]
        names = [s.name for s in trace_spans]
        assert {"GET /api/orders/{order_id}", "load_order", "index_order"} <= set(names)
        assert len(names) == len(set(names))  # nothing twice
        (server,) = [s for s in trace_spans if s.kind == SERVER]
        assert server.service == "orders"
        assert server.attributes["http.route"] == "/api/orders/{order_id}"
        if span_attributes == "true":  # documented: person and session for your backend
            assert server.attributes["enduser.id"] == USER
            assert server.attributes["session.id"] == SESSION
        else:  # kept off the spans other exporters see
            assert not {"enduser.id", "session.id"} & set(server.attributes)
    # PostHog: one api_request per request, and the background task's event on it
    requests_by_id = Counter(e.properties["request_id"] for e in events if e.event == "api_request")
    for rid in rids:
        assert requests_by_id[rid] == 1
        indexed = [e for e in events if e.event == "order_indexed"]
        mine = [e for e in indexed if e.properties["request_id"] == rid]
        assert len(mine) == 1 and mine[0].distinct_id == USER
    assert all(e.distinct_id == USER for e in events if e.properties["request_id"] in rids)


def _requests_with_identity(url: str, n: int = 4) -> list[str]:
    token = requests.post(url + "/api/auth/login", json={"user_id": USER}, timeout=5).json()[
        "token"
    ]
    rids = []
    for _ in range(n):
        rid = str(uuid.uuid4())
        r = requests.post(
            url + "/api/chat/send",
            json={"text": "hi"},
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": rid},
            timeout=5,
        )
        assert r.status_code == 200 and r.headers["X-Request-ID"] == rid
        rids.append(rid)
    return rids


@pytest.mark.parametrize("distro", ["posthog", "distro"])
def test_configure_under_the_launcher_is_one_pipeline(sink, recorder, distro):
    """configure() in code under opentelemetry-instrument: with our distro it returns the
    launcher's processor; with the stock distro and OTEL_TRACES_EXPORTER=otlp,posthog it
    links the posthog exporter. Either way one event per request, with identity."""
    env = launcher_env(
        sink,
        OTEL_PYTHON_DISTRO=distro,
        OTEL_PYTHON_CONFIGURATOR="posthog" if distro == "posthog" else "configurator",
        OTEL_TRACES_EXPORTER="otlp,posthog",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=recorder.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    app = AppProcess(env, argv=uvicorn_argv("otel_posthog.demo.fastapi_app.app:app"))
    with app:
        rids = _requests_with_identity(app.url)
        events = sink.wait_for(
            lambda evs: (
                len([e for e in evs if e.event == "chat_message_indexed"]) >= len(rids)
                and len([e for e in evs if e.event == "api_request"]) >= len(rids) + 1
            )
        )
        spans = recorder.wait_for(lambda s: len([x for x in s if x.kind == SERVER]) >= 5)
        time.sleep(0.5)
        events = sink.events()
    counts = Counter((e.event, e.properties["request_id"]) for e in events)
    for rid in rids:
        assert counts[("api_request", rid)] == 1, counts
        assert counts[("chat_message_indexed", rid)] == 1, counts
    assert all(e.distinct_id == USER for e in events if e.properties["request_id"] in rids)
    assert len({s.span_id for s in spans}) == len(spans)
    assert {s.trace_id for s in spans if s.kind == SERVER} >= {r.replace("-", "") for r in rids}


def test_a_capture_just_after_the_request_ends_is_sent_once(sink):
    """A BackgroundTask's capture() can land after the span was queued but before the
    worker mapped it: it goes out once, through the late path, not also with the span."""
    from opentelemetry import trace as trace_api
    from opentelemetry.sdk.trace import TracerProvider

    from otel_posthog.sdk.processor import PostHogSpanProcessor
    from otel_posthog.sdk.request_state import LIVE

    seen: list[str] = []

    def before_send(event: dict) -> dict:
        seen.append(event["event"])
        return event

    processor = PostHogSpanProcessor(
        api_key=sink.api_key, host=sink.url, flush_interval_ms=300, before_send=before_send
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    try:
        span = provider.get_tracer("t").start_span(
            "GET /api/x",
            kind=trace_api.SpanKind.SERVER,
            attributes={"http.request.method": "GET", "url.path": "/api/x", "http.route": "/api/x"},
        )
        state = LIVE.get(span.get_span_context().span_id)
        assert state is not None
        state.add_capture("during", {})
        span.end()  # queued; the worker maps it within the flush interval
        state.add_capture("after", {})
        assert processor.force_flush(5000)
    finally:
        provider.shutdown()
    assert sorted(seen) == ["after", "api_request", "during"]


def test_identity_attributes_respect_the_sdks_span_limits():
    """enduser.id / session.id go in through the SDK's own set_attributes: its value-length
    and count limits apply, and an ended span is left as it was."""
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider

    from otel_posthog.sdk.processor import set_identity_attributes
    from otel_posthog.sdk.request_state import RequestState

    state = RequestState()
    state.identified_id = "user-123456"
    state.session_id = "0190a2b4-7c3d-7e8f-9a0b-1c2d3e4f5a6b"
    items = {"enduser.id": "user-123456", "session.id": "0190a2b4-7c3d-7e8f-9a0b-1c2d3e4f5a6b"}
    plain = TracerProvider().get_tracer("t").start_span("s", attributes={"a": 1})
    set_identity_attributes(plain, state)
    assert dict(plain.attributes) == {"a": 1, **items}
    short = TracerProvider(span_limits=SpanLimits(max_span_attribute_length=4))
    span = short.get_tracer("t").start_span("s")
    set_identity_attributes(span, state)  # the SDK truncates
    assert dict(span.attributes) == {"enduser.id": "user", "session.id": "0190"}
    full = TracerProvider(span_limits=SpanLimits(max_span_attributes=2))
    span = full.get_tracer("t").start_span("s", attributes={"a": 1, "b": 2})
    set_identity_attributes(span, state)  # the SDK drops the oldest to make room
    assert dict(span.attributes) == items and span.dropped_attributes == 2
    span.end()
    state.identified_id = "late"
    set_identity_attributes(span, state)  # an ended span stays as it was
    assert span.attributes["enduser.id"] == "user-123456"


def test_query_values_are_redacted_now_and_when_set_again():
    """Both semconv generations; the wrapper is installed only when something needs it."""
    from opentelemetry.sdk.trace import TracerProvider

    from otel_posthog.sdk.redaction import redact_span_urls

    tracer = TracerProvider().get_tracer("t")
    old = tracer.start_span("s", attributes={"http.url": "http://h/p?token=abc&x=1"})
    redact_span_urls(old)
    assert old.attributes["http.url"] == "http://h/p?token=REDACTED&x=REDACTED"
    old.set_attribute("http.target", "/p?token=abc")  # set again by the instrumentation
    assert old.attributes["http.target"] == "/p?token=REDACTED"
    new = tracer.start_span("s", attributes={"url.path": "/p", "url.query": "token=abc"})
    redact_span_urls(new)
    assert new.attributes["url.query"] == "token=REDACTED"
    plain = tracer.start_span("s", attributes={"http.target": "/p", "http.url": "http://h/p"})
    redact_span_urls(plain)  # no query string: left alone, no wrapper
    assert "set_attribute" not in vars(plain) and plain.attributes["http.url"] == "http://h/p"
    late = tracer.start_span("s")  # URL attributes come after the start: wrapped
    redact_span_urls(late)
    late.set_attributes({"url.full": "https://h/p?secret=1", "url.query": "secret=1"})
    assert late.attributes["url.full"] == "https://h/p?secret=REDACTED"
    assert late.attributes["url.query"] == "secret=REDACTED"
