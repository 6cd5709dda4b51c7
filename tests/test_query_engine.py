"""The sink's query engine on events stored through the real capture endpoint: each query
kind the dashboards use, with its numbers, and hostile HogQL refused, never executed."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from otel_posthog.sink import query_engine
from otel_posthog.sink.server import LocalSink

T0 = datetime.now(timezone.utc) - timedelta(minutes=30)
VARS = {"v1": {"variableId": "v1", "code_name": "distinct_id", "value": None}}


def ev(t: float, name: str, person: str = "user_12345", **props: Any) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "event": name,
        "distinct_id": person,
        "timestamp": (T0 + timedelta(seconds=t)).isoformat(),
        "properties": props,
    }


def req(t: float, rid: str, endpoint: str, ms: float, status: int = 200, **kw: Any) -> dict:
    props = {"request_id": rid, "endpoint": endpoint, "method": "GET", "source": "backend"}
    return ev(t, "api_request", status_code=status, response_time_ms=ms, **props, **kw)


EVENTS = [
    ev(0, "$pageview", **{"$pathname": "/login"}),
    ev(1, "button_click", request_id="rid-chat", button_name="Start Chat", source="frontend"),
    req(2, "rid-chat", "/api/chat/messages", 45),
    req(3, "rid-chat2", "/api/chat/messages", 60),
    ev(4, "chat_message_sent", request_id="rid-slow", source="frontend"),
    req(5, "rid-slow", "/api/chat/send", 1200),
    ev(5, "slow_request", request_id="rid-slow", endpoint="/api/chat/send", duration_ms=1200),
    ev(6, "recommendations_requested", request_id="rid-fail", source="frontend"),
    req(7, "rid-fail", "/api/fail", 7, status=500),
    ev(7, "api_error", request_id="rid-fail", endpoint="/api/fail", status_code=500,
       error_type="RuntimeError", error_message="down"),
    ev(8, "$pageview", person="user_other"),
    req(9, "rid-other", "/api/popular/movies", "30", person="user_other"),
    ev(10, "old", person="user_other", **{"$session_id": "s"}),
]  # fmt: skip
EVENTS[-1]["timestamp"] = (T0 - timedelta(days=40)).isoformat()


@pytest.fixture(scope="module")
def sink() -> Iterator[LocalSink]:
    server = LocalSink().start()
    resp = requests.post(server.url + "/batch/", json={"api_key": server.api_key, "batch": EVENTS})
    assert resp.ok
    yield server
    server.stop()


def run(sink: LocalSink, query: dict[str, Any], **values: Any) -> dict[str, Any]:
    return query_engine.compute(sink.store, query, values)


def trends(**source: Any) -> dict[str, Any]:
    return {"kind": "InsightVizNode", "source": {"kind": "TrendsQuery", **source}}


def sql(query: str, variables: dict[str, Any] | None = VARS) -> dict[str, Any]:
    source: dict[str, Any] = {"kind": "HogQLQuery", "query": query}
    if variables is not None:
        source["variables"] = variables
    return {"kind": "DataVisualizationNode", "source": source}


def values(result: dict[str, Any]) -> dict[str, Any]:
    assert result["kind"] == "trends", result
    return {s["label"]: s["aggregated_value"] for s in result["series"]}


def test_trends_count_breakdown_and_filters(sink: LocalSink) -> None:
    slow = trends(
        series=[{"kind": "EventsNode", "event": "slow_request", "math": "total"}],
        breakdownFilter={"breakdown": "endpoint", "breakdown_type": "event"},
        trendsFilter={"display": "ActionsBarValue"},
    )
    assert values(run(sink, slow)) == {"/api/chat/send": 1}
    errors = trends(
        series=[{"kind": "EventsNode", "event": "api_request"}],
        properties=[{"key": "status_code", "type": "event", "operator": "gte", "value": 400}],
        breakdownFilter={"breakdowns": [{"property": "endpoint", "type": "event"}]},
    )
    assert values(run(sink, errors)) == {"/api/fail": 1}
    by_event = trends(
        series=[{"kind": "EventsNode", "event": None, "name": "All events"}],
        breakdownFilter={"breakdown": "event", "breakdown_type": "event_metadata"},
    )
    assert run(sink, by_event)["kind"] == "not_computed"  # not a kind the sink knows
    by_event["source"]["breakdownFilter"] = {"breakdown": "$event", "breakdown_type": "event"}
    got = values(run(sink, by_event))
    assert got["api_request"] == 5 and got["$pageview"] == 2 and "old" not in got  # -7d
    hourly = run(
        sink,
        trends(series=[{"kind": "EventsNode", "event": "api_request"}], interval="hour"),
    )
    (series,) = hourly["series"]
    assert sum(series["data"]) == series["aggregated_value"] == 5
    assert len(hourly["labels"]) == len(series["data"]) >= 24 * 7


def test_trends_property_math(sink: LocalSink) -> None:
    math = ["avg", "median", "max", "min", "sum", "p90", "p95", "p99"]
    series = [
        {
            "kind": "EventsNode",
            "event": "api_request",
            "math": m,
            "math_property": "response_time_ms",
        }
        for m in math
    ]
    got = values(run(sink, trends(series=series, dateRange={"date_from": "-24h"})))
    # 45, 60, 1200, 7 and "30" (a string property still counts as a number)
    labels = {m: f"api_request ({m} of response_time_ms)" for m in math}
    assert got[labels["avg"]] == pytest.approx(268.4)
    assert got[labels["median"]] == 45 and got[labels["max"]] == 1200 and got[labels["min"]] == 7
    assert got[labels["sum"]] == 1342
    assert got[labels["p90"]] == pytest.approx(60 + 0.6 * 1140)
    assert got[labels["p95"]] == pytest.approx(60 + 0.8 * 1140)
    assert got[labels["p99"]] == pytest.approx(60 + 0.96 * 1140)
    dau = trends(series=[{"kind": "EventsNode", "event": "$pageview", "math": "dau"}])
    assert list(values(run(sink, dau)).values()) == [2]


def test_trends_not_computed_says_why(sink: LocalSink) -> None:
    cases = [
        trends(series=[{"kind": "EventsNode", "event": "x"}], trendsFilter={"formula": "A*2"}),
        trends(series=[{"kind": "EventsNode", "event": "x", "math": "weekly_active"}]),
        trends(series=[{"kind": "ActionsNode", "id": 3}]),
        trends(
            series=[{"kind": "EventsNode", "event": "x"}],
            properties=[{"key": "email", "type": "person", "operator": "exact", "value": "a"}],
        ),
        {"kind": "InsightVizNode", "source": {"kind": "RetentionQuery"}},
    ]
    for query in cases:
        result = run(sink, query)
        assert result["kind"] == "not_computed" and result["reason"], query


def test_funnel_by_person_and_by_request_id(sink: LocalSink) -> None:
    journey = {
        "kind": "InsightVizNode",
        "source": {
            "kind": "FunnelsQuery",
            "series": [
                {"kind": "EventsNode", "event": "$pageview", "name": "Page view"},
                {"kind": "EventsNode", "event": "api_request", "name": "API request"},
                {
                    "kind": "EventsNode",
                    "event": "api_request",
                    "name": "Successful API response",
                    "properties": [
                        {"key": "status_code", "type": "event", "operator": "lt", "value": 400}
                    ],
                },
            ],
            "funnelsFilter": {"funnelWindowInterval": 1, "funnelWindowIntervalUnit": "hour"},
            "dateRange": {"date_from": "-30d"},
        },
    }
    result = run(sink, journey)
    # user_12345 reaches all three; user_other has one api_request: it counts for step 2 only
    assert [s["count"] for s in result["steps"]] == [2, 2, 1]
    assert result["steps"][2]["conversion"] == 50.0
    journey["source"]["funnelsFilter"]["funnelWindowIntervalUnit"] = "second"
    # within 1 s: user_12345's request came 2 s after the page view
    assert [s["count"] for s in run(sink, journey)["steps"]] == [2, 1, 0]

    by_request = {
        "kind": "InsightVizNode",
        "source": {
            "kind": "FunnelsQuery",
            "series": [
                {
                    "kind": "EventsNode",
                    "event": None,
                    "properties": [
                        {"key": "source", "type": "event", "operator": "exact", "value": "frontend"}
                    ],
                },
                {
                    "kind": "EventsNode",
                    "event": "api_request",
                    "properties": [
                        {"key": "status_code", "type": "event", "operator": "lt", "value": 400}
                    ],
                },
            ],
            "funnelsFilter": {"funnelAggregateByHogQL": "properties.request_id"},
        },
    }
    result = run(sink, by_request)
    # frontend actions rid-chat, rid-slow, rid-fail; their own requests succeeded for two
    assert [s["count"] for s in result["steps"]] == [3, 2]


def test_events_query_table(sink: LocalSink) -> None:
    query = {
        "kind": "DataTableNode",
        "source": {
            "kind": "EventsQuery",
            "select": [
                "timestamp",
                "properties.endpoint",
                "properties.response_time_ms -- Response time",
                "properties.status_code",
                "person",
            ],
            "event": "api_request",
            "where": ["distinct_id = 'user_12345'"],
            "properties": [
                {"key": "method", "type": "event", "operator": "exact", "value": ["GET"]}
            ],
            "orderBy": ["properties.response_time_ms DESC"],
            "limit": 3,
        },
    }
    result = run(sink, query)
    assert result["columns"][2] == "Response time"
    assert [r[1:] for r in result["rows"]] == [
        ["/api/chat/send", 1200, 200, "user_12345"],
        ["/api/chat/messages", 60, 200, "user_12345"],
        ["/api/chat/messages", 45, 200, "user_12345"],
    ]
    grouped = {
        "kind": "DataTableNode",
        "source": {
            "kind": "EventsQuery",
            "select": ["properties.endpoint", "count()"],
            "event": "api_request",
            "orderBy": ["count() DESC", "properties.endpoint"],
        },
    }
    rows = run(sink, grouped)["rows"]
    assert rows[0] == ["/api/chat/messages", 2] and len(rows) == 4


def test_hogql_guide_queries_with_the_person_variable(sink: LocalSink) -> None:
    timeline = sql(
        "SELECT timestamp, event, properties.endpoint AS endpoint, "
        "properties.request_id AS request_id FROM events "
        "WHERE distinct_id = {variables.distinct_id} AND timestamp > now() - INTERVAL 7 DAY "
        "ORDER BY timestamp ASC LIMIT 500"
    )
    rows = run(sink, timeline, distinct_id="user_other")["rows"]
    assert [r[1] for r in rows] == ["$pageview", "api_request"]  # the 40-day-old one is out
    assert len(run(sink, timeline, distinct_id="user_12345")["rows"]) == 10
    missing = run(sink, timeline)
    assert missing["kind"] == "not_computed" and "distinct_id" in missing["reason"]
    undeclared = run(sink, sql(timeline["source"]["query"], {}), distinct_id="user_other")
    assert undeclared["reason"] == "Variable distinct_id is missing from query"

    p95 = sql(
        "SELECT properties.endpoint AS endpoint, count() AS requests, "
        "quantile(0.95)(toFloat(properties.response_time_ms)) AS p95_ms, "
        "avg(properties.response_time_ms) AS avg_ms FROM events "
        "WHERE event = 'api_request' AND {filters} GROUP BY endpoint ORDER BY p95_ms DESC",
        None,
    )
    result = run(sink, p95)
    assert result["columns"] == ["endpoint", "requests", "p95_ms", "avg_ms"]
    assert result["rows"][0] == ["/api/chat/send", 1, 1200.0, 1200.0]
    assert result["rows"][1] == ["/api/chat/messages", 2, pytest.approx(59.25), 52.5]

    correlated = sql(
        "SELECT timestamp, event, properties.request_id AS request_id FROM events "
        "WHERE timestamp > now() - INTERVAL 7 DAY AND properties.request_id IN ("
        "SELECT properties.request_id FROM events WHERE event = 'api_error' "
        "AND distinct_id = {variables.distinct_id} AND timestamp > now() - INTERVAL 7 DAY) "
        "ORDER BY request_id, timestamp"
    )
    rows = run(sink, correlated, distinct_id="user_12345")["rows"]
    assert [r[1] for r in rows] == ["recommendations_requested", "api_request", "api_error"]
    assert {r[2] for r in rows} == {"rid-fail"}

    hourly = sql(
        "SELECT toStartOfHour(timestamp) AS hour, countIf(event = 'api_error') AS errors, "
        "count(DISTINCT distinct_id) AS people, max(properties.status_code) AS worst "
        "FROM events WHERE timestamp >= today() - INTERVAL 1 DAY AND "
        "(event IN ('api_error', 'api_request') OR NOT event LIKE '$%') "
        "GROUP BY hour ORDER BY hour",
        None,
    )
    result = run(sink, hourly)
    assert result["kind"] == "table", result
    assert sum(r[1] for r in result["rows"]) == 1
    assert all(r[0].endswith(":00:00+00:00") for r in result["rows"])


HOSTILE = [
    "SELECT event FROM events; DROP TABLE events",
    "SELECT event FROM events WHERE 1 = 1; DELETE FROM events",
    "SELECT name FROM sqlite_master",
    "SELECT event FROM events UNION ALL SELECT name FROM sqlite_master",
    "SELECT load_extension('/tmp/x') FROM events",
    "SELECT readfile('/etc/passwd') FROM events",
    "SELECT event FROM events JOIN persons ON 1",
    "WITH x AS (SELECT 1) SELECT event FROM events",
    'SELECT properties.`a"); DROP TABLE events; --` FROM events',
    "SELECT `c0` FROM events",
    "SELECT event FROM events WHERE event = 'x' /* comment */",
    "ATTACH DATABASE '/tmp/evil.db' AS evil",
    "SELECT event FROM events " + "WHERE event = 'x' " * 2000,
    "SELECT event FROM events LIMIT 1 OFFSET (SELECT 1)",
    "SELECT {variables.distinct_id} FROM events",
]


def test_hostile_hogql_is_refused_and_never_executed(sink: LocalSink) -> None:
    before = sink.store.count()
    for text in HOSTILE:
        result = run(sink, sql(text, {}), distinct_id="x")
        assert result["kind"] == "not_computed", (text, result)
    # an alias is a name shown, never SQL
    alias = 'SELECT event "); DROP TABLE events; --" FROM events LIMIT 1'
    assert run(sink, sql(alias, {}))["columns"] == ["); DROP TABLE events; --"]
    # a variable's value is data, never SQL
    query = sql("SELECT event FROM events WHERE distinct_id = {variables.distinct_id} LIMIT 100")
    for value in ("x' OR '1'='1", 'x" OR 1=1 --', "'); DROP TABLE events; --"):
        assert run(sink, query, distinct_id=value)["rows"] == []
    # property names, filter values and breakdowns too
    weird = trends(
        series=[{"kind": "EventsNode", "event": "api_request"}],
        properties=[{"key": "endpoint') OR 1=1 --", "type": "event", "operator": "exact",
                     "value": "x' OR '1'='1"}],
        breakdownFilter={"breakdown": "a']; DROP TABLE events; --", "breakdown_type": "event"},
    )  # fmt: skip
    assert values(run(sink, weird)) == {}
    bad_key = trends(
        series=[{"kind": "EventsNode", "event": "api_request"}],
        breakdownFilter={"breakdown": 'x"); DROP TABLE events; --', "breakdown_type": "event"},
    )
    assert run(sink, bad_key)["kind"] == "not_computed"
    # and the store itself refuses anything but reading events, whatever SQL reaches it
    for statement in ("DELETE FROM events", "DROP TABLE events", "SELECT * FROM sqlite_master"):
        with pytest.raises(sqlite3.DatabaseError):
            sink.store.select(statement, {}, query_engine.prepare)
    assert sink.store.count() == before == len(EVENTS)


def test_more_hogql_functions_and_clauses(sink: LocalSink) -> None:
    query = sql(
        "SELECT DISTINCT lower(event) AS name, if(properties.status_code >= 500, 'bad', 'ok') "
        "AS verdict, coalesce(properties.endpoint, '-') AS endpoint, "
        "concat(event, ':', toString(properties.status_code)) AS label, "
        "round(properties.response_time_ms / 7, 1) AS sevenths, "
        "dateDiff('second', timestamp, now()) > 0 AS past, "
        "toStartOfDay(timestamp) = toStartOfDay(now() - INTERVAL 30 MINUTE) OR "
        "toStartOfDay(timestamp) = toStartOfDay(now()) AS today_or_so "
        "FROM events WHERE properties.response_time_ms BETWEEN 7 AND 45 "
        "AND properties.error_type IS NULL AND event ILIKE 'API_%' ORDER BY sevenths",
        None,
    )
    result = run(sink, query)
    assert result["kind"] == "table", result
    assert result["rows"] == [
        ["api_request", "bad", "/api/fail", "api_request:500", 1.0, 1, 1],
        ["api_request", "ok", "/api/popular/movies", "api_request:200", 4.3, 1, 1],
        ["api_request", "ok", "/api/chat/messages", "api_request:200", 6.4, 1, 1],
    ]
    having = sql(
        "SELECT distinct_id, count() AS n, uniq(properties.request_id) AS requests, "
        "toStartOfMonth(min(timestamp)) AS month, toStartOfWeek(max(timestamp)) AS week "
        "FROM events WHERE timestamp > now() - INTERVAL 1 DAY "
        "GROUP BY distinct_id HAVING count() > 2 ORDER BY n DESC",
        None,
    )
    rows = run(sink, having)["rows"]
    assert [r[:3] for r in rows] == [["user_12345", 10, 4]]
    assert rows[0][3].endswith("-01T00:00:00+00:00") and rows[0][4].endswith("T00:00:00+00:00")


def test_property_operators_and_session_math(sink: LocalSink) -> None:
    def count(*filters: dict[str, Any], math: str = "total") -> Any:
        node = {"kind": "EventsNode", "event": "api_request", "math": math}
        return list(values(run(sink, trends(series=[node], properties=list(filters)))).values())

    def f(op: str, key: str = "endpoint", value: Any = None) -> dict[str, Any]:
        return {"key": key, "type": "event", "operator": op, "value": value}

    assert count(f("icontains", value="CHAT")) == [3]
    assert count(f("not_icontains", value="chat")) == [2]
    assert count(f("exact", value=["/api/fail", "/api/chat/send"])) == [2]
    assert count(f("is_not", value="/api/fail")) == [4]
    assert count(f("is_set", key="error_type")) == []  # no api_request has one: no series
    assert count(f("is_not_set", key="error_type"), f("lte", "status_code", 200)) == [4]
    assert count({"type": "hogql", "key": "properties.status_code = 500"}) == [1]
    assert count(math="unique_session") == [0]  # none of these has a $session_id


def test_date_strings(sink: LocalSink) -> None:
    from otel_posthog.sink.query_engine import parse_date

    now = datetime(2026, 3, 31, 15, 30, tzinfo=timezone.utc)
    assert parse_date("-7d", now) == datetime(2026, 3, 24, tzinfo=timezone.utc)
    assert parse_date("-24h", now) == datetime(2026, 3, 30, 15, 30, tzinfo=timezone.utc)
    assert parse_date("-1w", now) == datetime(2026, 3, 24, tzinfo=timezone.utc)
    assert parse_date("-1m", now) == datetime(2026, 2, 28, tzinfo=timezone.utc)
    assert parse_date("-3m", now) == datetime(2025, 12, 31, tzinfo=timezone.utc)
    assert parse_date("dStart", now) == datetime(2026, 3, 31, tzinfo=timezone.utc)
    assert parse_date("mStart", now) == datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert parse_date("all", now) is None
    assert parse_date("2026-01-02", now) == datetime(2026, 1, 2, tzinfo=timezone.utc)
    end = parse_date("2026-01-02", now, end=True)
    assert end is not None and end.date().isoformat() == "2026-01-02" and end.hour == 23
    everything = trends(
        series=[{"kind": "EventsNode", "event": "old"}], dateRange={"date_from": "all"}
    )
    assert list(values(run(sink, everything)).values()) == [1]  # the 40-day-old event
    bad = trends(series=[{"kind": "EventsNode"}], dateRange={"date_from": "last tuesday"})
    assert run(sink, bad)["kind"] == "not_computed"


def test_a_statement_past_its_deadline_is_ended(
    sink: LocalSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_posthog.sink import store

    monkeypatch.setattr(store, "SELECT_DEADLINE_S", -1.0)
    monkeypatch.setattr(store, "SELECT_CHECK_EVERY", 1)
    result = run(sink, sql("SELECT count() FROM events", None))
    assert result["kind"] == "not_computed" and "interrupted" in result["reason"]
    monkeypatch.undo()
    assert run(sink, sql("SELECT count() FROM events", None))["rows"] == [[len(EVENTS)]]


def test_persons_merged_by_identify_as_in_posthog() -> None:
    """posthog-js' anonymous page view and the identified API calls are one person."""
    events = [
        ev(0, "$pageview", person="anon-1"),
        ev(1, "$identify", person="user_a", **{"$anon_distinct_id": "anon-1"}),
        req(2, "r1", "/api/x", 5, person="user_a"),
        ev(3, "$pageview", person="anon-2"),  # never identified: a person of its own
    ]
    with LocalSink() as server:
        body = {"api_key": server.api_key, "batch": events}
        assert requests.post(server.url + "/batch/", json=body, timeout=5).ok
        steps = [
            {"kind": "EventsNode", "event": "$pageview"},
            {"kind": "EventsNode", "event": "api_request"},
        ]
        funnel = {"kind": "InsightVizNode", "source": {"kind": "FunnelsQuery", "series": steps}}
        result = run(server, funnel)
        assert [s["count"] for s in result["steps"]] == [2, 1]
        dau = trends(series=[{"kind": "EventsNode", "event": None, "math": "dau"}])
        assert list(values(run(server, dau)).values()) == [2]
        people = sql(
            "SELECT person_id, count() AS n FROM events GROUP BY person_id ORDER BY n DESC", None
        )
        assert run(server, people)["rows"] == [["user_a", 3], ["anon-2", 1]]
        # distinct_id itself stays what the event carried
        ids = sql("SELECT DISTINCT distinct_id FROM events ORDER BY distinct_id", None)
        assert run(server, ids)["rows"] == [["anon-1"], ["anon-2"], ["user_a"]]


