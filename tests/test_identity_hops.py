"""Identity trust is explicit at every hop (docs/reliability.md, "Identity across hops").

Two real services under the launcher with the real requests instrumentation: only a
verified person is propagated, a client's ``X-POSTHOG-DISTINCT-ID`` or own
``posthog.*`` baggage never arrives as a trusted person, identity goes only to allowed
hosts. Then the propagator with the real SDK and W3C propagators (both composite orders,
fail closed), and the anonymous, session and header rules over real HTTP.
"""

from __future__ import annotations

import time
import unicodedata
import uuid

import jwt
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_posthog.api import install_propagators
from otel_posthog.core.headers import sanitize
from otel_posthog.core.identity_hosts import HostPolicy
from otel_posthog.core.mapping import map_span, sampled, sampling_key
from otel_posthog.core.settings import ConfigError, Settings, resolve_settings
from otel_posthog.core.spanview import SERVER, SpanView
from otel_posthog.sdk.propagator import PostHogPropagator
from otel_posthog.sdk.request_state import STATE_KEY, RequestState

from .bridge_fixtures import SUPABASE_SECRET, Bridge
from .helpers import AppProcess
from .launcher_support import PLAIN_APP, HeaderRecorder, launcher_env, uvicorn_argv

SECRET = "demo-secret-change-me-before-any-real-use"  # launcher_env's JWT secret
USER = "user_12345"
VICTIM = "user_victim"
SESSION = "0190d6a8-3c1e-7c6e-9d2b-4b1f2f7d8e92"


def _bearer(user: str = USER, secret: str = SECRET) -> str:
    now = int(time.time())
    claims = {"sub": user, "aud": "authenticated", "iat": now, "exp": now + 600}
    return "Bearer " + jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def downstream():
    server = HeaderRecorder().start()
    yield server
    server.stop()


def _inner_events(sink, trace_id: str, n: int = 2) -> list:
    """The inner service's api_request events of one trace (the edge calls it twice)."""

    def inner(evs: list) -> list:
        return [
            e
            for e in evs
            if e.event == "api_request"
            and e.properties.get("service") == "inner"
            and e.properties["$trace_id"] == trace_id
        ]

    found = inner(sink.wait_for(lambda evs: len(inner(evs)) >= n, timeout_s=20))
    assert len(found) == n, found
    return found


# -- two services, the real requests instrumentation ----------------------------------------
def test_only_a_verified_person_reaches_a_service_that_trusts_baggage(sink):
    """edge (PROPAGATE_IDENTITY, default hosts) -> inner on loopback (TRUST_BAGGAGE)."""
    inner_env = launcher_env(sink, OTEL_SERVICE_NAME="inner", OTEL_POSTHOG_TRUST_BAGGAGE="true")
    with AppProcess(inner_env, argv=uvicorn_argv(PLAIN_APP)) as inner:
        edge_env = launcher_env(
            sink,
            OTEL_SERVICE_NAME="edge",
            OTEL_POSTHOG_PROPAGATE_IDENTITY="true",
            EXAMPLE_DOWNSTREAM_URL=inner.url + "/api/chat",
        )
        with AppProcess(edge_env, argv=uvicorn_argv(PLAIN_APP)) as edge:
            cases = {
                "jwt": {"Authorization": _bearer(), "X-POSTHOG-SESSION-ID": SESSION},
                "posthog-js header": {"X-POSTHOG-DISTINCT-ID": VICTIM},
                "client baggage": {
                    "baggage": f"posthog.distinct_id={VICTIM},posthog.session_id={SESSION}"
                },
                "client baggage, encoded key": {"baggage": f"posthog%2Edistinct_id={VICTIM}"},
            }
            traces = {}
            for name, headers in cases.items():
                rid = str(uuid.uuid4())
                r = requests.get(
                    edge.url + "/api/recommendations",
                    headers={**headers, "X-Request-ID": rid},
                    timeout=10,
                )
                assert r.status_code == 200, name
                traces[name] = rid.replace("-", "")
            for name, trace_id in traces.items():
                for event in _inner_events(sink, trace_id):
                    if name == "jwt":  # a verified person still reaches the inner service
                        assert event.distinct_id == USER
                        assert event.properties["session_id"] == SESSION
                        assert "$process_person_profile" not in event.properties
                    else:
                        assert event.distinct_id != VICTIM, name
                        assert event.properties["$process_person_profile"] is False, name


