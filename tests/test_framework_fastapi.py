"""FastAPI with mounted sub-applications, routers and asgi-correlation-id (uvicorn, real HTTP).

The app (tests/apps/fastapi_mounts.py) is set up as the quickstart says: ``configure()``
and ``FastAPIInstrumentor.instrument_app(app)`` on the parent app only, so a mounted
FastAPI app makes its own server span with FastAPI's built-in telemetry.
"""

from __future__ import annotations

import uuid

import requests
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


def test_fastapi_mounts_routers_and_an_app_set_request_id(sink):
    app = AppProcess(framework_env(sink), app="tests.apps.fastapi_mounts:app").start()
    auth = {"Authorization": f"Bearer {token('user_fastapi')}"}
    try:
        sub = get(app, "/subapi/sub/abc", headers=auth)
        docs = get(app, "/subapi/openapi.json")
        nested = get(app, "/files/b1/v1/obj/k9")
        legacy = get(app, "/r/legacy/5")
        mounted = get(app, "/r/mounted/thing/7")
        host = get(app, "/r/h/1", headers={"Host": "api.example.test"})
        missing = get(app, "/nope")
        boom = get(app, "/boom")
        client_uuid = str(uuid.uuid4()).replace("-", "")  # asgi-correlation-id keeps a UUID4
        kept = get(app, "/plain/1", headers={"X-Request-ID": client_uuid})
        replaced = get(app, "/plain/2", headers={"X-Request-ID": "not-a-uuid"})
        trace_id, tp = traceparent()
        traced = get(app, "/plain/3", headers={"traceparent": tp})
        with connect(app.url.replace("http", "ws") + "/ws/lobby", additional_headers=auth) as ws:
            ws.send("hello")
            assert ws.recv() == "hello"
            ws.send("bye")
    finally:
        events = stop_and_collect(app, sink)

    responses = [sub, docs, nested, legacy, mounted, host, missing, boom, kept, replaced, traced]
    assert [r.status_code for r in responses] == [200] * 6 + [404, 500] + [200] * 3
    for response in responses:  # one header, the app's own (asgi-correlation-id's)
        assert len(request_ids(response)) == 1, response.url

    # one request into a mounted FastAPI app is one api_request, with the full template
    assert [e.properties["path"] for e in events if e.event == "api_request"].count(
        "/subapi/sub/abc"
    ) == 1
    request = one(events, "api_request", path="/subapi/sub/abc")
    assert request.properties["endpoint"] == "/subapi/sub/{item}"
    assert request.distinct_id == "user_fastapi"
    assert request.properties["request_id"] == request_ids(sub)[0]
    captured = one(events, "sub_item_viewed")  # capture() inside the sub-application
    assert captured.properties["request_id"] == request_ids(sub)[0]
    assert captured.distinct_id == "user_fastapi"

    endpoints = {
        "/subapi/openapi.json": "/subapi/openapi.json",
        "/files/b1/v1/obj/k9": "/files/{bucket}/v1/obj/{key}",
        "/r/legacy/5": "/r/legacy/{x}",
        "/r/mounted/thing/7": "/r/mounted/thing/{t}",
        "/r/h/1": "/r/h/{h}",
        "/nope": "(unmatched)",
    }
    for path, endpoint in endpoints.items():
        assert one(events, "api_request", path=path).properties["endpoint"] == endpoint, path

    error = one(events, "api_error", path="/boom")
    assert error.properties["status_code"] == 500
    assert error.properties["request_id"] == request_ids(boom)[0]

    # the X-Request-ID the response carries finds the events
    assert request_ids(kept) == [client_uuid]
    one(events, "api_request", request_id=client_uuid)
    new_id = request_ids(replaced)[0]
    assert new_id != "not-a-uuid"
    assert one(events, "api_request", request_id=new_id).properties["client_request_id"] == (
        "not-a-uuid"
    )
    # with a traceparent the trace id stays the request id; the app's id is kept beside it
    with_trace = one(events, "api_request", request_id=trace_id)
    assert with_trace.properties["response_request_id"] == request_ids(traced)[0]

    # a WebSocket connection makes no request events; capture() inside it is sent
    assert not [
        e for e in events if e.event in REQUEST_EVENTS and e.properties["path"].startswith("/ws")
    ]
    message = one(events, "ws_message")
    assert message.properties["room"] == "lobby" and message.properties["endpoint"] == "/ws/{room}"
    assert message.distinct_id == "user_fastapi"  # the JWT sent with the handshake


def test_mounted_fastapi_app_under_the_launcher_pipeline_is_one_request(sink):
    """The configurator's setup (processor + linked ``posthog`` exporter), in process: the
    mounted app's own server span (FastAPI's built-in telemetry) makes no second event."""
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from otel_posthog.api import install_propagators
    from otel_posthog.sdk.exporter import PostHogSpanExporter
    from otel_posthog.sdk.processor import PostHogSpanProcessor
    from otel_posthog.sink.server import ThreadedServer

    provider = TracerProvider()
    processor = PostHogSpanProcessor(api_key=sink.api_key, host=sink.url, flush_interval_ms=50)
    exporter = PostHogSpanExporter(processor=processor)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    install_propagators()
    parent = FastAPI()
    sub = FastAPI(telemetry={"tracer_provider": provider})

    @sub.get("/sub/{item}")
    def item(item: str) -> dict[str, str]:
        return {"item": item}

    parent.mount("/subapi", sub)
    FastAPIInstrumentor.instrument_app(parent, tracer_provider=provider)
    server = ThreadedServer(parent).start()
    try:
        response = requests.get(server.url + "/subapi/sub/x", timeout=10)
        marker = requests.get(server.url + "/after", timeout=10)  # a 404, sent after
        events = sink.wait_for(
            lambda evs: any(e.properties.get("path") == "/after" for e in evs), timeout_s=20
        )
    finally:
        server.stop()
        provider.shutdown()
    assert response.status_code == 200 and marker.status_code == 404
    requests_made = [e for e in events if e.event == "api_request"]
    assert [e.properties["path"] for e in requests_made] == ["/subapi/sub/x", "/after"]
    assert requests_made[0].properties["endpoint"] == "/subapi/sub/{item}"
    assert requests_made[0].properties["request_id"] == request_ids(response)[0]