def test_malformed_queries_are_not_computed_never_a_crash(sink: LocalSink) -> None:
    events_node = {"kind": "EventsNode", "event": "api_request"}
    cases: list[Any] = [
        None,
        "SELECT 1",
        {"kind": "InsightVizNode"},
        {"kind": "InsightVizNode", "source": "TrendsQuery"},
        trends(series="api_request"),
        trends(series=[events_node], interval="fortnight"),
        trends(series=[events_node], breakdownFilter={"breakdown_limit": "many", "breakdown": "x"}),
        trends(series=[events_node], properties={"type": "AND", "values": ["x"]}),
        trends(series=[{**events_node, "math": "p95"}]),  # no math_property
        {"kind": "InsightVizNode", "source": {"kind": "FunnelsQuery", "series": [events_node]}},
        {
            "kind": "InsightVizNode",
            "source": {
                "kind": "FunnelsQuery",
                "series": [events_node, events_node],
                "funnelsFilter": {"funnelWindowInterval": "soon"},
            },
        },
        {
            "kind": "DataTableNode",
            "source": {"kind": "EventsQuery", "select": ["event"], "limit": "x"},
        },
        {"kind": "DataTableNode", "source": {"kind": "EventsQuery", "select": "event"}},
        sql("SELECT " + "(" * 5000 + "1" + ")" * 5000 + " FROM events", None),
        {"kind": "DataVisualizationNode", "source": {"kind": "HogQLQuery", "query": 42}},
    ]
    for query in cases:
        result = run(sink, query)
        assert result["kind"] == "not_computed" and result["reason"], (query, result)
    # a huge LIMIT is capped, not an error
    huge = sql("SELECT event FROM events LIMIT 99999999999999999999999", None)
    assert len(run(sink, huge)["rows"]) == len(EVENTS)


