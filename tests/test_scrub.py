"""Secrets in exception text are masked before they leave: events, the spool, client spans.

A real FastAPI app under uvicorn raises real library exceptions (requests' ``HTTPError``
and ``ConnectionError``, httpx's ``HTTPStatusError``, pydantic's ``ValidationError``) and
errors built from request headers and input; the bridge posts to the local sink, first
through the spool (PostHog answering 503), and the real requests instrumentation records
the outbound calls for an ``InMemorySpanExporter`` standing in for another exporter.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import requests
from fastapi import FastAPI, Request
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import otel_posthog
from otel_posthog.core.scrub import REDACTED, scrub
from otel_posthog.core.settings import ConfigError, resolve_settings
from otel_posthog.sink.server import ThreadedServer, free_port

JWT_SECRET = "a-test-secret-that-is-long-enough-for-hs256!"
API_KEY_500 = "APIKEY500SECRET"
API_KEY_REFUSED = "APIKEYREFUSEDSECRET"
API_KEY_HTTPX = "APIKEYHTTPXSECRET"
PASSWORD = "hunter2-PYDANTIC"
COOKIE = "COOKIESESSIONSECRET"
ECHOED = "ECHOEDPASSWORDSECRET"
DB_PASSWORD = "DBDSNSECRET"


class Login(BaseModel):
    username: str
    password: str = Field(min_length=20)


def _upstream_500(request: Any) -> PlainTextResponse:
    return PlainTextResponse("upstream broke", status_code=500)


def _make_app(upstream: str) -> FastAPI:
    app = FastAPI()
    refused = f"http://127.0.0.1:{free_port()}"

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/billing")
    def billing() -> dict[str, str]:
        requests.get(
            f"{upstream}/v1/charge?api_key={API_KEY_500}&page=2", timeout=5
        ).raise_for_status()
        return {}

    @app.get("/inventory")
    def inventory() -> dict[str, str]:
        httpx.get(f"{upstream}/v2/stock?token={API_KEY_HTTPX}", timeout=5).raise_for_status()
        return {}

    @app.get("/geo")
    def geo() -> dict[str, str]:
        requests.get(f"{refused}/v1/lookup?api_key={API_KEY_REFUSED}", timeout=5)
        return {}

    @app.post("/login")
    async def login(request: Request) -> dict[str, str]:
        Login.model_validate(await request.json())  # raises pydantic's ValidationError
        return {}

    @app.get("/proxy")
    def proxy(request: Request) -> dict[str, str]:
        raise RuntimeError(f"upstream rejected the forwarded headers {dict(request.headers)}")

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, str]:
        body = await request.json()
        raise ValueError(f"login failed for user={body['user']} password={body['password']}")

    @app.get("/db")
    def db() -> dict[str, str]:
        dsn = f"postgresql://app:{DB_PASSWORD}@db.internal:5432/orders"
        raise ConnectionError(
            f'(psycopg.OperationalError) connection failed for "{dsn}": '
            "could not translate host name to address"
        )

    return app


class _App:
    def __init__(self, sink: Any, spool_dir: str) -> None:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        self.upstream = ThreadedServer(Starlette(routes=[Route("/{p:path}", _upstream_500)]))
        self.upstream.start()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "scrub-api"}))
        self.spans = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.processor = otel_posthog.configure(
            self.provider,
            api_key=sink.api_key,
            host=sink.url,
            flush_interval_ms=50,
            jwt_secret=JWT_SECRET,
            exception_events=True,
            spool_dir=spool_dir,
            max_retries=0,
        )
        RequestsInstrumentor().instrument(tracer_provider=self.provider)
        app = _make_app(self.upstream.url)
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, exclude_spans=["send", "receive"]
        )
        self.server = ThreadedServer(app).start()
        self.url = self.server.url

    def stop(self) -> None:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        RequestsInstrumentor().uninstrument()
        self.server.stop()
        self.upstream.stop()
        self.processor.shutdown()
        self.provider.shutdown()


def _bearer() -> str:
    claims = {"sub": "user-scrub", "exp": int(time.time()) + 600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def test_secrets_in_real_exception_text_never_reach_the_spool_the_sink_or_client_spans(
    sink, tmp_path
):
    token = _bearer()
    secrets = [API_KEY_500, API_KEY_REFUSED, API_KEY_HTTPX, PASSWORD, COOKIE, ECHOED, DB_PASSWORD]
    secrets += [token, token.split(".")[2]]
    sink.faults.status = 503  # PostHog down: the events wait in the spool first
    app = _App(sink, str(tmp_path))
    try:
        # a new connection per call: uvicorn closes one after an error
        calls = [
            requests.get(app.url + "/billing"),
            requests.get(app.url + "/inventory"),
            requests.get(app.url + "/geo"),
            requests.post(app.url + "/login", json={"username": "bob", "password": PASSWORD}),
            requests.get(
                app.url + "/proxy",
                headers={"Authorization": f"Bearer {token}", "Cookie": f"session={COOKIE}"},
            ),
            requests.post(app.url + "/echo", json={"user": "bob", "password": ECHOED}),
            requests.get(app.url + "/db"),
        ]
        assert [r.status_code for r in calls] == [500] * 7
        app.processor.force_flush(5000)
        deadline = time.monotonic() + 15
        on_disk = b""
        while time.monotonic() < deadline and on_disk.count(b'"api_error"') < 7:
            on_disk = b"".join(p.read_bytes() for p in Path(tmp_path).iterdir() if p.is_file())
            time.sleep(0.1)
        assert on_disk.count(b'"api_error"') >= 7, "the errors never reached the spool"
        for secret in secrets:
            assert secret.encode() not in on_disk, secret

        sink.faults.clear()  # PostHog back: the spool drains to the sink
        errors = sink.wait_for(lambda evs: len(evs) >= 7, 30, events=["api_error"])
        exceptions = sink.wait_for(lambda evs: len(evs) >= 7, 30, events=["$exception"])
        assert len(errors) == 7 and len(exceptions) == 7
        received = json.dumps([e.as_dict() for e in sink.events()])
        for secret in secrets:
            assert secret not in received, secret
        messages = {e.properties["endpoint"]: e.properties["error_message"] for e in errors}
        # the error's own words, hosts and paths stay
        assert "500 Server Error" in messages["/billing"]
        assert "/v1/charge?api_key=REDACTED" in messages["/billing"]
        assert "Server error '500 Internal Server Error'" in messages["/inventory"]
        assert "/v2/stock?token=REDACTED" in messages["/inventory"]
        assert "/v1/lookup?api_key=REDACTED" in messages["/geo"]
        assert "Connection refused" in messages["/geo"] or "Max retries" in messages["/geo"]
        assert "String should have at least 20 characters" in messages["/login"]
        assert "input_value=REDACTED" in messages["/login"]
        assert "upstream rejected the forwarded headers" in messages["/proxy"]
        assert "user=bob" in messages["/echo"] and "password=REDACTED" in messages["/echo"]
        assert "postgresql://REDACTED@db.internal:5432/orders" in messages["/db"]
        for e in errors:
            assert e.properties["traceback"]  # kept, scrubbed
        values = [e.properties["$exception_list"][0]["value"] for e in exceptions]
        assert any("input_value=REDACTED" in v for v in values)

        # the other exporter's outbound CLIENT spans: URL query values masked
        client_urls = [
            str(s.attributes.get("url.full") or s.attributes.get("http.url"))
            for s in app.spans.get_finished_spans()
            if s.kind.name == "CLIENT"
        ]
        assert any("/v1/charge?api_key=REDACTED" in u for u in client_urls), client_urls
        assert any("/v1/lookup?api_key=REDACTED" in u for u in client_urls), client_urls
        for span in app.spans.get_finished_spans():
            attrs = json.dumps(dict(span.attributes or {}), default=str)
            assert API_KEY_500 not in attrs and API_KEY_REFUSED not in attrs, span.name
        # ...and the exception events and error statuses the instrumentations recorded
        recorded = [
            (dict(e.attributes or {}), s.status.description or "")
            for s in app.spans.get_finished_spans()
            for e in s.events
            if e.name == "exception"
        ]
        assert len(recorded) >= 7
        text = json.dumps(recorded, default=str)
        for secret in secrets:
            assert secret not in text, secret
        assert "/v1/charge?api_key=REDACTED" in text and "input_value=REDACTED" in text
    finally:
        sink.faults.clear()
        app.stop()


def test_scrubbing_can_be_turned_off_and_extended(sink):
    """``OTEL_POSTHOG_SCRUB_SECRETS=false`` keeps the text; extra patterns mask more."""
    from otel_posthog.core.mapping import scrub_exception
    from otel_posthog.core.spanview import ExceptionInfo

    exc = ExceptionInfo("ValueError", "password=hunter2 order ORD-123456 failed", "tb")
    off = resolve_settings({"OTEL_POSTHOG_SCRUB_SECRETS": "false"})
    assert off.scrub_secrets is False
    extra = resolve_settings({"OTEL_POSTHOG_SCRUB_PATTERNS": r"ORD-(\d+)"})
    assert scrub_exception(exc, extra).message == "password=REDACTED order ORD-REDACTED failed"
    listed = resolve_settings({"OTEL_POSTHOG_SCRUB_PATTERNS": r'["ORD-\\d+", "x{2,3}"]'})
    assert listed.scrub_patterns == (r"ORD-\d+", "x{2,3}")
    assert scrub_exception(exc, listed).message == "password=REDACTED order REDACTED failed"


@pytest.mark.parametrize("raw", ["(unclosed", '["ok", "[bad"]', '["not", 1]', "[oops"])
def test_a_bad_scrub_pattern_fails_at_startup_naming_the_variable(raw):
    with pytest.raises(ConfigError, match="OTEL_POSTHOG_SCRUB_PATTERNS"):
        resolve_settings({"OTEL_POSTHOG_SCRUB_PATTERNS": raw})


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        (
            "https://user:pass@host.example/p/q?api_key=K1&x=2#frag",
            ["https://REDACTED@host.example/p/q?api_key=REDACTED&x=REDACTED"],
            ["user:pass", "K1"],
        ),
        (
            "headers {'authorization': 'Bearer abc.def.ghi1234', 'cookie': 'sid=C1; t=dark'}",
            ["headers {'authorization': 'REDACTED', 'cookie': 'REDACTED'}"],
            ["abc.def", "C1"],
        ),
        (
            "rejected Authorization: Basic dXNlcjpwYXNz, Cookie: sid=C2; theme=dark, retry later",
            ["rejected Authorization: REDACTED", "Cookie: REDACTED", "retry later"],
            ["dXNlcjpwYXNz", "C2"],
        ),
        (
            "Set-Cookie: session=S1; Path=/; HttpOnly",
            ["Set-Cookie: REDACTED"],
            ["S1"],
        ),
        (
            'payload {"client_secret": "CS1", "name": "bob", "refresh_token": "RT1"}',
            ['"client_secret": "REDACTED"', '"name": "bob"', '"refresh_token": "REDACTED"'],
            ["CS1", "RT1"],
        ),
        (
            "sent eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl to the API",
            ["sent REDACTED to the API"],
            ["eyJzdWIiOiIxIn0"],
        ),
        (
            "host=db user=app password=P1 dbname=orders sslmode=require",
            ["host=db user=app password=REDACTED dbname=orders"],
            ["P1"],
        ),
        (
            "keys phx_0123456789abcdefghij and AKIAABCDEFGHIJKLMNOP used",
            ["keys REDACTED and REDACTED used"],
            ["phx_0123", "AKIAABCD"],
        ),
        (
            "Input should be a valid dictionary [type=dict_type, input_value={'pwd': 'P2'}, "
            "input_type=str]",
            ["[type=dict_type, input_value=REDACTED, input_type=str]"],
            ["P2"],
        ),
        (
            "Max retries exceeded with url: /api?token=T1 (Caused by ConnectTimeoutError())",
            ["url: /api?token=REDACTED (Caused by ConnectTimeoutError())"],
            ["T1"],
        ),
    ],
)
def test_scrub_masks_the_secret_and_keeps_the_words(text, kept, gone):
    out = scrub(text)
    for part in kept:
        assert part in out, out
    for secret in gone:
        assert secret not in out, out
    assert scrub(out) == out  # idempotent


def test_scrub_leaves_plain_error_text_alone():
    for text in (
        "division by zero",
        "KeyError: 'user_id'",
        "GET https://api.example.com/v1/items/42 returned 404",
        'Traceback (most recent call last):\n  File "app.py", line 3, in f\n    1 / 0',
    ):
        assert scrub(text) == text
    assert REDACTED not in scrub("timeout after 30s talking to db.internal:5432")


def test_a_secret_across_the_traceback_cut_is_masked():
    """The traceback's kept tail is scrubbed with a margin: a secret cut by it is gone too."""
    from otel_posthog.core.mapping import scrub_exception, truncate_tail
    from otel_posthog.core.spanview import ExceptionInfo

    settings = resolve_settings({}, traceback_max_chars=100)
    stack = "x" * 5000 + " password=" + "S" * 60 + "\n" + "y" * 40
    out = scrub_exception(ExceptionInfo("E", "m", stack), settings)
    tail = truncate_tail(out.stacktrace, 100)
    assert "S" * 10 not in tail and "REDACTED" in tail


