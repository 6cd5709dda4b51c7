"""The pure core: SpanView -> PostHog events, rule by rule (no I/O involved)."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timezone

import pytest

from otel_posthog.core.mapping import (
    EVENT_NAMESPACE,
    event_uuid,
    iso_timestamp,
    map_span,
    parse_python_frames,
    sampled,
    sampling_key,
    truncate_tail,
)
from otel_posthog.core.settings import Settings, resolve_settings
from otel_posthog.core.spanview import CustomEvent, ExceptionInfo, RequestFacts, SpanView

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
SPAN = 0xB7AD6B7169203331
SESSION = "019a3b6b-634f-72e5-a430-d105b888fb87"
OLD = {"http.method": "GET", "http.status_code": 200, "http.target": "/api/chat/42?token=s3cret"}
NEW = {"http.request.method": "GET", "http.response.status_code": 200, "url.path": "/api/chat/42"}


def view(
    attrs: dict, duration_ms: float = 45.0, facts: RequestFacts | None = None, **kw
) -> SpanView:
    base = {
        "name": "GET /api/chat/{chat_id}",
        "kind": "server",
        "trace_id": TRACE,
        "span_id": SPAN,
        "parent_span_id": None,
        "parent_is_remote": False,
        "start_ns": 1_700_000_000_000_000_000,
        "end_ns": 1_700_000_000_000_000_000 + int(duration_ms * 1e6),
        "attributes": {"http.route": "/api/chat/{chat_id}", **attrs},
        "resource": {"service.name": "api", "deployment.environment.name": "staging"},
        "facts": facts,
    }
    base.update(kw)
    return SpanView(**base)


def names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def test_api_request_properties_both_semconv_generations_map_identically():
    old, new = map_span(view(OLD), Settings()), map_span(view(NEW), Settings())
    assert names(old) == names(new) == ["api_request"]
    assert old == new
    props = old[0]["properties"]
    assert props["request_id"] == format(TRACE, "032x")
    assert props["$trace_id"] == format(TRACE, "032x")
    assert props["$span_id"] == format(SPAN, "016x")
    assert props["endpoint"] == "/api/chat/{chat_id}"
    assert props["path"] == "/api/chat/42"  # never the query string
    assert props["method"] == "GET"
    assert props["status_code"] == 200 and isinstance(props["status_code"], int)
    assert props["response_time_ms"] == 45.0
    assert props["environment"] == "staging"
    assert props["service"] == "api"
    assert props["source"] == "backend"
    assert props["$process_person_profile"] is False  # anonymous
    assert old[0]["distinct_id"] == "request:" + props["request_id"]
    assert old[0]["timestamp"].startswith("2023-11-14T22:13:20.045")
    assert "token=s3cret" not in str(old)


def test_error_and_slow_events_carry_extras():
    exc = ExceptionInfo(
        "RuntimeError", "down", "Traceback...\n" + "x" * 5000 + "\nRuntimeError: down"
    )
    events = map_span(
        view({**OLD, "http.status_code": 500}, duration_ms=1500, exceptions=(exc,)),
        Settings(traceback_max_chars=100),
    )
    assert names(events) == ["api_request", "api_error", "slow_request"]
    err = events[1]["properties"]
    assert err["error_type"] == "RuntimeError" and err["error_message"] == "down"
    assert len(err["traceback"]) == 100 and err["traceback"].endswith("RuntimeError: down")
    slow = events[2]["properties"]
    assert slow["duration_ms"] == 1500 and slow["threshold_ms"] == 1000
    assert len({e["uuid"] for e in events}) == 3


def test_5xx_without_exception_is_http_status_error():
    events = map_span(view({**NEW, "http.response.status_code": 503}), Settings())
    err = [e for e in events if e["event"] == "api_error"][0]["properties"]
    assert err["error_type"] == "HTTP 503"
    assert err["error_message"] == "Service Unavailable"


def test_4xx_is_not_an_error():
    assert names(map_span(view({**NEW, "http.response.status_code": 404}), Settings())) == [
        "api_request"
    ]


def test_per_route_threshold_and_exclusions():
    s = resolve_settings(env={}, slow_request_thresholds="/api/chat/{chat_id}=2000")
    assert names(map_span(view(NEW, duration_ms=1500), s)) == ["api_request"]
    assert names(map_span(view(NEW, duration_ms=2500), s)) == ["api_request", "slow_request"]
    health = view({**NEW, "http.route": "/health", "url.path": "/health"})
    assert map_span(health, Settings()) == []
    assert map_span(view({**NEW, "http.request.method": "OPTIONS"}), Settings()) == []


def test_only_local_root_server_spans_are_requests():
    assert map_span(view(NEW, kind="internal"), Settings()) == []
    assert map_span(view(NEW, kind="client"), Settings()) == []
    nested = view(NEW, parent_span_id=7, parent_is_remote=False)
    assert map_span(nested, Settings()) == []
    remote_parent = view(NEW, parent_span_id=7, parent_is_remote=True)
    assert names(map_span(remote_parent, Settings())) == ["api_request"]
    no_method = view({"http.route": "/x"})
    assert map_span(no_method, Settings()) == []


def test_unmatched_route():
    attrs = {"http.request.method": "GET", "http.response.status_code": 404, "url.path": "/nope"}
    v = view(attrs)
    v = SpanView(
        v.name, v.kind, v.trace_id, v.span_id, None, False, v.start_ns, v.end_ns, attrs, v.resource
    )
    assert map_span(v, Settings())[0]["properties"]["endpoint"] == "(unmatched)"


def test_identity_precedence():
    s = Settings()
    attrs = {**NEW, "enduser.id": "attr-user"}
    assert map_span(view(attrs), s)[0]["distinct_id"] == "attr-user"
    facts = RequestFacts(header_distinct_id="header-user")
    ev = map_span(view(attrs, facts=facts), s)[0]
    assert ev["distinct_id"] == "header-user"
    assert ev["properties"]["$process_person_profile"] is False
    facts = RequestFacts(header_distinct_id="header-user", jwt_distinct_id="jwt-user")
    ev = map_span(view(attrs, facts=facts), s)[0]
    assert ev["distinct_id"] == "jwt-user" and "$process_person_profile" not in ev["properties"]
    facts = RequestFacts(jwt_distinct_id="jwt-user", identified_id="identified")
    assert map_span(view(attrs, facts=facts), s)[0]["distinct_id"] == "identified"
    # PostHog's own attribute names (posthog-python middleware)
    ph = {**NEW, "posthogDistinctId": "ph-user", "sessionId": SESSION}
    ev = map_span(view(ph), s)[0]
    assert ev["distinct_id"] == "ph-user" and ev["properties"]["$session_id"] == SESSION


def test_session_only_when_valid_uuid():
    ok = map_span(view(NEW, facts=RequestFacts(session_id=SESSION, window_id=SESSION)), Settings())
    assert ok[0]["properties"]["session_id"] == ok[0]["properties"]["$session_id"] == SESSION
    assert ok[0]["properties"]["$window_id"] == SESSION
    bad = map_span(view(NEW, facts=RequestFacts(session_id="not-a-uuid")), Settings())
    assert "session_id" not in bad[0]["properties"] and "$session_id" not in bad[0]["properties"]


def test_request_id_rules():
    adopted = map_span(view(NEW, facts=RequestFacts(request_id="abc-123")), Settings())[0]
    assert adopted["properties"]["request_id"] == "abc-123"
    kept = map_span(view(NEW, facts=RequestFacts(client_request_id="abc-123")), Settings())[0]
    assert kept["properties"]["request_id"] == format(TRACE, "032x")
    assert kept["properties"]["client_request_id"] == "abc-123"


def test_custom_events_share_correlation_and_keep_app_properties():
    facts = RequestFacts(
        session_id=SESSION,
        jwt_distinct_id="u1",
        custom_events=(
            CustomEvent("user_logged_in", {"method": "password", "request_id": "x"}, 1, 0),
            CustomEvent("user_logged_in", {}, 2, 1),
        ),
    )
    events = map_span(view(NEW, facts=facts), Settings())
    custom = [e for e in events if e["event"] == "user_logged_in"]
    assert len(custom) == 2 and custom[0]["uuid"] != custom[1]["uuid"]
    props = custom[0]["properties"]
    assert props["method"] == "password"  # the app's own property wins
    assert props["request_id"] == format(TRACE, "032x")  # correlation always the request's
    assert props["$session_id"] == SESSION and custom[0]["distinct_id"] == "u1"


def test_deterministic_uuids():
    a, b = map_span(view(NEW), Settings()), map_span(view(NEW), Settings())
    assert a[0]["uuid"] == b[0]["uuid"]
    uuid.UUID(a[0]["uuid"])


def test_timestamps_are_iso_utc_rounded_to_the_microsecond():
    rng = random.Random(7)
    for ns in [
        0,
        999,
        500,
        1_700_000_000_999_999_500,
        *(rng.randrange(10**18, 2 * 10**18) for _ in range(2000)),
    ]:
        us = (ns + 500) // 1000
        expected = datetime.fromtimestamp(us // 10**6, tz=timezone.utc)
        assert iso_timestamp(ns) == expected.replace(microsecond=us % 10**6).isoformat()


def test_request_event_uuids_are_v8_from_trace_span_and_kind():
    err = {**NEW, "http.response.status_code": 503}
    events = map_span(view(err, duration_ms=5000), Settings(exception_events=True))
    assert names(events) == ["api_request", "api_error", "$exception", "slow_request"]
    parsed = [uuid.UUID(e["uuid"]) for e in events]
    assert {u.version for u in parsed} == {8} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert len(set(parsed)) == 4  # one per kind
    for u in parsed:  # the trace id's 56 random bits and the span id, recoverable
        h = u.hex  # version nibble at 12, variant (and kind) nibble at 16
        assert int(h[:12] + h[13:15], 16) == TRACE & (1 << 56) - 1
        assert int(h[15] + h[17:], 16) == SPAN
    other_span = map_span(view(err, duration_ms=5000, span_id=SPAN ^ 1), Settings())
    other_trace = map_span(view(err, duration_ms=5000, trace_id=TRACE ^ 1), Settings())
    assert not {e["uuid"] for e in events} & {e["uuid"] for e in other_span + other_trace}
    # capture() events: uuid5 over trace, span, name and index
    assert event_uuid(TRACE, SPAN, "signup", 0) == str(
        uuid.uuid5(EVENT_NAMESPACE, f"{TRACE:032x}:{SPAN:016x}:signup:0")
    )


def test_sampling_is_by_trace_id_and_never_drops_errors_or_slow():
    s = Settings(api_request_sample_rate=0.0)
    events = map_span(view({**NEW, "http.response.status_code": 500}, duration_ms=5000), s)
    assert names(events) == ["api_error", "slow_request"]
    kept = [t for t in range(1, 2001) if sampled(t * 0x9E3779B97F4A7C15, 0.25)]
    assert 350 < len(kept) < 650
    half = Settings(api_request_sample_rate=0.5, sampling_key="k")
    key = sampling_key(half)
    trace_id = next(t for t in range(1, 100) if sampled(t, 0.5, key))
    ev = map_span(view(NEW, trace_id=trace_id), half)
    assert names(ev) == ["api_request"] and ev[0]["properties"]["sample_rate"] == 0.5


def test_exception_event_shape():
    tb = (
        "Traceback (most recent call last):\n"
        '  File "/app/site-packages/starlette/routing.py", line 10, in handle\n'
        "    await self.app(scope)\n"
        '  File "/app/main.py", line 42, in fail\n'
        '    raise RuntimeError("down")\n'
        "RuntimeError: down\n"
    )
    exc = ExceptionInfo("RuntimeError", "down", tb)
    s = Settings(exception_events=True)
    facts = RequestFacts(session_id=SESSION, jwt_distinct_id="u1")
    events = map_span(
        view({**NEW, "http.response.status_code": 500}, exceptions=(exc,), facts=facts), s
    )
    ex = [e for e in events if e["event"] == "$exception"][0]
    props = ex["properties"]
    entry = props["$exception_list"][0]
    assert entry["type"] == "RuntimeError" and entry["value"] == "down"
    frames = entry["stacktrace"]["frames"]
    assert entry["stacktrace"]["type"] == "raw"
    assert [f["function"] for f in frames] == ["handle", "fail"]
    assert frames[1]["lineno"] == 42 and frames[1]["in_app"] is True
    assert frames[0]["in_app"] is False
    assert frames[1]["context_line"] == 'raise RuntimeError("down")'
    assert props["$trace_id"] == format(TRACE, "032x")
    assert props["request_id"] == format(TRACE, "032x")
    assert props["$session_id"] == SESSION and ex["distinct_id"] == "u1"


def test_parse_frames_ignores_noise():
    assert parse_python_frames("no frames here") == []


@pytest.mark.parametrize("limit", [0, 3, 10])
def test_truncate_tail_limits(limit):
    out = truncate_tail("abcdefghijklmnopqrstuvwxyz", limit)
    assert len(out) == limit and (not limit or out.endswith("z"))


def test_environment_setting_wins_and_default():
    assert (
        map_span(view(NEW), Settings(environment="prod"))[0]["properties"]["environment"] == "prod"
    )
    bare = view(NEW, resource={"service.name": "api"})
    assert map_span(bare, Settings())[0]["properties"]["environment"] == "development"


def test_ip_only_when_enabled():
    attrs = {**NEW, "client.address": "203.0.113.9"}
    assert "$ip" not in map_span(view(attrs), Settings())[0]["properties"]
    assert map_span(view(attrs), Settings(capture_ip=True))[0]["properties"]["$ip"] == "203.0.113.9"


def test_sampling_is_unbiased_for_uuid_request_ids():
    kept = sum(sampled(uuid.uuid4().int, 0.5) for _ in range(4000))
    assert 1700 < kept < 2300


@pytest.mark.parametrize(
    "elapsed_ns",
    [0, 1, 499, 500, 501, 1_500, 2_500, 37_123, 45_000_500, 123_456_789, 10**15 + 501, -7],
)
def test_response_time_is_the_duration_rounded_to_microseconds(elapsed_ns):
    """The same float as ``round(max(ns, 0) / 1e6, 3)``, ties and huge spans included."""
    start = 1_700_000_000_000_000_000
    rng = random.Random(elapsed_ns)
    for elapsed in [elapsed_ns] + [
        rng.randrange(0, 10**12) // 1000 * 1000 + 500 for _ in range(50)
    ]:
        v = view(NEW, start_ns=start, end_ns=start + elapsed)
        props = map_span(v, Settings())[0]["properties"]
        assert repr(props["response_time_ms"]) == repr(round(max(elapsed, 0) / 1e6, 3))