def test_client_posthog_baggage_is_not_forwarded_by_an_edge_on_defaults(sink, downstream):
    env = launcher_env(sink, EXAMPLE_DOWNSTREAM_URL=downstream.url)
    with AppProcess(env, argv=uvicorn_argv(PLAIN_APP)) as edge:
        r = requests.get(
            edge.url + "/api/recommendations",
            headers={
                "Authorization": _bearer(),
                "baggage": f"tenant=acme,posthog.distinct_id={VICTIM},POSTHOG.session_id=x",
            },
            timeout=10,
        )
        assert r.status_code == 200
    assert len(downstream.seen) == 2
    for _, headers in downstream.seen:
        assert headers["baggage"] == "tenant=acme"  # the app's own entries still travel
        assert "posthog" not in headers["baggage"].lower()
        assert "traceparent" in headers


def test_identity_goes_only_to_allowed_hosts(sink, downstream):
    """The allow-list excludes the downstream (127.0.0.1): no identity, the trace still goes."""
    env = launcher_env(
        sink,
        OTEL_POSTHOG_PROPAGATE_IDENTITY="true",
        OTEL_POSTHOG_PROPAGATE_IDENTITY_HOSTS=".internal,users-svc,10.0.0.0/8",
        EXAMPLE_DOWNSTREAM_URL=downstream.url,
    )
    with AppProcess(env, argv=uvicorn_argv(PLAIN_APP)) as edge:
        r = requests.get(
            edge.url + "/api/recommendations",
            headers={"Authorization": _bearer(), "X-POSTHOG-SESSION-ID": SESSION},
            timeout=10,
        )
        assert r.status_code == 200
    assert len(downstream.seen) == 2
    for _, headers in downstream.seen:
        assert "posthog" not in headers.get("baggage", "")
        assert "traceparent" in headers


# -- the propagator with the real SDK and W3C propagators -------------------------------------
@pytest.fixture
def tracer():
    provider = TracerProvider()
    yield provider.get_tracer("hops")
    provider.shutdown()


def _request_context(person: str | None = None, header_person: str | None = None):
    state = RequestState()
    state.jwt_distinct_id = person
    state.header_distinct_id = header_person
    state.session_id = SESSION
    return otel_context.set_value(STATE_KEY, state)


def _outbound(tracer, ctx, url: str | None, propagator, kind=trace.SpanKind.CLIENT) -> dict:
    attributes = {"http.method": "GET", "http.url": url} if url else {"http.method": "GET"}
    carrier: dict[str, str] = {}
    token = otel_context.attach(ctx)  # the request's context, as the server instrumentation
    try:
        with tracer.start_as_current_span("GET", kind=kind, attributes=attributes):
            propagator.inject(carrier)
    finally:
        otel_context.detach(token)
    return carrier


def test_inject_sends_only_the_verified_person_to_allowed_hosts(tracer):
    ours = PostHogPropagator(propagate_identity=True, trust_baggage=False)
    verified = _request_context(person=USER)
    sent = _outbound(tracer, verified, "http://users-svc:8080/v1/me", ours)
    assert sent == {"baggage": f"posthog.distinct_id={USER},posthog.session_id={SESSION}"}
    for url in ("https://api.stripe.com/v1/charges", "http://8.8.8.8/", "http://10.0.0.5.nip.io/"):
        assert _outbound(tracer, verified, url, ours) == {}, url
    # the client's X-POSTHOG-DISTINCT-ID is never propagated, even to an internal host
    unverified = _request_context(header_person=VICTIM)
    sent = _outbound(tracer, unverified, "http://10.1.2.3/", ours)
    assert sent == {"baggage": f"posthog.session_id={SESSION}"}


def test_identify_and_trusted_baggage_persons_are_passed_on(tracer):
    """identify() is verified; a person from baggage is passed on only by a service that
    trusts baggage (an inner service calling a third one)."""
    ours = PostHogPropagator(propagate_identity=True, trust_baggage=False)
    ctx = _request_context(header_person=VICTIM)
    ctx.get(STATE_KEY).identified_id = "user_identified"
    sent = _outbound(tracer, ctx, "http://10.0.0.7/", ours)
    assert sent["baggage"].startswith("posthog.distinct_id=user_identified,")
    inbound = {"baggage": f"posthog.distinct_id={USER},tenant=acme"}
    for trust, expected in ((True, f"tenant=acme,posthog.distinct_id={USER}"), (False, None)):
        hop = CompositePropagator(
            [
                W3CBaggagePropagator(),
                PostHogPropagator(propagate_identity=True, trust_baggage=trust),
            ]
        )
        extracted = hop.extract(inbound)
        assert "posthog.distinct_id" not in baggage.get_all(extracted)
        out = _outbound(tracer, extracted, "http://inner.internal/", hop)
        assert out["baggage"] == (expected or "tenant=acme"), trust


