"""OTLP/HTTP receiver: Python SDK exporter and spec-built JSON -> receiver -> local sink."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import time
import uuid

import pytest
import requests
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_posthog.core.mapping import map_span
from otel_posthog.core.settings import resolve_settings
from otel_posthog.receiver import DecodeError, decode_json, decode_protobuf
from otel_posthog.receiver.cli import is_loopback

from .helpers import VENV_BIN, AppProcess
from .receiver_fixtures import Receiver, json_request, json_span, new_ids, server_attributes

JSON = {"Content-Type": "application/json"}
PROTO = {"Content-Type": "application/x-protobuf"}
SESSION = "0190f3a2-7b1c-7d4e-8f00-123456789abc"


@pytest.fixture
def receiver(sink):
    server = Receiver(sink).start()
    yield server
    server.stop()


def provider_for(receiver: Receiver, service: str = "py-api", **exporter) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment.name": "test"})
    )
    exporter = OTLPSpanExporter(endpoint=receiver.traces_url, **exporter)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def request_span(
    tracer: trace.Tracer, status: int = 200, start_time: int | None = None
) -> trace.Span:
    return tracer.start_span(
        "GET /api/orders/{order_id}",
        kind=SpanKind.SERVER,
        attributes=server_attributes(status=status, **{"session.id": SESSION}),
        start_time=start_time,
    )


def wait_events(sink, n: int, **filters):
    found = sink.wait_for(lambda evs: len(evs) >= n, **filters)
    assert len(found) >= n, [e.as_dict() for e in sink.events()]
    return found


# -- the Python SDK's OTLP/HTTP exporter (protobuf) ----------------------------------------


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_python_sdk_protobuf_to_events(sink, receiver, compression):
    provider = provider_for(receiver, compression=compression)
    tracer = provider.get_tracer("test")
    span = request_span(tracer)
    span.end()
    provider.force_flush()
    (event,) = wait_events(sink, 1, events=["api_request"])
    ctx = span.get_span_context()
    props = event.properties
    assert event.distinct_id == "user-123"
    assert props["$trace_id"] == format(ctx.trace_id, "032x")
    assert props["$span_id"] == format(ctx.span_id, "016x")
    assert props["request_id"] == format(ctx.trace_id, "032x")
    assert props["endpoint"] == "/api/orders/{order_id}"
    assert props["path"] == "/api/orders/42"
    assert props["method"] == "GET"
    assert props["status_code"] == 200
    assert props["service"] == "py-api"
    assert props["environment"] == "test"
    assert props["$session_id"] == SESSION
    assert "$process_person_profile" not in props
    provider.shutdown()


def test_errors_slow_requests_and_non_request_spans(sink, receiver):
    provider = provider_for(receiver)
    tracer = provider.get_tracer("test")
    start = time.time_ns()
    slow = request_span(tracer, start_time=start - 1_500_000_000)
    slow.end(end_time=start)
    failed = request_span(tracer, status=500)
    try:
        raise ValueError("order 42 is broken")
    except ValueError as exc:
        failed.record_exception(exc)
    failed.set_status(Status(StatusCode.ERROR))
    with trace.use_span(failed, end_on_exit=True):
        # nested SERVER span under a local parent, a CLIENT and an INTERNAL span: no events
        tracer.start_span("inner", kind=SpanKind.SERVER, attributes=server_attributes()).end()
        tracer.start_span(
            "GET upstream", kind=SpanKind.CLIENT, attributes={"http.request.method": "GET"}
        ).end()
        tracer.start_span("work").end()
    provider.force_flush()
    found = wait_events(sink, 4)
    time.sleep(0.3)
    found = sink.events()
    names = sorted(e.event for e in found)
    assert names == ["api_error", "api_request", "api_request", "slow_request"], names
    error = next(e for e in found if e.event == "api_error")
    assert error.properties["error_type"] == "ValueError"
    assert error.properties["error_message"] == "order 42 is broken"
    assert "raise ValueError" in error.properties["traceback"]
    assert error.properties["status_code"] == 500
    slow_event = next(e for e in found if e.event == "slow_request")
    assert slow_event.properties["duration_ms"] == pytest.approx(1500, abs=1)
    assert slow_event.properties["threshold_ms"] == 1000
    provider.shutdown()


def test_services_filter_keeps_edge_service_only(sink):
    with Receiver(sink, services=["edge-api"]) as receiver:
        tid, edge_id = new_ids()
        _, inner_id = new_ids()
        edge = json_request([json_span(tid, edge_id, attributes=server_attributes())], "edge-api")
        inner = json_request(
            [json_span(tid, inner_id, parent_span_id=edge_id, attributes=server_attributes())],
            "billing",
        )
        body = {"resourceSpans": edge["resourceSpans"] + inner["resourceSpans"]}
        assert requests.post(receiver.traces_url, json=body).status_code == 200
        receiver.flush()
    found = wait_events(sink, 1)
    assert [(e.event, e.properties["service"]) for e in found] == [("api_request", "edge-api")]


# -- OTLP/JSON built per the spec -------------------------------------------------------------


def test_json_hex_ids_int64_forms_and_kind_names(sink, receiver):
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    attrs = server_attributes(status=201)
    span = json_span(trace_id, span_id, attributes=attrs, kind="SPAN_KIND_SERVER")
    # int64 as a JSON number (also valid) for the status code and the times
    for kv in span["attributes"]:
        if kv["key"] == "http.response.status_code":
            kv["value"] = {"intValue": 201}
    span["startTimeUnixNano"] = int(span["startTimeUnixNano"])
    response = requests.post(receiver.traces_url, json=json_request([span]))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {}
    (event,) = wait_events(sink, 1)
    assert event.properties["$trace_id"] == trace_id  # not base64-decoded garbage
    assert event.properties["$span_id"] == span_id
    assert event.properties["status_code"] == 201
    assert event.properties["response_time_ms"] == pytest.approx(12.5, abs=0.01)
    assert event.properties["service"] == "node-api"


@pytest.mark.parametrize(
    ("person_key", "session_key"),
    [("enduser.id", "session.id"), ("user.id", "sessionId"), ("posthogDistinctId", "session.id")],
)
def test_json_identity_attributes(sink, receiver, person_key, session_key):
    attrs = server_attributes()
    del attrs["enduser.id"], attrs["session.id"]
    attrs[person_key] = "person-7"
    attrs[session_key] = SESSION
    body = json_request([json_span(attributes=attrs)])
    assert requests.post(receiver.traces_url, json=body).status_code == 200
    (event,) = wait_events(sink, 1)
    assert event.distinct_id == "person-7"
    assert event.properties["$session_id"] == SESSION


def test_anonymous_request_uses_request_id(sink, receiver):
    attrs = server_attributes()
    del attrs["enduser.id"]
    trace_id, span_id = new_ids()
    body = json_request([json_span(trace_id, span_id, attributes=attrs)])
    assert requests.post(receiver.traces_url, json=body).status_code == 200
    (event,) = wait_events(sink, 1)
    assert event.distinct_id == f"request:{trace_id}"  # namespaced: never a person id
    assert event.properties["$process_person_profile"] is False


def test_json_exception_event_and_chunked_body(sink, receiver):
    exc_event = {
        "name": "exception",
        "timeUnixNano": str(time.time_ns()),
        "attributes": [
            {"key": "exception.type", "value": {"stringValue": "TypeError"}},
            {"key": "exception.message", "value": {"stringValue": "x is undefined"}},
            {"key": "exception.stacktrace", "value": {"stringValue": "TypeError: x\n  at f"}},
        ],
    }
    span = json_span(attributes=server_attributes(status=500), events=[exc_event])
    span["status"] = {"code": 2, "message": "boom"}
    data = json.dumps(json_request([span])).encode()

    def chunks():  # requests sends a generator as Transfer-Encoding: chunked
        for i in range(0, len(data), 100):
            yield data[i : i + 100]

    response = requests.post(receiver.traces_url, data=chunks(), headers=JSON)
    assert response.status_code == 200, response.text
    found = wait_events(sink, 2)
    error = next(e for e in found if e.event == "api_error")
    assert error.properties["error_type"] == "TypeError"
    assert error.properties["traceback"] == "TypeError: x\n  at f"


def test_partial_success_json(sink, receiver):
    good = json_span(attributes=server_attributes())
    bad_hex = json_span("zz" * 16, attributes=server_attributes())
    zero = json_span("0" * 32, attributes=server_attributes())
    base64_id = json_span("W47/95gDgQPSabYzgT/GDA==", attributes=server_attributes())
    response = requests.post(
        receiver.traces_url, json=json_request([good, bad_hex, zero, base64_id])
    )
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "3"
    assert "traceId" in partial["errorMessage"]
    assert len(wait_events(sink, 1)) == 1


def test_partial_success_protobuf(sink, receiver):
    good = Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name="x",
        kind=Span.SpanKind.SPAN_KIND_SERVER,
    )
    bad = Span(trace_id=b"\x01\x02\x03", span_id=os.urandom(8), name="y")
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[good, bad])])]
    )
    response = requests.post(receiver.traces_url, data=request.SerializeToString(), headers=PROTO)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 1
    assert parsed.partial_success.error_message == "invalid traceId"


# -- error answers ---------------------------------------------------------------------------


def _status(response: requests.Response) -> status_pb2.Status:
    return status_pb2.Status.FromString(response.content)


def test_undecodable_bodies_are_400_never_500(receiver):
    valid = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                scope_spans=[ScopeSpans(spans=[Span(trace_id=os.urandom(16), name="n" * 50)])]
            )
        ]
    ).SerializeToString()
    cases = [
        (b"\xff\xff\xff\xff garbage", PROTO),
        (valid[: len(valid) // 2], PROTO),  # truncated protobuf
        (b"{not json", JSON),
        (b"[1, 2]", JSON),
        (b'{"resourceSpans": 5}', JSON),
        (b"\xff\xfe\x00garbage", JSON),
    ]
    for body, headers in cases:
        response = requests.post(receiver.traces_url, data=body, headers=headers)
        assert response.status_code == 400, (body, response.text)
        assert response.headers["content-type"].startswith(headers["Content-Type"])
        if headers is PROTO:
            assert _status(response).code == 3 and _status(response).message
        else:
            assert response.json()["code"] == 3
    for _ in range(200):  # random bytes: a 200 (empty or unknown fields) or a 400, never a 500
        body = os.urandom(64)
        for headers in (PROTO, JSON):
            assert requests.post(receiver.traces_url, data=body, headers=headers).status_code in (
                200,
                400,
            )


def test_wrong_content_type_and_encoding_are_415(receiver):
    assert (
        requests.post(
            receiver.traces_url, data=b"x", headers={"Content-Type": "text/plain"}
        ).status_code
        == 415
    )
    assert requests.post(receiver.traces_url, data=b"x").status_code == 415
    response = requests.post(
        receiver.traces_url, data=b"{}", headers={**JSON, "Content-Encoding": "br"}
    )
    assert response.status_code == 415
    assert requests.get(receiver.traces_url).status_code == 405


def test_gzip_body_bomb_and_broken_gzip(sink):
    options = {"max_body_bytes": 1 << 20, "max_decoded_bytes": 4 << 20}
    with Receiver(sink, app_options=options) as receiver:
        body = json.dumps(json_request([json_span(attributes=server_attributes())])).encode()
        gz = {**JSON, "Content-Encoding": "gzip"}
        assert (
            requests.post(receiver.traces_url, data=gzip.compress(body), headers=gz).status_code
            == 200
        )
        bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
        assert len(bomb) < (1 << 20)
        response = requests.post(receiver.traces_url, data=bomb, headers=gz)
        assert response.status_code == 413
        assert requests.post(receiver.traces_url, data=b"not gzip", headers=gz).status_code == 400
        truncated = gzip.compress(body)[:-12]
        assert requests.post(receiver.traces_url, data=truncated, headers=gz).status_code == 400
        big = b"{" + b" " * (2 << 20) + b"}"
        assert requests.post(receiver.traces_url, data=big, headers=JSON).status_code == 413
        chunked = requests.post(
            receiver.traces_url, data=iter([big[: 1 << 20], big[1 << 20 :]]), headers=JSON
        )
        assert chunked.status_code == 413
    assert len(wait_events(sink, 1)) == 1


def test_full_queue_answers_429_with_retry_after_and_loses_nothing(sink):
    sink.faults.status = 503  # PostHog is down: the sender holds its batch and retries
    with Receiver(sink, max_queue_size=3, max_retries=20) as receiver:
        answers = []
        for _ in range(12):
            body = json_request([json_span(attributes=server_attributes())])
            response = requests.post(receiver.traces_url, json=body)
            answers.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["Retry-After"] == "2"
                assert response.json()["code"] == 8
            time.sleep(0.02)
        assert 429 in answers and set(answers) == {200, 429}, answers
        too_many = json_request([json_span(attributes=server_attributes()) for _ in range(4)])
        assert requests.post(receiver.traces_url, json=too_many).status_code == 413
        sink.faults.clear()
        accepted = answers.count(200)
        found = wait_events(sink, accepted, timeout_s=20)
        time.sleep(0.3)
        assert len(sink.events()) == accepted == len(found)


def test_bearer_token(sink):
    with Receiver(sink, receiver_token="s3cret") as receiver:
        body = json_request([json_span(attributes=server_attributes())])
        assert requests.post(receiver.traces_url, json=body).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        response = requests.post(receiver.traces_url, json=body, headers=wrong)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        right = {"Authorization": "Bearer s3cret"}
        assert requests.post(receiver.traces_url, json=body, headers=right).status_code == 200
        provider = provider_for(receiver, headers=right)
        request_span(provider.get_tracer("t")).end()
        provider.force_flush()
    assert len(wait_events(sink, 2)) == 2


# -- the command ------------------------------------------------------------------------------


def test_cli_receive_serves_and_flushes_on_sigterm(sink):
    env = {"POSTHOG_API_KEY": sink.api_key, "POSTHOG_HOST": sink.url}
    argv = [str(VENV_BIN / "otel-posthog"), "receive", "--port", "{port}", "--log-level", "warning"]
    with AppProcess(env, argv=argv) as proc:
        trace_id = uuid.uuid4().hex
        body = json_request([json_span(trace_id, attributes=server_attributes())])
        assert requests.post(proc.url + "/v1/traces", json=body).status_code == 200
        proc.signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (lifespan flush), then re-raises the signal
        assert proc.wait() in (0, -signal.SIGTERM), proc.output()
    (event,) = wait_events(sink, 1)
    assert event.properties["$trace_id"] == trace_id


def test_cli_refuses_public_address_without_token(sink):
    env = {"POSTHOG_API_KEY": sink.api_key, "POSTHOG_HOST": sink.url}
    proc = AppProcess(env, argv=[str(VENV_BIN / "otel-posthog"), "receive", "--host", "0.0.0.0"])
    result = subprocess.run(proc.argv, env=proc.env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "OTEL_POSTHOG_RECEIVER_TOKEN" in result.stderr and "--insecure" in result.stderr
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")


# -- the decoders never fail with anything but DecodeError ------------------------------------

_DEFAULTS = resolve_settings(env={})
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
_span_like = st.fixed_dictionaries(
    {},
    optional={
        "traceId": st.one_of(st.text(max_size=34), st.just("ab" * 16), st.integers()),
        "spanId": st.one_of(st.text(max_size=18), st.just("cd" * 8)),
        "parentSpanId": st.one_of(st.text(max_size=18), st.just("")),
        "kind": st.one_of(st.integers(), st.text(max_size=20), st.just("SPAN_KIND_SERVER")),
        "startTimeUnixNano": st.one_of(st.integers(), st.text(max_size=20), st.floats()),
        "attributes": _json_values,
        "events": _json_values,
        "status": _json_values,
        "flags": _json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        _json_values,
        st.builds(
            lambda spans, res: {
                "resourceSpans": [{"resource": res, "scopeSpans": [{"spans": spans}]}]
            },
            st.lists(_span_like | _json_values, max_size=4),
            _json_values,
        ),
    )
)
def test_json_decoder_only_raises_decode_error(value):
    try:
        decoded = decode_json(json.dumps(value).encode())
    except DecodeError:
        return
    assert decoded.rejected >= 0
    for view in decoded.views:
        map_span(view, _DEFAULTS)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_protobuf_decoder_only_raises_decode_error(body):
    try:
        decoded = decode_protobuf(body)
    except DecodeError:
        return
    for view in decoded.views:
        map_span(view, _DEFAULTS)


def test_before_send_applies_on_the_receiver_path(sink):
    def scrub(event):
        if event["event"] == "api_request":
            return None
        event["properties"]["scrubbed"] = True
        return event

    server = Receiver(sink, before_send=scrub).start()
    try:
        tracer = provider_for(server).get_tracer("t")
        span = request_span(tracer, status=500)
        span.end()
        rid = format(span.get_span_context().trace_id, "032x")
        events = sink.wait_for(lambda evs: len(evs) >= 1, 10, request_id=rid)
        server.flush()
        events = sink.events(request_id=rid)
        assert [e.event for e in events] == ["api_error"]
        assert events[0].properties["scrubbed"] is True
    finally:
        server.stop()
