"""The local sink against what really posts to PostHog: posthog-python, posthog-js' body forms.

Every test talks to a real sink (uvicorn on 127.0.0.1) over HTTP.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
from posthog import Client

from otel_posthog.sink.server import LocalSink
from otel_posthog.sink.store import EventStore


def event(name: str = "api_request", person: str = "user_1", **props: object) -> dict:
    return {
        "uuid": str(uuid.uuid4()),
        "event": name,
        "distinct_id": person,
        "properties": dict(props),
        "timestamp": datetime.now(timezone.utc).isoformat(),
    }


def post_batch(sink: LocalSink, events: list[dict], key: str | None = None, **kw: object):
    body = {"api_key": sink.api_key if key is None else key, "batch": events}
    return requests.post(sink.url + "/batch/", json=body, timeout=5, **kw)


def test_posthog_python_client_gzip_batch(sink: LocalSink) -> None:
    client = Client(sink.api_key, host=sink.url, gzip=True, flush_at=50, sync_mode=False)
    ids = [
        client.capture(
            "api_request", distinct_id="user_py", properties={"request_id": f"r{i}", "n": i}
        )
        for i in range(30)
    ]
    client.flush()
    client.shutdown()
    found = sink.wait_for(lambda evs: len(evs) >= 30, distinct_id="user_py")
    assert sorted(e.uuid for e in found) == sorted(str(i) for i in ids)
    assert {e.properties["request_id"] for e in found} == {f"r{i}" for i in range(30)}
    assert "token" not in found[0].properties
    assert sink.app.state.stats["rejected"] == 0


def test_posthog_python_sync_mode(sink: LocalSink) -> None:
    client = Client(sink.api_key, host=sink.url, sync_mode=True)
    client.capture("button_click", distinct_id="u_sync", properties={"button_name": "Go"})
    assert [e.event for e in sink.events(distinct_id="u_sync")] == ["button_click"]


def test_duplicate_uuids_collapse(sink: LocalSink) -> None:
    ev = event(request_id="dup")
    assert post_batch(sink, [ev, ev]).status_code == 200
    assert post_batch(sink, [ev]).status_code == 200
    assert len(sink.events(request_id="dup")) == 1
    stats = requests.get(sink.url + "/_sink/stats", timeout=5).json()
    assert stats["received"] == 3 and stats["stored"] == 1 and stats["events"] == 1


@pytest.mark.parametrize("key", ["", "phc_wrong"])
def test_wrong_or_missing_key_is_401_and_stores_nothing(sink: LocalSink, key: str) -> None:
    response = post_batch(sink, [event(), event()], key=key)
    assert response.status_code == 401
    assert "api_key" in response.json()["detail"]
    assert sink.store.count() == 0


def test_one_bad_key_rejects_the_whole_batch(sink: LocalSink) -> None:
    good, bad = event(), {**event(), "api_key": "phc_other"}
    body = {"batch": [{**good, "api_key": sink.api_key}, bad]}
    assert requests.post(sink.url + "/batch/", json=body, timeout=5).status_code == 401
    assert sink.store.count() == 0


GARBAGE = [  # with the right key (the key is checked before parsing: without it, 401)
    (b"not json at all KEY", {}),
    (b"\x1f\x8b\x08\x00garbage", {}),
    (b"data=B64:not json KEY", {"Content-Type": "application/x-www-form-urlencoded"}),
    (b'"KEY"', {"Content-Type": "application/json"}),
    (b'[1, 2, "KEY"]', {"Content-Type": "application/json"}),
    (b'{"api_key": "KEY", "batch": [{"distinct_id": "x"}]}', {}),
    (b'{"api_key": "KEY", "batch": [{"event": "e"}]}', {}),
    (b"\xff\xfe\x00", {"Content-Encoding": "gzip"}),
]


def fill(body: bytes, key: str) -> bytes:
    """``KEY`` replaced by the sink's key; what follows ``B64:`` base64-encoded."""
    body = body.replace(b"KEY", key.encode())
    head, marker, rest = body.partition(b"B64:")
    return head + base64.b64encode(rest) if marker else body


@pytest.mark.parametrize(("body", "headers"), GARBAGE)
def test_garbage_is_400_with_a_reason(sink: LocalSink, body: bytes, headers: dict) -> None:
    body = fill(body, sink.api_key)
    response = requests.post(sink.url + "/e/", data=body, headers=headers, timeout=5)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]
    assert requests.get(sink.url + "/_sink/health", timeout=5).text == "ok"
    assert sink.store.count() == 0


def test_garbage_never_stops_the_server(sink: LocalSink) -> None:
    for body, headers in GARBAGE * 3:
        body = fill(body, sink.api_key)
        response = requests.post(sink.url + "/batch/", data=body, headers=headers, timeout=5)
        assert response.status_code == 400, body
    assert post_batch(sink, [event(request_id="after")]).status_code == 200
    assert len(sink.events(request_id="after")) == 1