def test_inject_fails_closed_when_the_destination_is_unknown(tracer):
    ours = PostHogPropagator(propagate_identity=True, trust_baggage=False)
    verified = _request_context(person=USER)
    assert _outbound(tracer, verified, None, ours) == {}  # a CLIENT span without a URL
    # inject() under the request's own SERVER span: its URL is not the destination
    assert _outbound(tracer, verified, "http://127.0.0.1/", ours, trace.SpanKind.SERVER) == {}
    carrier: dict[str, str] = {}
    ours.inject(carrier, verified)  # no span at all
    assert carrier == {}
    # a sampled-out trace: the CLIENT span is not recorded and has no attributes
    unsampled = TracerProvider(sampler=ALWAYS_OFF)
    sent = _outbound(unsampled.get_tracer("off"), verified, "http://127.0.0.1/", ours)
    assert sent == {}


def test_allow_list_setting_replaces_the_default(tracer):
    ours = PostHogPropagator(propagate_identity=True, identity_hosts=["api.partner.example"])
    verified = _request_context(person=USER)
    assert "baggage" in _outbound(tracer, verified, "https://API.partner.example./x", ours)
    assert _outbound(tracer, verified, "http://127.0.0.1:9000/", ours) == {}


@pytest.mark.parametrize("order", ["baggage first", "posthog first"])
def test_inbound_posthog_baggage_is_dropped_in_either_composite_order(tracer, order):
    members = [TraceContextTextMapPropagator(), W3CBaggagePropagator(), PostHogPropagator()]
    if order == "posthog first":
        members = [members[2], members[0], members[1]]
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator(members))
    try:
        install_propagators()  # as configure() and the distro do: ours is moved last
        composite = propagate.get_global_textmap()
        inbound = {"baggage": f"tenant=acme,posthog.distinct_id={VICTIM}"}
        ctx = composite.extract(inbound)
        assert dict(baggage.get_all(ctx)) == {"tenant": "acme"}
        assert isinstance(ctx.get(STATE_KEY), RequestState)
        # the app (or a library) puts posthog.* in baggage itself: rewritten on the way out
        own = baggage.set_baggage("posthog.distinct_id", VICTIM, ctx)
        assert _outbound(tracer, own, "http://10.0.0.9/", composite)["baggage"] == "tenant=acme"
        alone = baggage.set_baggage("posthog.distinct_id", VICTIM, otel_context.Context())
        assert "baggage" not in _outbound(tracer, alone, "http://10.0.0.9/", composite)
    finally:
        propagate.set_global_textmap(previous)


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "127.0.0.1",
        "127.8.9.1",
        "::1",
        "10.20.30.40",
        "172.16.0.1",
        "192.168.1.1",
        "fd12:3456::1",
        "::ffff:10.0.0.1",
        "users-svc",
        "db.internal",
        "printer.local",
        "api.default.svc",
        "api.default.svc.cluster.local",
        "app.localhost",
    ],
)
def test_default_allow_list_is_internal_hosts(host):
    assert HostPolicy().allows(host)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "api.stripe.com",
        "8.8.8.8",
        "169.254.169.254",  # cloud metadata: link-local, not a service
        "2001:4860:4860::8888",
        "internal.evil.com",
        "svc.evil.com",
        "localhost.evil.com",
        "10.0.0.1.nip.io",
    ],
)
def test_default_allow_list_excludes_other_hosts(host):
    assert not HostPolicy().allows(host)


def test_allow_list_entries_are_validated():
    s = resolve_settings(
        {"OTEL_POSTHOG_PROPAGATE_IDENTITY_HOSTS": ".internal, users-svc ,10.0.0.0/8"}
    )
    assert s.propagate_identity_hosts == (".internal", "users-svc", "10.0.0.0/8")
    for bad in ("*", "http://api.internal", "a b", "10.0.0.0/33"):
        with pytest.raises(ConfigError, match="OTEL_POSTHOG_PROPAGATE_IDENTITY_HOSTS"):
            resolve_settings({"OTEL_POSTHOG_PROPAGATE_IDENTITY_HOSTS": bad})


# -- sampling: a client cannot choose its outcome ----------------------------------------------
def _view(trace_id: int) -> SpanView:
    attrs = {"http.request.method": "GET", "url.path": "/x", "http.response.status_code": 200}
    return SpanView(
        name="GET /x",
        kind=SERVER,
        trace_id=trace_id,
        span_id=1,
        parent_span_id=None,
        parent_is_remote=False,
        start_ns=0,
        end_ns=1_000_000,
        attributes=attrs,
        resource={"service.name": "api"},
    )


