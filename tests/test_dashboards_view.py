"""The sink's /dashboards in headless Debian Chromium: dashboards made through the sink's REST
API (as ``otel-posthog dashboards apply`` makes them), every tile computed from events stored
through the capture endpoint, for the person picked in the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright import sync_api

from otel_posthog.sink.server import LocalSink
from tests.helpers import CHROMIUM, CHROMIUM_ARGS
from tests.test_query_engine import EVENTS, ev

pytestmark = pytest.mark.browser

VARIABLE = "0f8a3f0e-8c55-4b0a-9f6d-3b1f6f1c0001"
PERSON_VARS = {VARIABLE: {"variableId": VARIABLE, "code_name": "distinct_id", "value": None}}


def person_sql(query: str) -> dict[str, Any]:
    return {
        "kind": "DataVisualizationNode",
        "source": {"kind": "HogQLQuery", "query": query, "variables": PERSON_VARS},
    }


def by_endpoint(event: str, display: str) -> dict[str, Any]:
    return {
        "kind": "InsightVizNode",
        "source": {
            "kind": "TrendsQuery",
            "series": [{"kind": "EventsNode", "event": event, "math": "total"}],
            "breakdownFilter": {"breakdown": "endpoint", "breakdown_type": "event"},
            "dateRange": {"date_from": "-7d"},
            "trendsFilter": {"display": display},
        },
    }


DASHBOARDS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "User Journey Timeline": [
        (
            "Person timeline",
            person_sql(
                "SELECT timestamp, event, distinct_id AS person, properties.request_id AS "
                "request_id, properties.endpoint AS endpoint FROM events WHERE distinct_id = "
                "{variables.distinct_id} AND timestamp > now() - INTERVAL 7 DAY "
                "ORDER BY timestamp ASC"
            ),
        ),
        (
            "Page view to successful API response",
            {
                "kind": "InsightVizNode",
                "source": {
                    "kind": "FunnelsQuery",
                    "series": [
                        {"kind": "EventsNode", "event": "$pageview"},
                        {"kind": "EventsNode", "event": "api_request"},
                        {
                            "kind": "EventsNode",
                            "event": "api_request",
                            "properties": [
                                {
                                    "key": "status_code",
                                    "type": "event",
                                    "operator": "lt",
                                    "value": 400,
                                }
                            ],
                        },  # fmt: skip
                    ],
                    "funnelsFilter": {
                        "funnelWindowInterval": 1,
                        "funnelWindowIntervalUnit": "hour",
                    },
                },
            },
        ),
        (
            "Events by name",
            {
                "kind": "InsightVizNode",
                "source": {
                    "kind": "TrendsQuery",
                    "series": [{"kind": "EventsNode", "event": None, "name": "All events"}],
                    "breakdownFilter": {"breakdown": "$event", "breakdown_type": "event"},
                    "interval": "hour",
                },
            },
        ),
    ],
    "API Performance by User": [
        (
            "Response time",
            {
                "kind": "InsightVizNode",
                "source": {
                    "kind": "TrendsQuery",
                    "series": [
                        {
                            "kind": "EventsNode",
                            "event": "api_request",
                            "math": "p95",
                            "math_property": "response_time_ms",
                        },
                        {
                            "kind": "EventsNode",
                            "event": "api_request",
                            "math": "avg",
                            "math_property": "response_time_ms",
                        },
                    ],  # fmt: skip
                    "interval": "hour",
                    "trendsFilter": {"display": "ActionsLineGraph"},
                },
            },
        ),
        ("Slow requests by endpoint", by_endpoint("slow_request", "ActionsBarValue")),
        (
            "Slow requests in total",
            {
                "kind": "InsightVizNode",
                "source": {
                    "kind": "TrendsQuery",
                    "series": [{"kind": "EventsNode", "event": "slow_request"}],
                    "trendsFilter": {"display": "BoldNumber"},
                },
            },
        ),
        (
            "Successful requests",
            {
                "kind": "DataTableNode",
                "source": {
                    "kind": "EventsQuery",
                    "select": ["timestamp", "properties.endpoint", "properties.response_time_ms"],
                    "event": "api_request",
                    "where": ["properties.status_code < 400"],
                    "orderBy": ["timestamp ASC"],
                },
            },
        ),
    ],
    "Error Tracking by User": [
        ("Errors by endpoint", by_endpoint("api_error", "ActionsBar")),
        (
            "Errors of the person",
            person_sql(
                "SELECT timestamp, properties.error_type AS error_type, properties.endpoint AS "
                "endpoint, properties.error_message AS error_message FROM events WHERE "
                "event = 'api_error' AND distinct_id = {variables.distinct_id} ORDER BY timestamp"
            ),
        ),
        (
            "Errors by week of year",
            person_sql("SELECT toISOWeek(timestamp), count() FROM events GROUP BY 1"),
        ),
    ],
}


@pytest.fixture(scope="module")
def sink() -> Iterator[LocalSink]:
    server = LocalSink().start()
    hostile = ev(9, "<img src=x onerror=alert(1)>", person="user_other", note="<b>not bold</b>")
    body = {"api_key": server.api_key, "batch": [*EVENTS, hostile]}
    assert requests.post(server.url + "/batch/", json=body, timeout=5).ok
    base = server.url + "/api/projects/1/"
    headers = {"Authorization": f"Bearer {server.personal_api_key}"}
    # the person variable, as apply makes it: an empty default is no person
    variable = {"name": "distinct_id", "type": "String", "default_value": ""}
    made_var = requests.post(base + "insight_variables/", json=variable, headers=headers, timeout=5)
    var_id = made_var.json()["id"]
    for name, tiles in DASHBOARDS.items():
        made = {"name": name, "tags": ["otel-posthog"], "description": "<script>x</script>"}
        dash = requests.post(base + "dashboards/", json=made, headers=headers, timeout=5)
        assert dash.status_code == 201, dash.text
        for title, query in tiles:
            query = json.loads(json.dumps(query).replace(VARIABLE, var_id))
            insight = {"name": title, "query": query, "dashboards": [dash.json()["id"]]}
            resp = requests.post(base + "insights/", json=insight, headers=headers, timeout=5)
            assert resp.status_code == 201, resp.text
            if title == "Slow requests by endpoint":
                alert = {
                    "name": "otel-posthog: slow requests",
                    "insight": resp.json()["id"],
                    "subscribed_users": [1],
                    "threshold": {"configuration": {"type": "absolute", "bounds": {"upper": 5}}},
                    "condition": {"type": "absolute_value"},
                    "calculation_interval": "hourly",
                }
                made = requests.post(base + "alerts/", json=alert, headers=headers, timeout=5)
                assert made.status_code == 201, made.text
    cohort = {"name": "Persons with <i>slow</i> requests", "filters": {"properties": {}}}
    assert requests.post(base + "cohorts/", json=cohort, headers=headers, timeout=5).ok
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class View:
    def __init__(self, browser: Any, url: str) -> None:
        self.page = browser.new_page()
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.urls.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("dialog", lambda d: (self.errors.append("dialog " + d.message), d.dismiss()))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-loaded]")

    def tile(self, name: str) -> Any:
        return self.page.locator(f"article.tile[data-name='{name}']")

    def series(self, name: str) -> dict[str, str]:
        return dict(
            self.tile(name)
            .locator("table.series tr")
            .evaluate_all("rows => rows.map(r => [r.dataset.label, r.cells[1].textContent])")
        )

    def rows(self, name: str) -> list[list[str]]:
        return (
            self.tile(name)
            .locator("table.rows tbody tr")
            .evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        )


def open_dashboard(browser: Any, sink: LocalSink, name: str, person: str = "") -> View:
    view = View(browser, sink.url + "/dashboards")
    view.page.click(f"#dashboards a >> text={name}")
    view.page.wait_for_selector("body[data-loaded] #tiles")
    if person:
        view.page.select_option("#person", person)
        view.page.wait_for_url(f"**/dashboards/*?person={person}")
        view.page.wait_for_selector("body[data-loaded] #tiles")
    return view


def test_list_with_alerts_and_cohorts(sink: LocalSink, browser: Any) -> None:
    view = View(browser, sink.url + "/dashboards?person=user_12345")
    links = view.page.locator("#dashboards a")
    assert links.all_inner_texts() == list(DASHBOARDS)
    hrefs = links.evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert all(h.endswith("?person=user_12345") for h in hrefs)
    assert view.page.locator("#alerts li").all_inner_texts() == [
        "otel-posthog: slow requests on Slow requests by endpoint: upper 5, hourly"
    ]
    assert view.page.locator("#cohorts li strong").all_inner_texts() == [
        "Persons with <i>slow</i> requests"
    ]
    for missing in ("999", "x", "1%27%3E"):
        assert requests.get(f"{sink.url}/dashboards/{missing}", timeout=5).status_code == 404
    assert view.errors == []


def test_list_and_user_journey_timeline(sink: LocalSink, browser: Any) -> None:
    view = open_dashboard(browser, sink, "User Journey Timeline", person="user_12345")
    assert view.page.inner_text("#title") == "User Journey Timeline"
    assert view.page.input_value("#person") == "user_12345"
    rows = view.rows("Person timeline")
    assert [r[1] for r in rows][:3] == ["$pageview", "button_click", "api_request"]
    assert {r[2] for r in rows} == {"user_12345"} and len(rows) == 10
    steps = view.tile("Page view to successful API response").locator(".funnel-step .count")
    assert steps.all_inner_texts() == ["2", "2", "1"]
    by_name = view.series("Events by name")
    assert by_name["api_request"] == "5" and by_name["<img src=x onerror=alert(1)>"] == "1"
    # the hostile event name and the dashboard's description are text, never markup
    assert view.page.locator("#tiles img, #tiles b, body script:not([src])").count() == 0
    assert "<script>x</script>" in view.page.inner_text("body")

    # another person, from the URL
    view.page.goto(view.page.url.replace("user_12345", "user_other"))
    view.page.wait_for_selector("body[data-loaded]")
    assert [r[1] for r in view.rows("Person timeline")] == [
        "$pageview",
        "api_request",
        "<img src=x onerror=alert(1)>",
    ]
    assert all(u.startswith(sink.url) for u in view.urls)  # no CDN
    assert view.errors == []


def test_api_performance_numbers(sink: LocalSink, browser: Any) -> None:
    view = open_dashboard(browser, sink, "API Performance by User", person="user_12345")
    assert view.series("Slow requests by endpoint") == {"/api/chat/send": "1"}
    assert view.page.locator("#alerts li").count() == 1
    assert view.tile("Slow requests in total").locator(".bold-number").inner_text() == "1"
    bars = view.tile("Slow requests by endpoint").locator(".bar-row")
    assert bars.all_inner_texts() == ["/api/chat/send\n1"]
    response = view.series("Response time")
    assert response == {
        "api_request (p95 of response_time_ms)": "972",
        "api_request (avg of response_time_ms)": "268.4",
    }
    assert view.tile("Response time").locator("svg.trend polyline").count() == 2
    rows = view.rows("Successful requests")
    assert [r[1:] for r in rows] == [
        ["/api/chat/messages", "45"],
        ["/api/chat/messages", "60"],
        ["/api/chat/send", "1200"],
        ["/api/popular/movies", "30"],
    ]
    assert view.errors == []


def test_error_tracking_and_not_computed(sink: LocalSink, browser: Any) -> None:
    view = open_dashboard(browser, sink, "Error Tracking by User")
    assert view.series("Errors by endpoint") == {"/api/fail": "1"}
    assert view.tile("Errors by endpoint").locator("svg.trend rect").count() == 1
    # no person picked yet: the per-person tile asks for one instead of showing everyone
    assert "pick a value" in view.tile("Errors of the person").inner_text()
    view.page.select_option("#person", "user_12345")
    view.page.wait_for_url("**?person=user_12345")
    view.page.wait_for_selector("body[data-loaded]")
    assert [r[1:] for r in view.rows("Errors of the person")] == [
        ["RuntimeError", "/api/fail", "down"]
    ]
    unsupported = view.tile("Errors by week of year")
    assert unsupported.get_attribute("data-kind") == "not_computed"
    assert "not computed locally: function toISOWeek()" in unsupported.inner_text()
    assert view.errors == []
