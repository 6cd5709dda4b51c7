"""The core bridge end to end: real uvicorn + FastAPI instrumentation + the bridge's real
transport posting to a real local capture server, on loopback."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from otel_posthog.sink.server import LocalSink, ThreadedServer

from .bridge_fixtures import SUPABASE_SECRET, Bridge, by_event

SESSION = "019a3b6b-634f-72e5-a430-d105b888fb87"
WINDOW = "019a3b6b-634f-72e5-a430-d105b888fb88"
USER = "8f4e2a1c-7b3d-4c5e-9f6a-1b2c3d4e5f60"  # Supabase user ids are UUIDs


def supabase_claims(sub: str = USER, **extra) -> dict:
    now = int(time.time())
    claims = {
        "sub": sub,
        "aud": "authenticated",
        "role": "authenticated",
        "iss": "https://abcdefgh.supabase.co/auth/v1",
        "iat": now,
        "exp": now + 3600,
        "email": "user@example.com",
    }
    claims.update(extra)
    return claims


def hs256(claims: dict | None = None, secret: str = SUPABASE_SECRET) -> str:
    return jwt.encode(claims or supabase_claims(), secret, algorithm="HS256")


class Jwks:
    """A local JWKS endpoint with an ES256 and an RS256 key, like Supabase's."""

    def __init__(self) -> None:
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.fetches = 0
        ec_jwk = ECAlgorithm.to_jwk(self.ec_key.public_key(), as_dict=True)
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa_key.public_key(), as_dict=True)
        self.keys = [
            {**ec_jwk, "kid": "ec-1", "alg": "ES256", "use": "sig"},
            {**rsa_jwk, "kid": "rsa-1", "alg": "RS256", "use": "sig"},
        ]

        async def jwks(request):
            self.fetches += 1
            return JSONResponse({"keys": self.keys})

        self.server = ThreadedServer(
            Starlette(routes=[Route("/auth/v1/.well-known/jwks.json", jwks)])
        ).start()
        self.url = self.server.url + "/auth/v1/.well-known/jwks.json"

    def es256(self, claims: dict | None = None, kid: str = "ec-1") -> str:
        return jwt.encode(claims or supabase_claims(), self.ec_key, "ES256", headers={"kid": kid})

    def rs256(self, claims: dict | None = None) -> str:
        return jwt.encode(
            claims or supabase_claims(), self.rsa_key, "RS256", headers={"kid": "rsa-1"}
        )

    def rsa_public_pem(self) -> bytes:
        return self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture(scope="module")
def msink():
    sink = LocalSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def jwks():
    server = Jwks()
    yield server
    server.server.stop()


@pytest.fixture(scope="module")
def bridge(msink, jwks, monkeypatch_module):
    monkeypatch_module.setenv("EXAMPLE_SLOW_SECONDS", "0.6")
    b = Bridge(
        msink,
        jwt_jwks_url=jwks.url,
        slow_request_thresholds={"/api/chat/send": 300, "/api/chat/stream": 400},
    )
    yield b
    b.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def rid_of(response) -> str:
    rid = response.headers["x-request-id"]
    assert rid
    return rid


# -- events and properties ---------------------------------------------------------------


def test_api_request_has_every_property(bridge):
    trace_id = uuid.uuid4().hex
    headers = {
        "Authorization": f"Bearer {hs256()}",
        "X-POSTHOG-SESSION-ID": SESSION,
        "X-POSTHOG-WINDOW-ID": WINDOW,
        "traceparent": f"00-{trace_id}-b7ad6b7169203331-01",
        "Origin": "http://localhost:5173",  # a browser's cross-origin call
    }
    r = bridge.request("GET", "/api/chat/42?token=querysecret", headers=headers)
    assert r.status_code == 200
    assert rid_of(r) == trace_id
    assert r.headers["traceresponse"].startswith(f"00-{trace_id}-")
    expose = r.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in expose and "traceresponse" in expose
    plain = bridge.request("GET", "/api/chat/42")  # no Origin: no CORS header
    assert plain.headers["x-request-id"] and "access-control-expose-headers" not in plain.headers
    events = by_event(bridge.events_for(trace_id, {"api_request"}))
    assert set(events) == {"api_request"}
    ev = events["api_request"]
    p = ev.properties
    assert ev.distinct_id == USER
    assert "$process_person_profile" not in p
    assert p["request_id"] == p["$trace_id"] == trace_id
    assert len(p["$span_id"]) == 16 and p["$span_id"] != "b7ad6b7169203331"
    assert p["session_id"] == p["$session_id"] == SESSION
    assert p["$window_id"] == WINDOW
    assert p["endpoint"] == "/api/chat/{chat_id}"
    assert p["path"] == "/api/chat/42"
    assert p["method"] == "GET"
    assert p["status_code"] == 200
    assert isinstance(p["response_time_ms"], float) and p["response_time_ms"] > 0
    assert p["environment"] == "test"
    assert p["service"] == "test-api"
    assert p["source"] == "backend"
    assert "querysecret" not in json.dumps(p)
    uuid.UUID(ev.uuid)
    span = [s for s in bridge.spans.get_finished_spans() if s.context.trace_id == int(trace_id, 16)]
    server_span = [s for s in span if s.kind.name == "SERVER"][0]
    assert server_span.attributes["enduser.id"] == USER
    assert server_span.attributes["session.id"] == SESSION