def test_sampling_cannot_be_chosen_through_the_trace_id():
    """Trace ids whose random bits are all zero were always kept; now about half are."""
    s = Settings(api_request_sample_rate=0.5, sampling_key="one key for every service")
    chosen = [(n << 64) for n in range(1, 201)]  # the rightmost 56 bits are zero
    kept = sum(1 for t in chosen if map_span(_view(t), s))
    assert 60 < kept < 140
    # every service with the same key agrees; a different key decides differently
    same = Settings(api_request_sample_rate=0.5, sampling_key="one key for every service")
    ids = [uuid.UUID(int=n * 0x9E3779B97F4A7C15 + 7).int for n in range(500)]
    mine = [sampled(t, 0.5, sampling_key(s)) for t in ids]
    assert mine == [sampled(t, 0.5, sampling_key(same)) for t in ids]
    assert mine != [sampled(t, 0.5, sampling_key(Settings(sampling_key="other"))) for t in ids]
    assert sampling_key(Settings()) == sampling_key(Settings())  # unset: one key per process


# -- the request rules over real HTTP ---------------------------------------------------------
@pytest.fixture(scope="module")
def bridge():
    from otel_posthog.sink.server import LocalSink

    sink = LocalSink().start()
    b = Bridge(sink)
    yield b
    b.stop()
    sink.stop()


def _event(bridge: Bridge, request_id: str):
    events = bridge.events_for(request_id, {"api_request"})
    return next(e for e in events if e.event == "api_request")


def test_anonymous_request_id_never_lands_on_a_person(bridge):
    r = bridge.request("GET", "/api/popular/movies", headers={"X-Request-ID": USER})
    assert r.status_code == 200 and r.headers["x-request-id"] == USER
    event = _event(bridge, USER)
    assert event.distinct_id == f"request:{USER}"
    assert event.properties["$process_person_profile"] is False
    assert bridge.sink.events(distinct_id=USER) == []
    # a verified person is the person, whatever X-Request-ID says
    token = jwt.encode(
        {"sub": "user_real", "aud": "authenticated", "exp": int(time.time()) + 600},
        SUPABASE_SECRET,
        algorithm="HS256",
    )
    rid = "req-" + uuid.uuid4().hex
    bridge.request(
        "GET",
        "/api/popular/movies",
        headers={"X-Request-ID": rid, "Authorization": f"Bearer {token}"},
    )
    assert _event(bridge, rid).distinct_id == "user_real"


def _server_span(bridge: Bridge, trace_id: str):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for span in bridge.spans.get_finished_spans():
            if span.kind is trace.SpanKind.SERVER and f"{span.context.trace_id:032x}" == trace_id:
                return span
        time.sleep(0.05)
    raise AssertionError(f"no server span for {trace_id}")


def test_session_id_span_attribute_only_for_a_uuid(bridge):
    for session, expected in (("<script>not-a-uuid</script>", None), (SESSION, SESSION)):
        rid = str(uuid.uuid4())
        headers = {"X-Request-ID": rid, "X-POSTHOG-SESSION-ID": session}
        assert bridge.request("GET", "/api/popular/movies", headers=headers).status_code == 200
        span = _server_span(bridge, rid.replace("-", ""))
        assert span.attributes.get("session.id") == expected


def test_format_characters_and_bad_utf8_in_headers(bridge):
    """U+202E (bidi override) and U+2028 are stripped; invalid UTF-8 is replaced, and a
    backslash in a header is text, never an escape sequence."""
    cases = {
        "abc\u202edef\u2028ghi\u200b".encode(): "abcdefghi",
        b"id\\x41\\u202e-\xff": "id\\x41\\u202e-\ufffd",
    }
    for raw, expected in cases.items():
        r = bridge.request("GET", "/api/popular/movies", headers={"X-Request-ID": raw})
        assert r.status_code == 200
        event = _event(bridge, expected)
        assert event.properties["request_id"] == expected


INVISIBLE = ("Cc", "Cf", "Zl", "Zp", "Cs")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(
        st.one_of(
            st.characters(codec="utf-8"),
            st.characters(categories=["Cf", "Zl", "Zp", "Cc"]),
            st.sampled_from("\u202e\u202d\u2066\u2069\u2028\u2029\u200b\u200f\ufeff\u00ad"),
        ),
        max_size=200,
    ),
    st.integers(min_value=1, max_value=300),
)
def test_sanitize_strips_format_characters(value, limit):
    out = sanitize(value, limit)
    assert out is None or 0 < len(out) <= limit
    assert out is None or not any(unicodedata.category(c) in INVISIBLE for c in out)
    # what is visible stays, in order
    kept = value[: limit * 4]
    visible = "".join(c for c in kept if unicodedata.category(c) not in INVISIBLE)
    assert (out or "") == visible.strip()[:limit]