def js_events(sink: LocalSink, name: str, person: str) -> list[dict]:
    return [
        {
            "uuid": str(uuid.uuid4()),
            "event": name,
            "properties": {
                "token": sink.api_key,
                "distinct_id": person,
                "$session_id": "019a3b6b-634f-72e5-a430-d105b888fb87",
                "request_id": "82b0da6e-9c9b-422b-b748-9e16ea98f45b",
                "$lib": "web",
            },
            "timestamp": datetime.now(timezone.utc).isoformat(),
        }
    ]


@pytest.mark.parametrize("path", ["/e/", "/i/v0/e/", "/batch/"])
def test_posthog_js_gzip_js_text_plain(sink: LocalSink, path: str) -> None:
    body = gzip.compress(json.dumps(js_events(sink, "button_click", "u_js")).encode())
    response = requests.post(
        sink.url + path + "?compression=gzip-js&ip=0&_=1730000000000&ver=1.200.0",
        data=body,
        headers={"Content-Type": "text/plain", "Origin": "http://127.0.0.1:3000"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"  # any origin, no credentials
    assert "access-control-allow-credentials" not in response.headers
    (stored,) = sink.events(distinct_id="u_js")
    assert stored.properties["request_id"] == "82b0da6e-9c9b-422b-b748-9e16ea98f45b"
    assert sink.events(session_id="019a3b6b-634f-72e5-a430-d105b888fb87") == [stored]


def test_posthog_js_base64_form_data(sink: LocalSink) -> None:
    data = base64.b64encode(json.dumps(js_events(sink, "$pageview", "u_form")).encode()).decode()
    response = requests.post(
        sink.url + "/e/?compression=base64",
        data={"data": data},
        timeout=5,
    )
    assert response.status_code == 200
    assert [e.event for e in sink.events(distinct_id="u_form")] == ["$pageview"]


def test_single_event_on_capture_and_track(sink: LocalSink) -> None:
    for path in ("/capture/", "/track/"):
        body = {"api_key": sink.api_key, **event("signup_started", "u_single")}
        assert requests.post(sink.url + path, json=body, timeout=5).status_code == 200
    assert len(sink.events(distinct_id="u_single")) == 2


def test_sent_at_corrects_client_clock_skew(sink: LocalSink) -> None:
    client_now = datetime.now(timezone.utc) - timedelta(hours=3)  # a client 3 h behind
    ev = event(person="u_skew")
    ev["timestamp"] = (client_now - timedelta(seconds=5)).isoformat()
    body = {"api_key": sink.api_key, "batch": [ev], "sent_at": client_now.isoformat()}
    assert requests.post(sink.url + "/batch/", json=body, timeout=5).status_code == 200
    (stored,) = sink.events(distinct_id="u_skew")
    age = datetime.now(timezone.utc) - datetime.fromisoformat(stored.timestamp)
    assert timedelta(seconds=4) < age < timedelta(seconds=30)


def test_posthog_js_configuration_calls(sink: LocalSink) -> None:
    for path in ("/flags/?v=2", "/decide/?v=4"):
        reply = requests.post(sink.url + path, json={"token": sink.api_key}, timeout=5)
        assert reply.status_code == 200 and reply.json()["featureFlags"] == {}
    config = requests.get(f"{sink.url}/array/{sink.api_key}/config", timeout=5).json()
    assert config["token"] == sink.api_key
    script = requests.get(f"{sink.url}/array/{sink.api_key}/config.js", timeout=5)
    assert script.headers["content-type"].startswith("application/javascript")
    assert sink.api_key in script.text
    preflight = requests.options(
        sink.url + "/e/",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=5,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers


def test_web_view_json_filters(sink: LocalSink) -> None:
    post_batch(
        sink,
        [
            event("button_click", "u_a", request_id="r1", button_name="Start Chat"),
            event("api_request", "u_a", request_id="r1", response_time_ms=12.5),
            event("api_request", "u_b", request_id="r2", session_id="s2"),
        ],
    )
    get = lambda q: requests.get(sink.url + "/_sink/events" + q, timeout=5).json()  # noqa: E731
    assert [e["event"] for e in get("?user=u_a")["events"]] == ["button_click", "api_request"]
    assert [e["distinct_id"] for e in get("?request=r2")["events"]] == ["u_b"]
    assert [e["distinct_id"] for e in get("?session=s2")["events"]] == ["u_b"]
    assert len(get("?event=api_request")["events"]) == 2
    assert requests.get(sink.url + "/_sink/events?since=nope", timeout=5).status_code == 400
    facets = requests.get(sink.url + "/_sink/facets", timeout=5).json()
    assert {p["value"] for p in facets["people"]} == {"u_a", "u_b"}
    assert facets["total"] == 3
    page = requests.get(sink.url + "/", timeout=5)
    assert page.status_code == 200 and "/_sink/view.js" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_database_is_shared_with_a_readonly_reader(tmp_path) -> None:
    db = str(tmp_path / "events.db")
    with pytest.raises(FileNotFoundError):
        EventStore(db, readonly=True)
    assert not (tmp_path / "events.db").exists()
    with LocalSink(db) as sink:
        post_batch(sink, [event(request_id="wal")])
        reader = EventStore(db, readonly=True)
        assert [e.properties["request_id"] for e in reader.query()] == ["wal"]
        post_batch(sink, [event(request_id="wal2")])
        assert len(reader.query()) == 2
        reader.close()