def test_error_event_with_traceback(bridge):
    r = bridge.request("GET", "/api/fail", headers={"Authorization": f"Bearer {hs256()}"})
    assert r.status_code == 500
    rid = rid_of(r)
    events = by_event(bridge.events_for(rid, {"api_request", "api_error"}))
    assert set(events) == {"api_request", "api_error"}
    err = events["api_error"].properties
    assert events["api_error"].distinct_id == USER
    assert err["error_type"] == "RuntimeError"
    assert err["error_message"] == "the recommendation service is down"
    assert err["status_code"] == 500 and err["endpoint"] == "/api/fail"
    assert "in fail" in err["traceback"]
    assert err["traceback"].rstrip().endswith("RuntimeError: the recommendation service is down")
    assert len(err["traceback"]) <= 4000


def test_unmatched_404_and_matched_404(bridge):
    r = bridge.request("GET", "/no/such/path")
    assert r.status_code == 404
    ev = by_event(bridge.events_for(rid_of(r), {"api_request"}))
    assert set(ev) == {"api_request"}
    assert ev["api_request"].properties["endpoint"] == "(unmatched)"
    assert ev["api_request"].properties["path"] == "/no/such/path"
    r = bridge.request("GET", "/api/chat/missing")
    assert r.status_code == 404
    ev = by_event(bridge.events_for(rid_of(r), {"api_request"}))
    assert set(ev) == {"api_request"}  # a 404 is not an api_error
    assert ev["api_request"].properties["endpoint"] == "/api/chat/{chat_id}"
    assert ev["api_request"].properties["status_code"] == 404


def test_streaming_duration_covers_the_stream(bridge):
    r = bridge.request("GET", "/api/chat/stream")
    assert r.text.count("token") == 5
    ev = by_event(bridge.events_for(rid_of(r), {"api_request", "slow_request"}))
    assert ev["api_request"].properties["response_time_ms"] >= 500
    assert ev["slow_request"].properties["threshold_ms"] == 400


def test_per_route_slow_threshold(bridge):
    r = bridge.request("POST", "/api/chat/send", json={"text": "hi", "slow": True})
    ev = by_event(bridge.events_for(rid_of(r), {"api_request", "slow_request"}))
    slow = ev["slow_request"].properties
    assert slow["threshold_ms"] == 300 and slow["duration_ms"] >= 600
    assert slow["duration_ms"] == ev["api_request"].properties["response_time_ms"]
    r = bridge.request("GET", "/api/popular/movies")
    ev = by_event(bridge.events_for(rid_of(r), {"api_request"}))
    assert set(ev) == {"api_request"}  # default 1000 ms threshold, fast request


def test_options_and_health_make_no_events(bridge, msink):
    before = msink.store.count()
    bridge.request("OPTIONS", "/api/popular/movies")
    bridge.request("GET", "/health")
    r = bridge.request("GET", "/api/popular/movies")  # a marker that the queue moved on
    bridge.events_for(rid_of(r), {"api_request"})
    assert msink.store.count() == before + 1


# -- identity ----------------------------------------------------------------------------