def test_string_literals_compare_as_hogql_does(sink: LocalSink) -> None:
    day = (T0 + timedelta(seconds=7)).strftime("%Y-%m-%d")
    at = (T0 + timedelta(seconds=6, milliseconds=500)).strftime("%Y-%m-%d %H:%M:%S.%f")
    query = sql(
        "SELECT event FROM events WHERE properties.status_code = '500' "
        f"AND timestamp > '{at}' AND timestamp >= '{day}' "
        f"AND toStartOfDay(timestamp) = '{day} 00:00:00' AND toDate(timestamp) = '{day}'",
        None,
    )
    assert run(sink, query)["rows"] == [["api_request"], ["api_error"]]
    bad = sql("SELECT event FROM events WHERE timestamp > 'yesterday-ish'", None)
    assert run(sink, bad)["kind"] == "not_computed"


def test_events_query_defaults_last_24_hours_nothing_from_the_future() -> None:
    now = datetime.now(timezone.utc)
    events = [ev(0, "recent"), ev(0, "old"), ev(0, "future")]
    events[0]["timestamp"] = (now - timedelta(hours=1)).isoformat()
    events[1]["timestamp"] = (now - timedelta(hours=25)).isoformat()
    events[2]["timestamp"] = (now + timedelta(hours=1)).isoformat()
    with LocalSink() as server:
        body = {"api_key": server.api_key, "batch": events}
        assert requests.post(server.url + "/batch/", json=body, timeout=5).ok
        table = {"kind": "DataTableNode", "source": {"kind": "EventsQuery", "select": ["event"]}}
        assert run(server, table)["rows"] == [["recent"]]
        table["source"]["after"] = "all"
        assert run(server, table)["rows"] == [["recent"], ["old"]]
        table["source"]["before"] = (now + timedelta(days=1)).isoformat()
        assert run(server, table)["rows"] == [["future"], ["recent"], ["old"]]


