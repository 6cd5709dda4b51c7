"""Hostile input: property-based tests (hypothesis) of header parsing, JWT handling and the
mapping, a fuzz run of the OTLP receiver's decoders, and privacy over real HTTP."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import math
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_posthog.core.headers import (
    bearer_token,
    header_limit,
    sanitize,
    uuid_int,
    valid_traceparent,
)
from otel_posthog.core.mapping import MAX_EVENT_BYTES, map_custom_events, map_span
from otel_posthog.core.settings import Settings
from otel_posthog.core.spanview import SERVER, CustomEvent, ExceptionInfo, RequestFacts, SpanView
from otel_posthog.counters import STATS
from otel_posthog.sdk import propagator
from otel_posthog.sdk.jwt_identity import JwtVerifier
from otel_posthog.sdk.propagator import PostHogPropagator
from otel_posthog.sdk.request_state import STATE_KEY

from .bridge_fixtures import SUPABASE_SECRET, Bridge

SECRET = "s" * 40
REGISTERED_CLAIMS = frozenset(("iss", "sub", "aud", "exp", "nbf", "iat", "jti"))
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

header_text = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=50),  # control characters
    st.integers(min_value=1, max_value=200_000).map(lambda n: "A" * n),  # huge
    st.lists(st.text(max_size=50), max_size=3),
    st.none(),
)
HEADER_NAMES = [
    "authorization",
    "Authorization",
    "traceparent",
    "x-request-id",
    "X-Request-ID",
    "x-posthog-session-id",
    "x-posthog-window-id",
    "x-posthog-distinct-id",
    "baggage",
    "cookie",
]


# -- headers -----------------------------------------------------------------------------
@FUZZ
@given(st.one_of(st.text(), st.binary()), st.integers(min_value=1, max_value=5000))
def test_sanitize_bounds_and_cleans_any_value(value, limit):
    out = sanitize(value, limit)
    assert out is None or (0 < len(out) <= limit and out == out.lstrip())
    assert out is None or not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)


@FUZZ
@given(st.text())
def test_header_checks_never_raise(value):
    valid_traceparent(value)
    bearer_token(value)
    n = uuid_int(value)
    assert n is None or 0 < n < 2**128


@FUZZ
@given(st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(max_size=20), header_text))
def test_propagator_reads_any_headers_without_raising(headers):
    ctx = PostHogPropagator(propagate_identity=False, trust_baggage=True).extract(headers)
    state = ctx.get(STATE_KEY)
    assert state is not None  # a bad header (even undecodable baggage) loses only itself
    for value in (state.session_id, state.window_id, state.header_distinct_id, state.x_request_id):
        assert value is None or len(value) <= 1000
    assert state.token is None or len(state.token) <= 16_384


@FUZZ
@given(
    st.sampled_from(
        ["x-posthog-session-id", "x-posthog-distinct-id", "x-request-id", "authorization"]
    ),
    st.binary(max_size=300) | st.sampled_from([b"", b" ", b"\x00ab", "é".encode(), b"\xff"]),
)
def test_asgi_header_values_read_again_are_sanitised_the_same(name, raw):
    """Short values are kept by their raw bytes: a repeat reads the same sanitised value,
    and a bearer token is never kept."""
    propagator._CLEAN_VALUES.clear()
    expected = sanitize(raw.decode("utf-8", "replace"), header_limit(name))
    scope = {"type": "http", "headers": [(name.encode(), raw)]}
    for _ in range(2):
        found = propagator._asgi_headers(scope)
        assert found is not None and found[name] == expected
    if name == "authorization":
        assert raw not in propagator._CLEAN_VALUES


def test_a_megabyte_of_header_is_cut_quickly():
    huge = "Bearer " + "a" * 5_000_000
    started = time.perf_counter()
    ctx = PostHogPropagator(False, False).extract(
        {"authorization": huge, "x-request-id": "\x00" * 5_000_000, "traceparent": "0" * 10**6}
    )
    assert time.perf_counter() - started < 0.5
    state = ctx[STATE_KEY]
    assert len(state.token) <= 16_384 and state.x_request_id is None


# -- JWTs -----------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(header: dict, claims: dict, key: bytes = b"") -> str:
    signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    sig = hmac.new(key, signing.encode(), hashlib.sha256).digest() if key else b""
    return signing + "." + _b64(sig)


@pytest.fixture(scope="module")
def rsa_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_alg_none_is_never_trusted():
    verifier = JwtVerifier(Settings(jwt_secret=SECRET))
    for alg in ("none", "None", "NONE", "nOnE"):
        token = _token({"alg": alg, "typ": "JWT"}, {"sub": "attacker"})
        assert verifier.resolve(token).distinct_id is None
        assert verifier.resolve(token.rsplit(".", 1)[0] + ".").distinct_id is None


def test_hs256_signed_with_the_rs256_public_key_is_not_trusted(rsa_public_pem):
    """Algorithm confusion: the public key (known to everyone) used as an HMAC secret."""
    verifier = JwtVerifier(Settings(jwt_public_key=rsa_public_pem))
    forged = _token({"alg": "HS256", "typ": "JWT"}, {"sub": "attacker"}, rsa_public_pem.encode())
    assert verifier.resolve(forged).distinct_id is None
    both = JwtVerifier(Settings(jwt_public_key=rsa_public_pem, jwt_algorithms=("RS256",)))
    assert both.resolve(forged).distinct_id is None


def test_huge_and_nested_claims_never_break_verification():
    verifier = JwtVerifier(Settings(jwt_secret=SECRET))
    deep = '{"sub": "u", "n": ' + '{"a": ' * 5000 + "1" + "}" * 5001  # past the recursion limit
    header = _b64(b'{"alg": "HS256"}')
    signing = header + "." + _b64(deep.encode())
    signed_deep = (
        signing + "." + _b64(hmac.new(SECRET.encode(), signing.encode(), "sha256").digest())
    )
    cases = [
        jwt.encode({"sub": "x" * 2_000_000}, SECRET, algorithm="HS256"),  # huge, signed
        signed_deep,
        "a." + _b64(b"[" * 100_000) + ".b",
        header + "." + _b64(json.dumps({"sub": {"id": 1}}).encode()) + ".x",
    ]
    for token in cases:
        result = verifier.resolve(token)
        assert result.distinct_id is None or len(result.distinct_id) <= 1000
    for sub in ({"id": 1}, ["a"], True, None, 1.5):
        assert verifier.resolve(jwt.encode({"sub": sub}, SECRET)).distinct_id is None
    assert verifier.resolve(jwt.encode({"sub": "x" * 5000}, SECRET)).distinct_id == "x" * 1000


@FUZZ
@given(st.text(max_size=2000))
def test_arbitrary_tokens_are_never_trusted(token):
    verifier = JwtVerifier(Settings(jwt_secret=SECRET))
    assert verifier.resolve(token).distinct_id is None


@FUZZ
@given(
    st.text(min_size=1, max_size=3000),  # RFC 7519: sub is a string (PyJWT rejects others)
    # extra claims that cannot change validity: none of RFC 7519's registered names
    st.dictionaries(
        st.text(max_size=10).filter(lambda k: k not in REGISTERED_CLAIMS),
        st.text(max_size=20),
        max_size=5,
    ),
)
def test_signed_tokens_give_their_sanitised_subject(sub, extra):
    claims = {**extra, "sub": sub}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert JwtVerifier(Settings(jwt_secret=SECRET)).resolve(token).distinct_id == sanitize(str(sub))


# -- the mapping ------------------------------------------------------------------------------
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.integers(min_value=10_000, max_value=300_000).map(lambda n: "é" * n),
)
app_values = (
    st.recursive(
        json_leaf,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
        max_leaves=30,
    )
    | st.builds(object)
    | st.sets(st.integers(), max_size=3)
)
attr_value = st.one_of(
    st.text(max_size=100),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.integers(min_value=20_000, max_value=200_000).map(lambda n: "r" * n),
)


@st.composite
def span_views(draw):
    attrs = {
        "http.request.method": draw(st.sampled_from(["GET", "POST", "get", "BREW"]) | st.text()),
        "http.route": draw(attr_value),
        "url.full": "https://api.example.com/p?token=QSECRET&a=" + draw(st.text(max_size=30)),
        "http.target": draw(st.text(max_size=50)) + "?password=QSECRET",
        "http.response.status_code": draw(st.integers(-5, 1000) | st.text(max_size=5)),
        "client.address": "203.0.113.7",
        "enduser.id": draw(attr_value),
    }
    attrs.update(draw(st.dictionaries(st.text(max_size=20), attr_value, max_size=5)))
    customs = tuple(
        CustomEvent(
            draw(st.text(max_size=30) | st.just("e" * 100_000)),
            draw(st.dictionaries(st.text(max_size=2000), app_values, max_size=80)),
            time.time_ns(),
            i,
        )
        for i in range(draw(st.integers(0, 3)))
    )
    exceptions = tuple(
        ExceptionInfo(
            draw(attr_value.map(str)), draw(attr_value.map(str)), "x" * draw(st.integers(0, 10**6))
        )
        for _ in range(draw(st.integers(0, 1)))
    )
    start = time.time_ns()
    return SpanView(
        name="req",
        kind=SERVER,
        trace_id=draw(st.integers(1, 2**128 - 1)),
        span_id=draw(st.integers(1, 2**64 - 1)),
        parent_span_id=None,
        parent_is_remote=False,
        start_ns=start,
        end_ns=start + draw(st.integers(0, 10**11)),
        attributes=attrs,
        resource={"service.name": draw(attr_value)},
        exceptions=exceptions,
        facts=RequestFacts(custom_events=customs, session_id=draw(st.text(max_size=40))),
    )


def _check_events(events):
    for event in events:
        text = json.dumps(event, allow_nan=False)  # valid JSON for PostHog: no NaN, all types
        assert len(text.encode()) < 1_000_000, len(text.encode())
        assert "QSECRET" not in text and "$ip" not in event["properties"]
        assert "?" not in str(event["properties"].get("path", ""))
        assert len(event["event"]) <= 200


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(span_views(), st.integers(0, 10**6))
def test_any_span_maps_to_valid_bounded_events_without_secrets(view, traceback_chars):
    s = Settings(traceback_max_chars=traceback_chars, exception_events=True)
    _check_events(map_span(view, s))
    _check_events(map_custom_events(view, s))


def test_request_events_fit_without_trimming_at_every_cap():
    """api_request and slow_request skip the size check: every value they hold is capped,
    so even the worst escaping (6 bytes a character) stays under PostHog's limit."""
    worst = "\x01" * 200_000  # JSON escapes a control character as \u0001
    attrs = {
        "http.request.method": worst,
        "http.route": worst,
        "url.path": worst,
        "http.response.status_code": 200,
        "client.address": worst,
        "enduser.id": worst,
        "session.id": worst,
    }
    resource = {"service.name": worst, "deployment.environment.name": worst}
    view = SpanView("r", SERVER, 1, 2, None, False, 0, 10**12, attrs, resource)
    s = Settings(slow_request_threshold_ms=1, capture_ip=True)
    events = map_span(view, s)
    assert [e["event"] for e in events] == ["api_request", "slow_request"]
    for event in events:
        assert "$otel_posthog_truncated" not in event["properties"]
        assert len(json.dumps(event)) < MAX_EVENT_BYTES


