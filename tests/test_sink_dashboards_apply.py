"""``otel-posthog dashboards apply`` of the shipped definitions against the sink: every
object created once, a rerun writes nothing, and every tile computes from local events with
the guide's numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright import sync_api

from otel_posthog.sink import query_engine
from otel_posthog.sink.dashboards_view import _variables
from otel_posthog.sink.server import LocalSink
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, ROOT
from tests.test_query_engine import EVENTS

GUIDE = {"User Journey Timeline", "API Performance by User", "Error Tracking by User"}
LLM = "LLM Usage by Person"
TILES_JS = """ts => Object.fromEntries(ts.map(t => [t.dataset.name, {
  kind: t.dataset.kind,
  rows: [...t.querySelectorAll('table.rows tbody tr')].map(r =>
    Object.fromEntries([...r.cells].map(c => [c.dataset.col, c.textContent]))),
  series: Object.fromEntries([...t.querySelectorAll('table.series tr')].map(r =>
    [r.dataset.label, r.cells[1].textContent])),
  empty: (t.querySelector('p.empty') || {}).textContent || '',
}]))"""


def apply(sink: LocalSink, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "otel_posthog.cli", "dashboards", "apply"]
    argv += ["--host", sink.url, "--project-id", "1", *extra]
    env = dict(os.environ, POSTHOG_PERSONAL_API_KEY=sink.personal_api_key)
    env.pop("POSTHOG_PROJECT_ID", None)
    return subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )


def breakdown_of(source: dict[str, Any]) -> Any:
    bf = source.get("breakdownFilter") or {}
    return bf.get("breakdown") or [b.get("property") for b in bf.get("breakdowns") or []]


def test_shipped_dashboards_on_the_sink() -> None:
    with LocalSink() as sink:
        body = {"api_key": sink.api_key, "batch": EVENTS}
        assert requests.post(sink.url + "/batch/", json=body, timeout=5).ok
        first = apply(sink)
        assert first.returncode == 0, first.stdout + first.stderr
        api = sink.app.state.dashboards
        writes = api.writes
        assert writes > 0
        second = apply(sink)
        assert second.returncode == 0, second.stdout + second.stderr
        assert api.writes == writes  # the rerun only read

        dashboards = api.live("dashboard")
        assert GUIDE | {LLM} <= {d["name"] for d in dashboards}
        by_endpoint: dict[str, dict[str, Any]] = {}
        for dashboard in dashboards:
            tiles = [t for t in api.tiles_of(dashboard["id"]) if t.get("insight")]
            assert tiles, dashboard["name"]
            for tile in tiles:
                insight = api.objects.get("insight", tile["insight"])
                query = insight["query"]
                values = _variables(api, dashboard, query, "user_12345")
                result = query_engine.compute(sink.store, query, values)
                assert result["kind"] != "not_computed", (insight["name"], result)
                source = query.get("source") or {}
                if result["kind"] == "trends" and breakdown_of(source) in (
                    "endpoint",
                    ["endpoint"],
                ):
                    event = source["series"][0].get("event")
                    by_endpoint[event] = {
                        s["breakdown_value"]: s["aggregated_value"] for s in result["series"]
                    }
        assert by_endpoint["slow_request"] == {"/api/chat/send": 1}
        assert by_endpoint["api_error"] == {"/api/fail": 1}
        pages = [requests.get(f"{sink.url}/dashboards/{d['id']}?person=user_12345", timeout=30)
                 for d in dashboards]  # fmt: skip
        assert all(p.ok and "not computed locally" not in p.text for p in pages)


@pytest.mark.browser
def test_demo_dashboards_in_chromium(tmp_path: Path) -> None:
    """The demo applies the shipped dashboards to its sink and plays the journey; its
    dashboards then show the demo person's numbers in a browser."""
    db = tmp_path / "events.db"
    env = dict(os.environ, OTEL_POSTHOG_SINK_DB=str(db))
    env.pop("OTEL_PYTHON_DISTRO", None)
    argv = [sys.executable, "-m", "otel_posthog.cli", "demo", "--db", str(db)]
    demo = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert re.search(
        r"Dashboards: http://127\.0\.0\.1:\d+/dashboards\?person=user_12345 ", demo.stdout
    )
    assert "(applied)" in demo.stdout
    with LocalSink(str(db)) as sink, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(sink.url + "/dashboards?person=user_12345")
        assert GUIDE | {LLM} <= set(page.locator("#dashboards a").all_inner_texts())
        series: dict[str, str] = {}
        for name in sorted(GUIDE):
            page.goto(sink.url + "/dashboards?person=user_12345")
            page.click(f"#dashboards a >> text={name}")
            page.wait_for_selector("body[data-loaded] #tiles")
            assert page.input_value("#person") == "user_12345"
            tiles = page.locator("article.tile[data-insight]").evaluate_all(
                "ts => ts.map(t => [t.dataset.name, t.dataset.kind, "
                "t.querySelectorAll('tbody tr, .funnel-step').length])"
            )
            assert tiles, name
            for tile, kind, rows in tiles:
                assert kind != "not_computed" and rows > 0, (name, tile, kind)
            series.update(
                page.locator("table.series tr").evaluate_all(
                    "rows => Object.fromEntries(rows.map(r => "
                    "[r.dataset.label, r.cells[1].textContent]))"
                )
            )
            if name == "Error Tracking by User":  # the person's error, in their own table
                assert "/api/fail" in page.locator("article.tile table.rows").first.inner_text()
        assert series["/api/chat/send"] == "1"  # the slow request, counted once
        assert series["/api/fail"] == "1"  # the failing call's error

        # the chat send's model call, on the LLM dashboard (the demo runs the llm extra)
        page.goto(sink.url + "/dashboards?person=user_12345")
        page.click(f"#dashboards a >> text={LLM}")
        page.wait_for_selector("body[data-loaded] #tiles")
        llm = page.locator("article.tile[data-insight]").evaluate_all(TILES_JS)
        assert all(t["kind"] != "not_computed" for t in llm.values()), llm
        calls = llm["LLM: one person's model calls"]["rows"]
        assert sorted(r["event"] for r in calls) == ["$ai_embedding", "$ai_generation"]
        generation = next(r for r in calls if r["event"] == "$ai_generation")
        assert generation["model"] == "mock-chat-2026-01-01"
        assert generation["is_error"] == "false"
        assert int(generation["input_tokens"]) > 0 and int(generation["output_tokens"]) > 0
        assert float(generation["latency_s"]) > 0
        assert re.fullmatch(r"[0-9a-f]{32}", generation["request_id"])
        usage = {r["person"]: r for r in llm["LLM: usage by person"]["rows"]}
        assert usage["user_12345"]["generations"] == "1"
        assert usage["user_12345"]["errors"] == "0"
        assert usage["user_12345"]["output_tokens"] == generation["output_tokens"]
        assert llm["LLM: generations over time by model"]["series"] == {"mock-chat-2026-01-01": "1"}
        assert set(llm["LLM: latency p95 by model"]["series"]) == {"mock-chat-2026-01-01"}
        tokens = llm["LLM: tokens over time"]["series"]
        assert tokens["Output tokens (sum of $ai_output_tokens)"] == generation["output_tokens"]
        assert llm["LLM: errors by model"]["empty"] == "no events in the date range"
        assert errors == []
        browser.close()


def test_the_sink_checks_queries_against_the_shipped_schema() -> None:
    with LocalSink() as sink:
        headers = {"Authorization": f"Bearer {sink.personal_api_key}"}
        url = sink.url + "/api/projects/1/insights/"
        typo = {
            "kind": "InsightVizNode",
            "source": {"kind": "TrendsQuery", "seris": [{"kind": "EventsNode"}]},
        }
        resp = requests.post(url, json={"name": "x", "query": typo}, headers=headers, timeout=5)
        assert resp.status_code == 400 and resp.json()["attr"] == "query", resp.text
        typo["source"] = {"kind": "TrendsQuery", "series": [{"kind": "EventsNode"}]}
        resp = requests.post(url, json={"name": "x", "query": typo}, headers=headers, timeout=5)
        assert resp.status_code == 201, resp.text
