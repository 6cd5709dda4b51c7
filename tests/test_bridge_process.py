"""The example app as users run it: a real uvicorn process, stopped by real signals."""

from __future__ import annotations

import signal
import threading
import time

import jwt
import requests

from .helpers import AppProcess, bridge_env, needs_lifespan_hook

VOLATILE = {"request_id", "$trace_id", "$span_id", "response_time_ms", "traceback", "service"}


def token(user: str = "user_12345") -> str:
    now = int(time.time())
    claims = {"sub": user, "aud": "authenticated", "iat": now, "exp": now + 600}
    return jwt.encode(claims, "demo-secret-change-me-before-any-real-use", algorithm="HS256")


@needs_lifespan_hook
def test_request_in_flight_at_sigterm_keeps_its_event(sink):
    # A flush interval of a minute: only the shutdown flush can deliver the event in time.
    env = bridge_env(sink, OTEL_POSTHOG_FLUSH_INTERVAL_MS="60000", EXAMPLE_SLOW_SECONDS="1.0")
    app = AppProcess(env).start()
    result: dict = {}

    def slow_call() -> None:
        r = requests.post(
            app.url + "/api/chat/send",
            json={"text": "in flight", "slow": True},
            headers={"Authorization": f"Bearer {token()}"},
            timeout=20,
        )
        result["status"] = r.status_code
        result["rid"] = r.headers.get("x-request-id")

    worker = threading.Thread(target=slow_call)
    worker.start()
    time.sleep(0.4)
    app.signal(signal.SIGTERM)
    worker.join(20)
    # uvicorn re-raises SIGTERM after its graceful shutdown: exit by that signal is normal
    assert app.wait(20) in (0, -signal.SIGTERM), app.output()
    app.stop()
    assert result["status"] == 200
    events = sink.wait_for(
        lambda evs: {"api_request", "slow_request"} <= {e.event for e in evs},
        5,
        request_id=result["rid"],
    )
    assert {e.event for e in events} >= {"api_request", "slow_request"}, app.output()
    assert all(e.distinct_id == "user_12345" for e in events)


def _journey(app: AppProcess, sink) -> list[dict]:
    headers = {
        "Authorization": f"Bearer {token()}",
        "X-POSTHOG-SESSION-ID": "019a3b6b-634f-72e5-a430-d105b888fb87",
    }
    rids = []
    for method, path in (("GET", "/api/chat/42?q=1"), ("GET", "/api/fail"), ("GET", "/nope")):
        r = requests.request(method, app.url + path, headers=headers, timeout=10)
        rids.append(r.headers["x-request-id"])
    out = []
    for rid in rids:
        evs = sink.wait_for(lambda evs: len(evs) >= 1, 10, request_id=rid)
        time.sleep(0.3)
        evs = sink.events(request_id=rid)
        for e in sorted(evs, key=lambda e: e.event):
            props = {k: v for k, v in e.properties.items() if k not in VOLATILE}
            out.append({"event": e.event, "distinct_id": e.distinct_id, "properties": props})
    return out


def test_both_semconv_generations_make_identical_events(sink):
    results = []
    for mode in ("", "http"):
        env = bridge_env(sink, OTEL_SEMCONV_STABILITY_OPT_IN=mode)
        with AppProcess(env) as app:
            results.append(_journey(app, sink))
    default, stable = results
    assert [e["event"] for e in default] == [
        "api_request",
        "api_error",
        "api_request",
        "api_request",
    ]
    assert default == stable
    assert default[0]["properties"]["path"] == "/api/chat/42"
    assert default[0]["properties"]["endpoint"] == "/api/chat/{chat_id}"
    assert default[3]["properties"]["endpoint"] == "(unmatched)"
