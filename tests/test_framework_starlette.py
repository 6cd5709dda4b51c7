"""A Starlette app without FastAPI under uvicorn, zero code (``opentelemetry-instrument`` with
the ``posthog`` distro), real HTTP and WebSocket.

asgi-correlation-id's middleware is added after the app is built, so it sets its
``X-Request-ID`` outside the instrumented layer; ``/boom``'s 500 is sent by Starlette's
``ServerErrorMiddleware`` after the request span ended.
"""

from __future__ import annotations

import pytest
from websockets.sync.client import connect

from .framework_support import (
    REQUEST_EVENTS,
    framework_env,
    get,
    one,
    request_ids,
    stop_and_collect,
    token,
    traceparent,
)
from .helpers import AppProcess
from .launcher_support import uvicorn_argv


def test_starlette_under_uvicorn(sink):
    env = framework_env(
        sink,
        OTEL_POSTHOG_SLOW_REQUEST_THRESHOLD_MS="600000",
        OTEL_POSTHOG_SLOW_REQUEST_THRESHOLDS="/outer/{org}/inner/leaf/{leaf_id}=0",
    )
    app = AppProcess(env, argv=uvicorn_argv("tests.apps.starlette_app:app")).start()
    auth = {"Authorization": f"Bearer {token('user_starlette')}"}
    try:
        item = get(app, "/items/3", headers=auth)
        leaf = get(app, "/outer/acme/inner/leaf/7", headers=auth)
        boom = get(app, "/boom", headers={**auth, "Origin": "http://localhost:5173"})
        missing = get(app, "/nope")
        trace_id, tp = traceparent()
        traced = get(app, "/items/4", headers={"traceparent": tp})
        with connect(app.url.replace("http", "ws") + "/ws") as ws:
            ws.send("hi")
            assert ws.recv() == "hi"
    finally:
        events = stop_and_collect(app, sink)

    for response in (item, leaf, boom, missing, traced):  # one X-Request-ID, one traceresponse
        assert len(request_ids(response)) == 1, response.url
        assert len(response.raw.headers.getlist("traceresponse")) == 1, response.url

    request = one(events, "api_request", path="/items/3")
    assert request.properties["endpoint"] == "/items/{item_id}"
    assert request.distinct_id == "user_starlette"
    assert request.properties["request_id"] == request_ids(item)[0]

    # nested Mounts: the full template, one event, the threshold written as the endpoint
    nested = one(events, "api_request", path="/outer/acme/inner/leaf/7")
    assert nested.properties["endpoint"] == "/outer/{org}/inner/leaf/{leaf_id}"
    one(events, "slow_request", path="/outer/acme/inner/leaf/7")

    # an escaped exception: 500, never null; the 500 carries X-Request-ID and traceresponse
    assert boom.status_code == 500
    assert (
        boom.headers["traceresponse"].split("-")[1]
        == one(events, "api_request", path="/boom").properties["$trace_id"]
    )
    assert "X-Request-ID" in boom.headers["Access-Control-Expose-Headers"]
    for name in ("api_request", "api_error"):
        event = one(events, name, path="/boom")
        assert event.properties["status_code"] == 500
        assert event.properties["request_id"] == request_ids(boom)[0]
    assert one(events, "api_error", path="/boom").properties["error_type"] == "RuntimeError"

    assert one(events, "api_request", path="/nope").properties["endpoint"] == "(unmatched)"
    # the app's id (set after ours) is the one header; the trace id stays the request id
    with_trace = one(events, "api_request", request_id=trace_id)
    assert with_trace.properties["response_request_id"] == request_ids(traced)[0]
    # a WebSocket connection makes no request events
    assert not [e for e in events if e.event in REQUEST_EVENTS and e.properties["path"] == "/ws"]


@pytest.mark.parametrize("compat", ["", "public"], ids=["fast", "public"])
def test_starlette_wrapped_in_the_public_middleware(sink, compat):
    """The public fallback of the Starlette hooks: the app wrapped in
    ``PostHogASGIMiddleware``. Under ``OTEL_POSTHOG_COMPAT=public`` (no hook, the SDK's
    configurator without component arguments) the escaped exception's 500 still carries
    the request id, and the events still leave at the SIGTERM shutdown: the bridge's
    processor sends each request span at its end (a batched posthog exporter would hold
    them for ``OTEL_BSP_SCHEDULE_DELAY``), and the middleware flushes at the lifespan
    shutdown."""
    env = framework_env(sink, OTEL_POSTHOG_COMPAT=compat, OTEL_BSP_SCHEDULE_DELAY="600000")
    app = AppProcess(env, argv=uvicorn_argv("tests.apps.starlette_wrapped:app")).start()
    auth = {"Authorization": f"Bearer {token('user_wrapped')}"}
    try:
        item = get(app, "/items/3", headers=auth)
        boom = get(app, "/boom", headers={**auth, "Origin": "http://localhost:5173"})
    finally:
        events = stop_and_collect(app, sink)

    for response in (item, boom):  # one X-Request-ID, one traceresponse
        assert len(request_ids(response)) == 1, response.url
        assert len(response.raw.headers.getlist("traceresponse")) == 1, response.url
    request = one(events, "api_request", path="/items/3")
    assert request.distinct_id == "user_wrapped"
    assert request.properties["request_id"] == request_ids(item)[0]
    assert boom.status_code == 500
    assert "X-Request-ID" in boom.headers["Access-Control-Expose-Headers"]
    for name in ("api_request", "api_error"):
        event = one(events, name, path="/boom")
        assert event.properties["request_id"] == request_ids(boom)[0]
        assert boom.headers["traceresponse"].split("-")[1] == event.properties["$trace_id"]
