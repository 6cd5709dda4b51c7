"""The sink's web view in headless Debian Chromium (Playwright drives it; no browser download)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from playwright import sync_api

from otel_posthog.sink.server import LocalSink
from tests.helpers import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

SESSION = "019a3b6b-634f-72e5-a430-d105b888fb87"
OTHER_SESSION = "019a3b6b-0000-7000-8000-000000000001"
T0 = datetime.now(timezone.utc) - timedelta(minutes=5)


def ev(t: float, name: str, person: str = "user_12345", **props: Any) -> dict:
    props.setdefault("$session_id", SESSION)
    return {
        "uuid": str(uuid.uuid4()),
        "event": name,
        "distinct_id": person,
        "timestamp": (T0 + timedelta(seconds=t)).isoformat(),
        "properties": props,
    }


def request(t: float, rid: str, endpoint: str, ms: float, status: int = 200, **kw: Any) -> dict:
    props = {"request_id": rid, "endpoint": endpoint, "method": "GET", "source": "backend"}
    return ev(t, "api_request", status_code=status, response_time_ms=ms, **props, **kw)


EVENTS = [
    ev(0, "button_click", request_id="rid-chat", button_name="Start Chat", source="frontend"),
    request(1, "rid-chat", "/api/chat/messages", 45),
    request(2, "rid-chat2", "/api/chat/messages", 60),
    request(3, "rid-slow", "/api/chat/send", 1200),
    ev(3, "slow_request", request_id="rid-slow", endpoint="/api/chat/send", duration_ms=1200,
       threshold_ms=1000, source="backend"),
    request(4, "rid-fail", "/api/fail", 7, status=500),
    ev(4, "api_error", request_id="rid-fail", endpoint="/api/fail", status_code=500,
       error_type="RuntimeError", error_message="down", source="backend"),
    ev(5, "<img src=x onerror=alert(1)>", note="<b>not bold</b>", source="frontend",
       **{"$session_id": OTHER_SESSION}),
    request(6, "rid-other", "/api/popular/movies", 30, person="user_other",
            **{"$session_id": OTHER_SESSION}),
]  # fmt: skip


@pytest.fixture(scope="module")
def sink() -> Iterator[LocalSink]:
    server = LocalSink().start()
    body = {"api_key": server.api_key, "batch": EVENTS}
    assert requests.post(server.url + "/batch/", json=body, timeout=5).ok
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A page with everything it requested and every console error recorded."""

    def __init__(self, browser: Any, url: str) -> None:
        self.page = browser.new_page()
        self.requests: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append((r.method, r.url)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("dialog", lambda d: (self.errors.append("dialog " + d.message), d.dismiss()))
        self.goto(url)

    def goto(self, url: str) -> None:
        self.page.goto(url)
        self.loaded()

    def loaded(self) -> None:
        self.page.wait_for_selector("body[data-loaded]")

    def rows(self) -> list[dict[str, str]]:
        return self.page.eval_on_selector_all(
            "#timeline tbody tr",
            """rows => rows.map(r => ({event: r.dataset.event,
                person: r.cells[2].textContent, rid: r.cells[3].textContent}))""",
        )

    def wait_rows(self, predicate: Any, timeout_s: float = 10) -> list[dict[str, str]]:
        deadline = datetime.now() + timedelta(seconds=timeout_s)
        while True:
            rows = self.rows()
            if predicate(rows) or datetime.now() > deadline:
                return rows
            self.page.wait_for_timeout(100)


def test_journey_of_a_person_with_colours_and_charts(sink: LocalSink, browser: Any) -> None:
    view = Page(browser, sink.url + "/?user=user_12345")
    rows = view.rows()
    assert [r["event"] for r in rows] == [
        "button_click",
        "api_request",
        "api_request",
        "api_request",
        "slow_request",
        "api_request",
        "api_error",
        "<img src=x onerror=alert(1)>",
    ]
    assert {r["person"] for r in rows} == {"user_12345"}
    assert view.page.input_value("#user") == "user_12345"

    colours = view.page.eval_on_selector_all(
        "#timeline .badge",
        "bs => bs.map(b => [b.dataset.event, getComputedStyle(b).backgroundColor])",
    )
    by_event: dict[str, set[str]] = {}
    for name, colour in colours:
        by_event.setdefault(name, set()).add(colour)
    assert all(len(c) == 1 for c in by_event.values()), by_event  # one colour per type
    assert len({c.pop() for c in by_event.values()}) == len(by_event)  # distinct types differ

    charts = view.page.eval_on_selector_all(
        ".chart",
        """cs => cs.map(c => [c.dataset.endpoint, c.querySelectorAll('circle').length,
            [...c.querySelectorAll('circle')].map(p => p.getAttribute('fill'))])""",
    )
    assert {c[0]: c[1] for c in charts} == {
        "GET /api/chat/messages": 2,
        "GET /api/chat/send": 1,
        "GET /api/fail": 1,
    }
    fills = {c[0]: set(c[2]) for c in charts}
    assert fills["GET /api/chat/send"] == {"#d97706"} and fills["GET /api/fail"] == {"#dc2626"}

    # the hostile event name and property are text, never markup
    assert view.page.locator("#timeline img, #timeline b").count() == 0
    assert "<b>not bold</b>" in view.page.inner_text("#timeline")
    assert view.errors == []


def test_filter_by_request_session_and_clear(sink: LocalSink, browser: Any) -> None:
    view = Page(browser, sink.url + "/?user=user_12345")
    view.page.click("#timeline a.rid >> text=rid-chat")
    view.page.wait_for_url("**/?request=rid-chat")
    view.loaded()
    rows = view.wait_rows(lambda rs: {r["rid"] for r in rs} == {"rid-chat"})
    assert [r["event"] for r in rows] == ["button_click", "api_request"]
    assert view.page.input_value("#request") == "rid-chat"

    view.page.fill("#request", "")
    view.page.select_option("#session", OTHER_SESSION)
    both = {"user_12345", "user_other"}
    # the request filter also showed two rows: wait for the session's own two
    rows = view.wait_rows(lambda rs: len(rs) == 2 and {r["person"] for r in rs} == both)
    assert {r["person"] for r in rows} == both
    assert f"session={OTHER_SESSION}" in view.page.url

    view.page.click("#clear")
    rows = view.wait_rows(lambda rs: len(rs) == len(EVENTS))
    assert len(rows) == len(EVENTS)
    view.page.go_back()
    rows = view.wait_rows(lambda rs: len(rs) == 2 and {r["person"] for r in rs} == both)
    assert {r["person"] for r in rows} == both
    assert view.errors == []


def test_live_update_offline_and_read_only(sink: LocalSink, browser: Any) -> None:
    view = Page(browser, sink.url + "/?user=user_live")
    assert view.rows() == []
    assert view.page.is_visible("#empty")
    body = {
        "api_key": sink.api_key,
        "batch": [request(9, "rid-live", "/api/x", 5, person="user_live")],
    }
    assert requests.post(sink.url + "/batch/", json=body, timeout=5).ok
    rows = view.wait_rows(lambda rs: len(rs) == 1, timeout_s=10)
    assert rows and rows[0]["rid"] == "rid-live"
    assert view.page.locator(".chart[data-endpoint='GET /api/x'] circle").count() == 1
    # everything came from the sink itself (no CDN), with GETs only
    assert view.requests and all(url.startswith(sink.url) for _, url in view.requests)
    assert {method for method, _ in view.requests} == {"GET"}
    assert view.errors == []