def test_supabase_hs256_legacy_secret(bridge):
    r = bridge.request("GET", "/api/popular/movies", headers={"Authorization": f"Bearer {hs256()}"})
    assert (
        by_event(bridge.events_for(rid_of(r), {"api_request"}))["api_request"].distinct_id == USER
    )


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_supabase_asymmetric_tokens_via_jwks(bridge, jwks, alg):
    user = f"jwks-user-{alg}"
    token = (
        jwks.es256(supabase_claims(user)) if alg == "ES256" else jwks.rs256(supabase_claims(user))
    )
    r = bridge.request("GET", "/api/popular/movies", headers={"Authorization": f"Bearer {token}"})
    ev = by_event(bridge.events_for(rid_of(r), {"api_request"}))["api_request"]
    assert ev.distinct_id == user
    assert "$process_person_profile" not in ev.properties


def test_unknown_kid_refreshes_at_most_once_a_minute(bridge, jwks):
    fetches = jwks.fetches
    for _ in range(3):
        token = jwks.es256(supabase_claims("ghost"), kid="unknown-kid")
        r = bridge.request(
            "GET", "/api/popular/movies", headers={"Authorization": f"Bearer {token}"}
        )
        ev = by_event(bridge.events_for(rid_of(r), {"api_request"}))["api_request"]
        assert ev.distinct_id != "ghost"
    assert jwks.fetches - fetches <= 1


def _untrusted_tokens(jwks) -> dict[str, str]:
    expired = hs256(supabase_claims(exp=int(time.time()) - 3600))
    header = {"alg": "none", "typ": "JWT"}
    import base64

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    alg_none = f"{b64(header)}.{b64(supabase_claims())}."
    # alg confusion: HS256 "signed" with the RSA public key as the HMAC secret
    confusion_header = b64({"alg": "HS256", "typ": "JWT"})
    import hashlib
    import hmac

    body = f"{confusion_header}.{b64(supabase_claims())}"
    sig = hmac.new(jwks.rsa_public_pem(), body.encode(), hashlib.sha256).digest()
    confusion = body + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    return {
        "forged": hs256(secret="not-the-secret-but-long-enough-to-be-used-here"),
        "expired": expired,
        "alg-none": alg_none,
        "wrong-audience": hs256(supabase_claims(aud="anon-service")),
        "alg-confusion": confusion,
        "garbage": "not.a.jwt",
        "huge": "x" * 20000,
    }