def test_boolean_properties_read_as_posthog_text() -> None:
    """A JSON boolean property (``$ai_is_error``) is ``'true'``/``'false'`` as in PostHog, in
    property filters, breakdowns, HogQL comparisons and SELECT (SQLite alone reads 1/0)."""
    events = [
        ev(0, "$ai_generation", **{"$ai_model": "m1", "$ai_is_error": True}),
        ev(1, "$ai_generation", **{"$ai_model": "m1", "$ai_is_error": False}),
        ev(2, "$ai_generation", **{"$ai_model": "m2", "$ai_is_error": True}),
    ]
    with LocalSink() as sink:
        body = {"api_key": sink.api_key, "batch": events}
        assert requests.post(sink.url + "/batch/", json=body, timeout=5).ok
        series = [{"kind": "EventsNode", "event": "$ai_generation", "math": "total"}]
        by_model = {"breakdown": "$ai_model", "breakdown_type": "event"}
        for value in ("true", ["true"], True):
            failed = [{"key": "$ai_is_error", "type": "event", "operator": "exact", "value": value}]
            query = trends(series=series, properties=failed, breakdownFilter=by_model)
            assert values(run(sink, query)) == {"m1": 1, "m2": 1}, value
        ok = [{"key": "$ai_is_error", "type": "event", "operator": "is_not", "value": "true"}]
        assert values(run(sink, trends(series=series, properties=ok))) == {"$ai_generation": 1}
        by_flag = {"breakdown": "$ai_is_error", "breakdown_type": "event"}
        assert values(run(sink, trends(series=series, breakdownFilter=by_flag))) == {
            "true": 2,
            "false": 1,
        }
        counts = sql(
            "SELECT countIf(properties.$ai_is_error = 'true'), "
            "countIf(toString(properties.$ai_is_error) = 'true'), "
            "countIf(properties.$ai_is_error = true), countIf(false = properties.$ai_is_error) "
            "FROM events",
            None,
        )
        assert run(sink, counts)["rows"] == [[2, 2, 2, 1]]
        flags = sql("SELECT properties.$ai_is_error FROM events ORDER BY timestamp", None)
        assert run(sink, flags)["rows"] == [["true"], ["false"], ["true"]]