def test_capture_of_odd_values_is_kept_as_text():
    deep: object = 1
    for _ in range(10_000):
        deep = [deep]
    props = {"obj": object(), "nan": math.nan, "deep": deep, "big": "x" * 10**6, "set": {1}}
    props.update({f"k{i}": "y" * 16_000 for i in range(100)})  # 1.6 MB of legal properties
    view = SpanView(
        "r",
        SERVER,
        1,
        2,
        None,
        False,
        0,
        1,
        {"http.request.method": "GET"},
        {},
        facts=RequestFacts(custom_events=(CustomEvent("signup", props, 0, 0),)),
    )
    (event,) = map_custom_events(view, Settings())
    _check_events([event])
    p = event["properties"]
    assert p["nan"] == "nan" and p["obj"].startswith("<object") and p["set"] == "{1}"
    assert "big" in p["$otel_posthog_truncated"].split(",")  # the largest went first
    assert p["$otel_posthog_truncated"] and len(json.dumps(event)) <= MAX_EVENT_BYTES + 20_000


# -- the OTLP receiver's decoders ------------------------------------------------------------
otlp_any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceSpans",
                    "scopeSpans",
                    "spans",
                    "traceId",
                    "spanId",
                    "parentSpanId",
                    "kind",
                    "attributes",
                    "key",
                    "value",
                    "stringValue",
                    "intValue",
                    "arrayValue",
                    "kvlistValue",
                    "values",
                    "startTimeUnixNano",
                    "endTimeUnixNano",
                    "events",
                    "status",
                    "code",
                    "resource",
                    "name",
                    "bytesValue",
                    "doubleValue",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=6,
        )
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(otlp_any.map(lambda v: json.dumps(v).encode()), st.binary(max_size=2000)))
def test_receiver_decoders_only_raise_decode_errors(body):
    from otel_posthog.receiver.app import _map
    from otel_posthog.receiver.decode import DecodeError, decode_json, decode_protobuf

    for decode in (decode_json, decode_protobuf):
        try:
            decoded = decode(body)
        except DecodeError:
            continue
        _check_events(_map(decoded, Settings()))  # mapping what decoded never raises either