def test_untrusted_tokens_are_not_the_user(bridge, jwks):
    seen = set()
    for name, token in _untrusted_tokens(jwks).items():
        r = bridge.request(
            "GET", "/api/popular/movies", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200, name
        ev = by_event(bridge.events_for(rid_of(r), {"api_request"}))["api_request"]
        assert ev.distinct_id != USER, name
        assert ev.distinct_id == "request:" + ev.properties["request_id"], name
        assert ev.properties["$process_person_profile"] is False, name
        seen.add(ev.distinct_id)
    assert len(seen) == len(_untrusted_tokens(jwks))


def test_anonymous_requests_are_personless_and_distinct(bridge):
    ids = []
    for _ in range(3):
        r = bridge.request("GET", "/api/popular/movies")
        ev = by_event(bridge.events_for(rid_of(r), {"api_request"}))["api_request"]
        assert ev.properties["$process_person_profile"] is False
        ids.append(ev.distinct_id)
    assert len(set(ids)) == 3


def test_posthog_distinct_id_header_is_personless(bridge):
    headers = {"X-POSTHOG-DISTINCT-ID": "anon-device-1", "X-POSTHOG-SESSION-ID": SESSION}
    r = bridge.request("GET", "/api/popular/movies", headers=headers)
    ev = by_event(bridge.events_for(rid_of(r), {"api_request"}))["api_request"]
    assert ev.distinct_id == "anon-device-1"
    assert ev.properties["$process_person_profile"] is False
    assert ev.properties["$session_id"] == SESSION
    # a verified JWT beats the client-controlled header
    headers["Authorization"] = f"Bearer {hs256()}"
    r = bridge.request("GET", "/api/popular/movies", headers=headers)
    assert (
        by_event(bridge.events_for(rid_of(r), {"api_request"}))["api_request"].distinct_id == USER
    )


def test_identify_and_capture_in_a_request(bridge):
    r = bridge.request("POST", "/api/auth/login", json={"user_id": "user_777"})
    rid = rid_of(r)
    ev = by_event(bridge.events_for(rid, {"api_request", "user_logged_in"}))
    assert ev["api_request"].distinct_id == "user_777"
    login = ev["user_logged_in"]
    assert login.distinct_id == "user_777"
    assert login.properties["request_id"] == rid
    assert login.properties["method"] == "password"


def test_capture_from_a_child_span_and_a_background_task(bridge, msink):
    headers = {"X-POSTHOG-SESSION-ID": SESSION, "Authorization": f"Bearer {hs256()}"}
    r = bridge.request("GET", "/api/chat/messages", headers=headers)
    ev = by_event(bridge.events_for(rid_of(r), {"api_request", "chat_history_loaded"}))
    assert ev["chat_history_loaded"].properties["$session_id"] == SESSION
    assert ev["chat_history_loaded"].distinct_id == USER
    r = bridge.request("POST", "/api/chat/send", json={"text": "hello"}, headers=headers)
    rid = rid_of(r)
    ev = by_event(bridge.events_for(rid, {"api_request", "chat_message_indexed"}))
    assert ev["chat_message_indexed"].distinct_id == USER
    assert ev["chat_message_indexed"].properties["request_id"] == rid
    assert [e.event for e in msink.events(request_id=rid)].count("api_request") == 1


# -- request ids -------------------------------------------------------------------------


def test_x_request_id_adopted_and_echoed(bridge):
    r = bridge.request("GET", "/api/popular/movies", headers={"X-Request-ID": "req-abc-123"})
    assert r.headers["x-request-id"] == "req-abc-123"
    ev = by_event(bridge.events_for("req-abc-123", {"api_request"}))["api_request"]
    assert ev.properties["request_id"] == "req-abc-123"
    assert "client_request_id" not in ev.properties


def test_uuid_x_request_id_becomes_the_trace_id(bridge):
    rid = str(uuid.uuid4())
    r = bridge.request("GET", "/api/popular/movies", headers={"X-Request-ID": rid})
    assert r.headers["x-request-id"] == rid
    ev = by_event(bridge.events_for(rid, {"api_request"}))["api_request"]
    assert ev.properties["$trace_id"] == rid.replace("-", "")
    span = [
        s
        for s in bridge.spans.get_finished_spans()
        if s.context.trace_id == int(rid.replace("-", ""), 16)
    ]
    server = [s for s in span if s.kind.name == "SERVER"][0]
    assert server.parent is None  # no phantom parent span id
    assert server.context.trace_flags.sampled


def test_traceparent_wins_and_client_request_id_is_kept(bridge):
    trace_id = uuid.uuid4().hex
    headers = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01", "X-Request-ID": "client-1"}
    r = bridge.request("GET", "/api/popular/movies", headers=headers)
    assert r.headers["x-request-id"] == trace_id
    ev = by_event(bridge.events_for(trace_id, {"api_request"}))["api_request"]
    assert ev.properties["client_request_id"] == "client-1"


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0af7651916cd43dd8448eb211c80319c",
        "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ],
)
def test_malformed_traceparent_starts_a_new_trace(bridge, bad):
    r = bridge.request("GET", "/api/popular/movies", headers={"traceparent": bad})
    assert r.status_code == 200
    rid = rid_of(r)
    assert len(rid) == 32 and rid != "0af7651916cd43dd8448eb211c80319c"
    assert (
        by_event(bridge.events_for(rid, {"api_request"}))["api_request"].properties["request_id"]
        == rid
    )


def test_malformed_headers_never_fail_the_request(bridge):
    headers = {
        "X-Request-ID": "a" * 5000,
        "X-POSTHOG-SESSION-ID": "\x01not-a-uuid",
        "X-POSTHOG-DISTINCT-ID": "d" * 3000,
        "Authorization": "Bearer " + "e" * 50000,
    }
    r = bridge.request("GET", "/api/popular/movies", headers=headers)
    assert r.status_code == 200
    rid = rid_of(r)
    assert rid == "a" * 1000
    ev = by_event(bridge.events_for(rid, {"api_request"}))["api_request"]
    assert ev.distinct_id == "d" * 1000
    assert "$session_id" not in ev.properties


# -- secrets and the bridge's own traffic -----------------------------------------------


