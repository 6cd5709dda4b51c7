"""The local sink with hostile bodies, ``Host`` and ``Origin`` headers, and hostile events.

A real sink on 127.0.0.1, real HTTP (raw sockets where a client library would be too
polite), and the web view in headless Chromium for stored values that are not what the
page expects.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from playwright import sync_api

from otel_posthog.sink.server import LocalSink
from tests.helpers import CHROMIUM, CHROMIUM_ARGS


def event(name: str = "api_request", person: str = "user_1", **props: Any) -> dict:
    return {
        "uuid": str(uuid.uuid4()),
        "event": name,
        "distinct_id": person,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "properties": props,
    }


def raw_request(sink: LocalSink, head: bytes, body: bytes = b"") -> bytes:
    """Send a hand-written request; the status line of the answer."""
    with socket.create_connection((sink.host, sink.port), timeout=15) as sock:
        sock.sendall(head + b"\r\n" + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


# -- size and key before parsing ---------------------------------------------------------------


def test_declared_oversize_body_is_refused_before_it_is_read(sink: LocalSink) -> None:
    head = (
        f"POST /batch/ HTTP/1.1\r\nHost: 127.0.0.1:{sink.port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000000\r\n"
    ).encode()
    assert b" 413 " in raw_request(sink, head)  # answered without waiting for 100 MB


def test_streamed_body_over_the_cap_is_413(sink: LocalSink) -> None:
    chunk = b" " * (1 << 20)
    response = requests.post(
        sink.url + "/batch/", data=iter([chunk] * 21), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert sink.store.count() == 0


def test_wrong_key_is_refused_before_parsing(sink: LocalSink) -> None:
    for body in (b"{not json", b"[" * 100_000, json.dumps({"api_key": "phc_wrong"}).encode()):
        response = requests.post(sink.url + "/batch/", data=body, timeout=10)
        assert response.status_code == 401, (body[:20], response.text)
    assert sink.store.count() == 0


def test_json_nested_too_deep_is_400_never_500(sink: LocalSink) -> None:
    key = sink.api_key
    for depth in (100, 100_000):
        body = f'{{"api_key": "{key}", "batch": [{{"event": "e", "distinct_id": "x", '
        body += '"properties": {"a": ' + "[" * depth + "]" * depth + "}}]}"
        response = requests.post(sink.url + "/batch/", data=body.encode(), timeout=10)
        assert response.status_code == 400, (depth, response.status_code)
        assert "deep" in response.json()["detail"] or "Recursion" in response.json()["detail"]
    assert requests.post(
        sink.url + "/batch/", json={"api_key": key, "batch": [event()]}, timeout=10
    ).ok
    assert sink.store.count() == 1


# -- Host (DNS rebinding) and Origin ------------------------------------------------------------


def test_host_must_be_loopback_or_the_bind_address(sink: LocalSink) -> None:
    port = sink.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
        response = requests.get(sink.url + "/_sink/events", headers={"Host": host}, timeout=10)
        assert response.status_code == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}", "127.0.0.1"):
        for path in ("/_sink/events", "/", "/_sink/facets"):
            response = requests.get(sink.url + path, headers={"Host": host}, timeout=10)
            assert response.status_code == 403, (host, path)
    body = {"api_key": sink.api_key, "batch": [event()]}
    rebound = {"Host": f"attacker.example:{port}"}
    assert requests.post(sink.url + "/batch/", json=body, headers=rebound).status_code == 403
    assert sink.store.count() == 0


def test_cross_origin_capture_without_credentials(sink: LocalSink) -> None:
    evil = {"Origin": "https://evil.example"}
    preflight = requests.options(
        sink.url + "/e/",
        headers={**evil, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    for response in (
        preflight,
        requests.post(sink.url + "/e/", json={"api_key": sink.api_key, **event()}, headers=evil),
    ):
        assert response.ok
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in response.headers
    # the web view's data is never readable cross-origin
    view = requests.get(sink.url + "/_sink/events", headers=evil, timeout=10)
    assert "Access-Control-Allow-Origin" not in view.headers


# -- the web view's API -----------------------------------------------------------------------


def test_nan_and_infinity_never_break_the_web_view(sink: LocalSink) -> None:
    body = (
        f'{{"api_key": "{sink.api_key}", "batch": [{{"event": "e", "distinct_id": "nan-user", '
        '"properties": {"x": NaN, "y": -Infinity, "z": 1}}]}'
    )
    assert requests.post(sink.url + "/batch/", data=body, timeout=10).ok
    (stored,) = sink.events("e")
    assert stored.properties == {"x": None, "y": None, "z": 1}
    # a NaN stored by an older sink (the store writes what it is given)
    sink.store.insert([event("old", v=float("nan"))], "now")
    response = requests.get(sink.url + "/_sink/events", timeout=10)
    assert response.status_code == 200
    old = [e for e in response.json()["events"] if e["event"] == "old"]
    assert old[0]["properties"]["v"] is None
    assert requests.get(sink.url + "/_sink/facets", timeout=10).ok


def test_events_limit_is_clamped(sink: LocalSink) -> None:
    sink.store.insert([event(n=i) for i in range(2005)], "now")
    for limit in ("-1", "0", "999999"):
        found = requests.get(sink.url + "/_sink/events", params={"limit": limit}, timeout=10)
        assert found.status_code == 200
        assert 1 <= len(found.json()["events"]) <= 2000, limit
        assert found.json()["truncated"]


def test_queries_run_off_the_event_loop(sink: LocalSink) -> None:
    """A slow query (here: the store's lock held) never stops the sink from answering."""
    store = sink.store
    entered = threading.Event()
    query = store.query

    def observed(**filters: Any) -> Any:
        entered.set()
        return query(**filters)

    store.query = observed  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as pool:
        with store._lock:
            pending = pool.submit(requests.get, sink.url + "/_sink/events", timeout=60)
            assert entered.wait(30)
            assert requests.get(sink.url + "/_sink/health", timeout=10).text == "ok"
        assert pending.result().status_code == 200


# -- the web view in a browser ----------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.mark.browser
def test_web_view_survives_odd_values_and_marks_unverified_persons(
    sink: LocalSink, browser: Any
) -> None:
    odd = {"toString": 1, "valueOf": 1}  # String() and `${}` throw on this object
    batch = [
        event(request_id=odd, endpoint=odd, status_code=odd, method="GET", response_time_ms=5),
        event("slow_request", request_id=odd, endpoint=odd, threshold_ms=1, duration_ms=5),
        event("$pageview", person="anon-7", request_id="r-1", **{"$process_person_profile": False}),
    ]
    assert requests.post(sink.url + "/batch/", json={"api_key": sink.api_key, "batch": batch}).ok
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(sink.url + "/")
    page.wait_for_selector("body[data-loaded]", timeout=15_000)
    assert page.locator("#timeline tbody tr").count() == 3
    assert '{"toString":1,"valueOf":1}' in page.inner_text("#timeline")
    unverified = page.locator("#timeline tr[data-event='$pageview'] .badge.unverified")
    assert unverified.count() == 1
    assert page.locator("#timeline tr[data-event='api_request'] .unverified").count() == 0
    assert errors == []
    page.close()