def test_receiver_body_limits_gzip_bombs_and_truncation():
    from otel_posthog.receiver.body import BodyError, decode_content

    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB from ~50 KB
    with pytest.raises(BodyError) as err:
        decode_content(bomb, "gzip", 1_000_000)
    assert err.value.status == 413
    with pytest.raises(BodyError) as err:
        decode_content(gzip.compress(b"x" * 1000)[:-10], "gzip", 1_000_000)
    assert err.value.status == 400
    with pytest.raises(BodyError) as err:
        decode_content(b"x", "br", 1_000_000)
    assert err.value.status == 415


# -- privacy over real HTTP ---------------------------------------------------------------------
def _rid(response) -> str:
    return response.headers["X-Request-ID"]


def test_client_ip_only_with_capture_ip(sink):
    for capture_ip in (False, True):
        bridge = Bridge(sink, capture_ip=capture_ip)
        try:
            r = bridge.request("GET", "/api/popular/movies")
            (ev,) = [e for e in bridge.events_for(_rid(r), {"api_request"})]
        finally:
            bridge.stop()
        if capture_ip:
            assert ev.properties["$ip"] == "127.0.0.1"
        else:
            assert "$ip" not in ev.properties and ev.properties["$geoip_disable"] is True


def test_before_send_drops_and_scrubs_on_the_worker(sink):
    def before_send(event):
        if event["properties"].get("endpoint") == "/api/popular/movies":
            return None
        event["properties"].pop("path", None)
        event["properties"]["scrubbed"] = True
        return event

    bridge = Bridge(sink, before_send=before_send)
    try:
        dropped = bridge.request("GET", "/api/popular/movies")
        kept = bridge.request("GET", "/api/chat/7")
        (ev,) = bridge.events_for(_rid(kept), {"api_request"})
        assert ev.properties["scrubbed"] is True and "path" not in ev.properties
        assert sink.events(request_id=_rid(dropped)) == []
    finally:
        bridge.stop()