def test_no_secret_reaches_events_or_spans(bridge, msink):
    token = hs256()
    headers = {
        "Authorization": f"Bearer {token}",
        "Cookie": "sessionid=cookiesecret",
        "X-POSTHOG-SESSION-ID": SESSION,
    }
    r = bridge.request("GET", "/api/chat/7?api_key=querysecret&password=hunter2", headers=headers)
    rid = rid_of(r)
    bridge.events_for(rid, {"api_request"})
    bridge.request("GET", "/api/fail?token=querysecret", headers=headers)
    time.sleep(0.3)
    bridge.processor.force_flush(5000)
    everything = json.dumps([e.as_dict() for e in msink.events()])
    for secret in (token, "cookiesecret", "querysecret", "hunter2", token.split(".")[2]):
        assert secret not in everything
    for span in bridge.spans.get_finished_spans():
        dumped = json.dumps(dict(span.attributes or {}), default=str)
        for secret in (token, "cookiesecret", "querysecret", "hunter2"):
            assert secret not in dumped, span.name


def test_bridge_http_calls_make_no_spans_or_events(bridge, msink):
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument(tracer_provider=bridge.provider)
    try:
        bridge.spans.clear()
        r = bridge.request("GET", "/api/popular/movies")
        bridge.events_for(rid_of(r), {"api_request"})
        bridge.processor.force_flush(5000)
        # the test's own client call is a CLIENT span; the bridge's /batch/ posts are not
        client_spans = [s for s in bridge.spans.get_finished_spans() if s.kind.name == "CLIENT"]
        urls = [
            str(s.attributes.get("url.full") or s.attributes.get("http.url")) for s in client_spans
        ]
        assert all("/batch" not in u for u in urls), urls
        assert any("/api/popular/movies" in u for u in urls)  # instrumentation is really on
        assert not [e for e in msink.events() if "/batch" in str(e.properties.get("path"))]
    finally:
        RequestsInstrumentor().uninstrument()


def test_configure_twice_adds_one_processor(bridge):
    import otel_posthog

    again = otel_posthog.configure(bridge.provider, api_key="other", host="http://127.0.0.1:9")
    assert again is bridge.processor
    r = bridge.request("GET", "/api/popular/movies")
    events = bridge.events_for(rid_of(r), {"api_request"})
    assert [e.event for e in events] == ["api_request"]


# -- optional features -----------------------------------------------------------------------


def test_exception_events_and_sampling(msink):
    b = Bridge(msink, service="sampled-api", exception_events=True, api_request_sample_rate=0.0)
    try:
        r = b.request("GET", "/api/fail", headers={"Authorization": f"Bearer {hs256()}"})
        rid = rid_of(r)
        ev = by_event(b.events_for(rid, {"api_error", "$exception"}))
        assert "api_request" not in ev  # sampled out, errors kept
        exc = ev["$exception"]
        assert exc.distinct_id == USER
        entry = exc.properties["$exception_list"][0]
        assert entry["type"] == "RuntimeError"
        assert entry["stacktrace"]["type"] == "raw"
        assert any(f["function"] == "fail" and f["in_app"] for f in entry["stacktrace"]["frames"])
        assert exc.properties["$trace_id"] == rid and exc.properties["request_id"] == rid
    finally:
        b.stop()


def test_sampling_agrees_across_two_services_on_one_trace(msink):
    a = Bridge(msink, service="edge-api", api_request_sample_rate=0.5)
    b = Bridge(msink, service="inner-api", api_request_sample_rate=0.5)
    try:
        traces = [uuid.uuid4().hex for _ in range(40)]
        for t in traces:
            for svc in (a, b):
                svc.request(
                    "GET",
                    "/api/popular/movies",
                    headers={"traceparent": f"00-{t}-b7ad6b7169203331-01"},
                )
        r = a.request("GET", "/api/fail")  # errors are always kept, even when sampled out
        b.events_for(rid_of(r), {"api_error"})
        a.processor.force_flush(5000)
        b.processor.force_flush(5000)
        kept = {"edge-api": set(), "inner-api": set()}
        for t in traces:
            for e in msink.events(request_id=t):
                assert e.properties["sample_rate"] == 0.5
                kept[e.properties["service"]].add(t)
        assert kept["edge-api"] == kept["inner-api"]
        assert 5 < len(kept["edge-api"]) < 35
    finally:
        a.stop()
        b.stop()
