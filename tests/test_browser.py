"""The frontend half in a real browser: headless Debian Chromium, real posthog-js, real servers.

The example app runs under uvicorn (page and API on one origin, or the API on another port),
posthog-js and the bridge both send to the local capture server, and the assertions read the
events it stored: the frontend event and the backend event of one call share ``request_id``,
``$session_id`` and the person.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright import sync_api

from otel_posthog.sink.server import LocalSink, free_port
from otel_posthog.sink.store import StoredEvent
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, AppProcess, bridge_env

pytestmark = pytest.mark.browser

USER = "user_browser_42"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def start_apps(make: Any, attempts: int = 3) -> list[AppProcess]:
    """Start the apps ``make()`` returns; new ports if another process took one meanwhile."""
    for attempt in range(attempts):
        apps: list[AppProcess] = []
        try:
            for app in make():
                apps.append(app)
                app.start()
            return apps
        except RuntimeError as exc:
            for app in apps:
                app.stop()
            if "address already in use" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@contextmanager
def servers(
    sink: LocalSink, cross_origin: bool, posthog_options: dict[str, Any] | None = None
) -> Iterator[tuple[str, AppProcess]]:
    """(page URL, API process): one app, or a page app plus an API app on another port."""
    options = {"EXAMPLE_POSTHOG_OPTIONS": json.dumps(posthog_options or {})}
    origins: list[str] = []

    def make() -> list[AppProcess]:
        if not cross_origin:
            app = AppProcess(bridge_env(sink, **options))
            origins[:] = [app.url]
            return [app]
        page_port, api_port = free_port(), free_port()
        page_origin = f"http://localhost:{page_port}"  # another host name, too
        origins[:] = [page_origin]
        api_env = bridge_env(sink, EXAMPLE_CORS_ORIGINS=page_origin)
        page_env = bridge_env(sink, EXAMPLE_API_BASE=f"http://127.0.0.1:{api_port}", **options)
        return [AppProcess(api_env, port=api_port), AppProcess(page_env, port=page_port)]

    apps = start_apps(make)
    try:
        yield origins[0] + "/", apps[0]
    finally:
        for app in apps:
            app.stop()


def requests_to(page: Any, sent: list[dict[str, str]], count: int) -> list[dict[str, str]]:
    """The API requests seen so far, once there are ``count`` (browser events arrive async)."""
    for _ in range(100):
        if len(sent) >= count:
            break
        page.wait_for_timeout(50)
    assert len(sent) >= count, sent
    return sent


def wait_events(sink: LocalSink, check: Any, timeout_s: float = 30.0) -> list[StoredEvent]:
    events = sink.wait_for(lambda evs: bool(check(evs)), timeout_s=timeout_s)
    assert check(events), [(e.event, e.distinct_id, e.properties.get("request_id")) for e in events]
    return events


def one(events: list[StoredEvent], name: str, **props: Any) -> StoredEvent:
    found = [
        e
        for e in events
        if e.event == name and all(e.properties.get(k) == v for k, v in props.items())
    ]
    assert len(found) == 1, (name, props, [(e.event, e.properties) for e in events])
    return found[0]


def has(events: list[StoredEvent], name: str, **props: Any) -> bool:
    return any(
        e.event == name and all(e.properties.get(k) == v for k, v in props.items()) for e in events
    )


@contextmanager
def browser_page(browser: Any, url: str) -> Iterator[tuple[Any, list[dict[str, str]]]]:
    """A page on ``url`` in a fresh browser context, and the API requests' headers as sent.

    Keep it open until the frontend events are stored: posthog-js sends them from the page.
    """
    context = browser.new_context()
    try:
        page = context.new_page()
        sent: list[dict[str, str]] = []
        page.on(
            "request",
            lambda req: (
                sent.append({"url": req.url, **req.headers}) if "/api/" in req.url else None
            ),
        )
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        assert not errors, errors
        yield page, sent
    finally:
        context.close()


def click_and_wait(page: Any, selector: str, count: int) -> dict[str, Any]:
    page.click(selector)
    page.wait_for_function(f"window.exampleResults.length >= {count}")
    return page.evaluate(f"window.exampleResults[{count - 1}]")


def journey(page: Any) -> dict[str, Any]:
    """Log in, Start Chat, send a message, call the failing route; returns what the page saw."""
    page.fill("#user-id", USER)
    login = click_and_wait(page, "#login-button", 1)
    page.wait_for_function("!document.getElementById('start-chat').disabled")
    chat = click_and_wait(page, "#start-chat", 2)
    page.fill("#message", "hello from chromium")
    send = click_and_wait(page, "#send-button", 3)
    fail = click_and_wait(page, "#recommendations", 4)
    return {
        "login": login,
        "chat": chat,
        "send": send,
        "fail": fail,
        "session_id": page.evaluate("window.posthog.get_session_id()"),
        "distinct_id": page.evaluate("window.posthog.get_distinct_id()"),
    }


@pytest.mark.parametrize("cross_origin", [False, True], ids=["same-origin", "cross-origin"])
def test_frontend_and_backend_events_share_request_session_and_person(
    browser: Any, sink: LocalSink, cross_origin: bool
) -> None:
    with servers(sink, cross_origin) as (url, api), browser_page(browser, url) as (page, sent):
        seen = journey(page)
        chat, send, fail = seen["chat"], seen["send"], seen["fail"]
        session = seen["session_id"]
        assert seen["distinct_id"] == USER
        assert chat["status"] == 200 and send["status"] == 200

        # what the browser sent: our traceparent plus posthog-js' tracing headers
        by_rid = {}
        for headers in requests_to(page, sent, 4):
            match = TRACEPARENT.match(headers.get("traceparent", ""))
            assert match, headers
            by_rid[match.group(1)] = headers
        for call in (chat, send, fail):
            headers = by_rid[call["requestId"]]
            assert headers["x-posthog-session-id"] == session
            assert headers["x-posthog-window-id"]
        assert by_rid[chat["requestId"]]["x-posthog-distinct-id"] == USER
        assert chat["responseRequestId"] == chat["requestId"]  # exposed X-Request-ID

        rid = chat["requestId"]
        events = wait_events(
            sink,
            lambda evs: (
                has(evs, "button_click", request_id=rid)
                and has(evs, "chat_started", request_id=rid)
                and has(evs, "api_request", request_id=rid)
                and has(evs, "chat_message_sent", request_id=send["requestId"])
                and has(evs, "api_request", request_id=send["requestId"])
                and has(evs, "api_call_failed", request_id=fail["requestId"])
                and has(evs, "api_error", request_id=fail["requestId"])
            ),
        )

        # Start Chat: button_click, chat_started and the backend api_request are one request
        click = one(events, "button_click", request_id=rid)
        assert click.properties["button_name"] == "Start Chat"
        started = one(events, "chat_started", request_id=rid)
        backend = one(events, "api_request", request_id=rid)
        assert (backend.properties["method"], backend.properties["endpoint"]) == (
            "GET",
            "/api/chat/messages",
        )
        assert backend.properties["source"] == "backend"
        for event in (click, started, backend):
            assert event.distinct_id == USER  # posthog.identify() id == verified JWT subject
            assert event.properties["$session_id"] == session
        assert backend.properties.get("$window_id") == click.properties.get("$window_id")

        # send box
        sent_event = one(events, "chat_message_sent", request_id=send["requestId"])
        sent_backend = one(events, "api_request", request_id=send["requestId"])
        assert sent_backend.properties["endpoint"] == "/api/chat/send"
        assert sent_event.distinct_id == sent_backend.distinct_id == USER
        assert sent_event.properties["$session_id"] == sent_backend.properties["$session_id"]

        # the failing call: the frontend event carries the id made before the call
        failed = one(events, "api_call_failed", request_id=fail["requestId"])
        error = one(events, "api_error", request_id=fail["requestId"])
        assert error.distinct_id == failed.distinct_id == USER
        assert error.properties["$session_id"] == failed.properties["$session_id"] == session
        assert error.properties["status_code"] == 500
        if cross_origin:
            # the 500 is answered outside CORSMiddleware: the browser sees only a TypeError
            assert "Failed to fetch" in fail["error"], fail
            assert fail.get("status") is None
            assert "Failed to fetch" in failed.properties["error"]
            log = api.output()
            for path in ("/api/auth/login", "/api/chat/messages", "/api/chat/send"):
                assert re.search(rf'"OPTIONS {re.escape(path)} HTTP/1.1" 200', log), log
        else:
            assert fail["status"] == 500 and failed.properties["status"] == 500
            assert fail["responseRequestId"] == fail["requestId"]

        # no event for the preflight, none for the page's own assets
        for event in sink.events():
            assert event.properties.get("method") != "OPTIONS", event
            path = str(event.properties.get("path", ""))
            assert not path.startswith(("/static", "/vendor", "/otel-posthog")), event
            assert path != "/" or event.properties.get("source") != "backend", event


def test_posthog_trace_propagation_targets_id_is_not_on_posthog_events(
    browser: Any, sink: LocalSink
) -> None:
    """posthog-js' own ``trace_propagation_targets`` makes a traceparent the backend uses,
    but neither hands its id to the page nor puts it on posthog-js' events; and it leaves
    the traceparent set by ``otel-posthog.js`` alone."""
    with servers(sink, False) as (url, _api):
        host = url.rstrip("/")
        with browser_page(browser, url) as (page, sent):
            page.evaluate(
                "async (host) => { window.posthog.set_config({trace_propagation_targets: [host]});"
                " await fetch(host + '/api/popular/movies');"
                " window.posthog.capture('movies_viewed', {}) }",
                host,
            )
            page.fill("#user-id", USER)
            login = click_and_wait(page, "#login-button", 1)
            page.wait_for_function("!document.getElementById('start-chat').disabled")
            chat = click_and_wait(page, "#start-chat", 2)
            plain = next(
                h for h in requests_to(page, sent, 3) if h["url"].endswith("/api/popular/movies")
            )
            match = TRACEPARENT.match(plain.get("traceparent", ""))
            assert match, plain  # posthog-js generated a sampled traceparent
            posthog_trace_id = match.group(1)
            events = wait_events(
                sink,
                lambda evs: (
                    has(evs, "api_request", request_id=posthog_trace_id)
                    and has(evs, "movies_viewed")
                    and has(evs, "button_click", request_id=chat["requestId"])
                    and has(evs, "api_request", request_id=chat["requestId"])
                ),
            )
            # the backend took posthog-js' trace id as request_id...
            one(events, "api_request", request_id=posthog_trace_id)
            # ...but no posthog-js event carries it
            for event in events:
                if event.properties.get("source") != "backend":
                    assert posthog_trace_id not in json.dumps(event.properties), event
            # our traceparent survives posthog-js' patch for a listed host
            for call in (login, chat):
                headers = next(
                    h for h in sent if h["traceparent"].split("-")[1] == call["requestId"]
                )
                assert headers["traceparent"].startswith(f"00-{call['requestId']}-")


def test_helper_session_headers_and_traced_fetch_without_posthog_tracing_headers(
    browser: Any, sink: LocalSink
) -> None:
    """With posthog-js' ``tracing_headers`` off, ``traced({posthog, sessionHeaders: true})``
    sends the session headers itself, and ``tracedFetch`` hands each request id over first."""
    with servers(sink, True, {"tracing_headers": []}) as (url, api):
        with browser_page(browser, url) as (page, sent):
            got = page.evaluate(
                """async (api) => {
                  const { traced, tracedFetch } = await import('/otel-posthog.js')
                  const posthog = window.posthog
                  posthog.identify('user_header_only')
                  const call = traced({ posthog, sessionHeaders: true })
                  call.capture('button_click', { button_name: 'Movies' })
                  const res = await call.fetch(api + '/api/popular/movies')
                  const seen = []
                  const apiFetch = tracedFetch({ targets: [api], onRequest: (r) => seen.push(r) })
                  let error = null
                  try { await apiFetch(api + '/api/fail') } catch (e) { error = e }
                  posthog.capture('api_call_failed', { request_id: error.requestId })
                  return { rid: call.requestId, status: res.status, seen,
                           errorRid: error.requestId, session: posthog.get_session_id() }
                }""",
                api.url,
            )
            assert got["status"] == 200
            assert got["seen"] == [{"requestId": got["errorRid"], "url": api.url + "/api/fail"}]
            movies = next(
                h for h in requests_to(page, sent, 2) if h["url"].endswith("/api/popular/movies")
            )
            assert movies["x-posthog-session-id"] == got["session"]
            assert movies["x-posthog-distinct-id"] == "user_header_only"
            assert movies["x-posthog-window-id"]
            fail = next(h for h in sent if h["url"].endswith("/api/fail"))
            assert "x-posthog-session-id" not in fail  # tracedFetch without posthog: no ids
            events = wait_events(
                sink,
                lambda evs: (
                    has(evs, "api_request", request_id=got["rid"])
                    and has(evs, "button_click", request_id=got["rid"])
                    and has(evs, "api_error", request_id=got["errorRid"])
                    and has(evs, "api_call_failed", request_id=got["errorRid"])
                ),
            )
            backend = one(events, "api_request", request_id=got["rid"])
            click = one(events, "button_click", request_id=got["rid"])
            assert backend.properties["$session_id"] == click.properties["$session_id"]
            # no JWT: the header's distinct id is used, as an unverified (anonymous) person
            assert backend.distinct_id == click.distinct_id == "user_header_only"
            assert backend.properties.get("$process_person_profile") is False