def test_a_failing_before_send_never_fails_the_request(sink):
    def before_send(event):
        raise RuntimeError("hook bug")

    errors = STATS.snapshot(gauges=False)["errors_by_kind"].get("before_send", 0)
    bridge = Bridge(sink, before_send=before_send)
    try:
        r = bridge.request("GET", "/api/popular/movies")
        assert r.status_code == 200
        assert bridge.events_for(_rid(r), {"api_request"})  # sent unchanged
    finally:
        bridge.stop()
    assert STATS.snapshot(gauges=False)["errors_by_kind"]["before_send"] > errors


def test_no_secret_reaches_the_spool_on_disk(sink, tmp_path):
    """PostHog down: events wait on disk, and the disk holds no token, cookie or query value."""
    sink.faults.status = 503
    bridge = Bridge(sink, spool_dir=str(tmp_path), max_retries=0)
    token = jwt.encode(
        {"sub": "u-disk", "aud": "authenticated", "exp": int(time.time()) + 600},
        SUPABASE_SECRET,
        algorithm="HS256",
    )
    try:
        r = bridge.request(
            "GET",
            "/api/chat/9?api_key=QUERYSECRET&x=1",
            headers={"Authorization": f"Bearer {token}", "Cookie": "sid=COOKIESECRET"},
        )
        assert r.status_code == 200
        bridge.processor.force_flush(3000)
        time.sleep(0.3)
        on_disk = b"".join(p.read_bytes() for p in Path(tmp_path).iterdir())
        assert b"u-disk" in on_disk  # the event is there...
        for secret in (
            token.encode(),
            token.split(".")[2].encode(),
            b"QUERYSECRET",
            b"COOKIESECRET",
        ):
            assert secret not in on_disk  # ...the secrets are not
    finally:
        sink.faults.clear()
        bridge.stop()


def test_receiver_deep_attribute_values_are_rejected_not_fatal():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from otel_posthog.receiver.decode import DecodeError, decode_json, decode_protobuf

    deep = '{"stringValue": "x"}'
    for _ in range(3000):  # past Python's recursion limit (built as text: json.dumps can't)
        deep = '{"arrayValue": {"values": [' + deep + "]}}"
    span = {
        "traceId": "1" * 32,
        "spanId": "2" * 16,
        "kind": 2,
        "name": "GET /",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "2",
        "attributes": [
            {"key": "http.request.method", "value": {"stringValue": "GET"}},
            {"key": "deep", "value": "DEEP"},
        ],
    }
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    try:
        decoded = decode_json(body.replace('"DEEP"', deep).encode())
        assert decoded.rejected == 1 and not decoded.views  # that span rejected, counted
    except DecodeError:
        pass  # or the whole body refused with a 400: either way no crash
    request = ExportTraceServiceRequest()
    value = request.resource_spans.add().scope_spans.add().spans.add().attributes.add().value
    for _ in range(150):  # past protobuf's nesting limit (100)
        value = value.array_value.values.add()
    value.string_value = "x"
    try:
        decode_protobuf(request.SerializeToString())
    except DecodeError:
        pass