def test_span_exception_events_and_statuses_are_scrubbed_and_keep_the_rest():
    """The wrapped SDK methods keep the app's own attributes and the exception type."""
    from opentelemetry.trace import Status, StatusCode

    from otel_posthog.sdk.span_scrub import install

    assert install(())
    provider = TracerProvider()
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("t")
    try:
        with tracer.start_as_current_span("op") as span:
            try:
                raise PermissionError("denied for token=T0KENSECRET at /admin")
            except PermissionError as exc:
                span.record_exception(exc, {"app.attr": 7, "exception.message": "pwd=P4SS"})
            span.set_status(StatusCode.ERROR, "password=P4SS2 rejected")
        with tracer.start_as_current_span("op2") as span2:
            span2.set_status(Status(StatusCode.ERROR, "api_key=K3Y rejected"))
        with tracer.start_as_current_span("op3") as span3:
            span3.set_status(Status(StatusCode.OK))
    finally:
        provider.shutdown()
    first, second, third = spans.get_finished_spans()
    event = first.events[0]
    assert event.attributes["app.attr"] == 7
    assert event.attributes["exception.type"] == "PermissionError"
    assert event.attributes["exception.message"] == "pwd=REDACTED"
    assert "T0KENSECRET" not in event.attributes["exception.stacktrace"]
    assert "denied for token=REDACTED at /admin" in event.attributes["exception.stacktrace"]
    assert first.status.description == "password=REDACTED rejected"
    assert second.status.description == "api_key=REDACTED rejected"
    assert third.status.status_code is StatusCode.OK


def test_scrub_is_linear_on_hostile_text():
    """Error text can hold attacker input: no pattern backtracks over long runs (an early
    version took minutes on ``"a." * 8000``). The bound is generous: 16 KB each."""
    hostile = [
        "a." * 8000,
        "a-" * 8000,
        "x" * 16000 + "=",
        "?" + "a=&" * 5000,
        "Authorization: " + "a;" * 8000,
        "password=" * 1700,
        "eyJ" + "a" * 16000,
        "input_value=" + "a" * 16000,
        "http://" + "a." * 8000,
    ]
    start = time.monotonic()
    for text in hostile:
        scrub(text)
    assert time.monotonic() - start < 5
