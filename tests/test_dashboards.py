"""``otel-posthog dashboards``: definitions, schema checks, and apply/plan/destroy over real HTTP
against a strict PostHog REST API stand-in (``tests/posthog_api.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_posthog import cli
from otel_posthog.dashboards.api import app_host
from otel_posthog.dashboards.definitions import DefinitionError, load, shipped_text
from otel_posthog.dashboards.schema import definitions, query_errors
from otel_posthog.sink.server import ThreadedServer
from tests.helpers import ROOT
from tests.posthog_api import FakePostHog

SHIPPED = json.loads(shipped_text())
N_DASHBOARDS, N_INSIGHTS = len(SHIPPED["dashboards"]), len(SHIPPED["insights"])
N_ALERTS, N_COHORTS = len(SHIPPED["alerts"]), len(SHIPPED["cohorts"])


@pytest.fixture
def posthog() -> Iterator[tuple[FakePostHog, str]]:
    fake = FakePostHog()
    server = ThreadedServer(fake.app).start()
    yield fake, server.url
    fake.release.set()
    server.stop()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTHOG_PERSONAL_API_KEY", FakePostHog.key)
    monkeypatch.delenv("POSTHOG_PROJECT_ID", raising=False)
    monkeypatch.delenv("POSTHOG_HOST", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["dashboards", *argv])
    out, err = capsys.readouterr()
    assert FakePostHog.key not in out + err  # the key is never printed
    return code, out, err


def target(url: str, *extra: str) -> list[str]:
    return ["--host", url, "--project-id", "1", *extra]


def edited(tmp_path: Path, change: Any) -> Path:
    doc = json.loads(shipped_text())
    change(doc)
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(doc))
    return path


def marked(fake: FakePostHog, collection: str) -> Counter[str]:
    """Live objects per marker (description, or alert name)."""
    out: Counter[str] = Counter()
    ours = {i["id"] for i in fake.live("insights") if "otel-posthog:" in i["description"]}
    for row in fake.live(collection):
        if collection == "alerts" and row["insight"] not in ours:
            continue
        text = row["name"] if collection == "alerts" else row.get("description", "")
        if "otel-posthog:" in text:
            out[text.split("[otel-posthog:")[1].split(" ")[0].split("]")[0]] += 1
    return out


def assert_complete(fake: FakePostHog) -> None:
    """Everything of the definitions exists exactly once."""
    for collection, n in (
        ("dashboards", N_DASHBOARDS),
        ("insights", N_INSIGHTS),
        ("alerts", N_ALERTS),
        ("cohorts", N_COHORTS),
    ):
        counts = marked(fake, collection)
        assert len(counts) == n, (collection, counts)
        assert set(counts.values()) == {1}, (collection, counts)
    assert [v["code_name"] for v in fake.live("insight_variables")] == ["distinct_id"]


# -- definitions and schema -----------------------------------------------------------------


def test_shipped_definitions_compile_and_every_query_matches_posthogs_schema() -> None:
    defs = load()
    insights = defs.of("insight")
    assert {d.name for d in defs.of("dashboard")} == {
        "User Journey Timeline",
        "API Performance by User",
        "Error Tracking by User",
        "LLM Usage by Person",
    }
    for insight in insights:
        query = insight.query or {}
        assert query["kind"] in ("InsightVizNode", "DataTableNode", "DataVisualizationNode")
        assert "filters" not in query  # never the legacy format
        from otel_posthog.dashboards.definitions import with_variables

        full = with_variables(query, insight.variables, {"distinct_id": "v-1"})
        schema = {"$ref": f"#/definitions/{query['kind']}", "definitions": definitions()}
        jsonschema.Draft7Validator(schema).validate(full)  # the independent validator agrees
        assert query_errors(full) == []
        assert insight.dashboards, f"{insight.key} is on no dashboard"
    per_person = [i for i in insights if i.variables]
    assert {i.key for i in per_person} == {
        "journey-events",
        "person-requests",
        "person-errors",
        "correlated-events",
        "person-llm-calls",
    }
    assert all(i.query and i.query["kind"] == "DataVisualizationNode" for i in per_person)
    by_key = {i.key: i for i in insights}
    engagement = by_key["engagement-funnel"].query or {}
    steps = [s["custom_name"] for s in engagement["source"]["series"]]
    assert steps == ["Signup", "First Chat", "Engagement"]
    assert by_key["engagement-funnel"].dashboards == ["user-journey"]
    assert by_key["request-funnel"].dashboards == ["api-performance"]
    request_funnel = (by_key["request-funnel"].query or {})["source"]["funnelsFilter"]
    assert request_funnel["funnelAggregateByHogQL"] == "properties.request_id"
    assert "(user_12345)" in by_key["watched-person-errors"].description  # settings in text
    persons = by_key["watched-person-errors"].query or {}
    assert persons["source"]["properties"][0]["key"] == "distinct_id IN ('user_12345')"
    assert {a.key for a in defs.of("alert")} == {
        "slow-request-volume",
        "watched-person-errors",
        "repeated-request-errors",
    }
    journey = [c for c in defs.of("cohort") if c.key == "successful-journey"][0]
    assert "in the last 30 days" in journey.description
    values = (journey.filters or {})["properties"]["values"][0]["values"]
    assert [(v["key"], v["negation"]) for v in values] == [
        ("signup_completed", False),
        ("button_click", False),
        ("chat_message_sent", False),
        ("api_error", True),
    ]


@pytest.mark.parametrize(
    "query",
    [
        {"kind": "TrendsQuery", "seris": []},
        {"kind": "TrendsQuery", "series": [], "trendsFilter": {"display": "LineGraph"}},
        {"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "math": "p95_response"}]},
        {"kind": "TrendsQuery", "series": [], "interval": "hours"},
        {"kind": "TrendsQuery", "series": [], "dateRange": {"from": "-7d"}},
        {"kind": "FunnelsQuery", "series": [], "funnelsFilter": {"funnelOrderType": "sequential"}},
        {"kind": "HogQLQuery", "query": "SELECT 1", "variables": {"x": {"code_name": "x"}}},
        {"kind": "EventsNode", "event": 5},
        {"kind": "EventsNode", "math_group_type_index": True},
    ],
)
def test_schema_validator_rejects_what_posthogs_schema_rejects(query: dict[str, Any]) -> None:
    schema = {"$ref": f"#/definitions/{query['kind']}", "definitions": definitions()}
    assert not jsonschema.Draft7Validator(schema).is_valid(query)
    assert query_errors(query)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["settings"].update(interval="hours"), "insights.events-by-name.query"),
        (lambda d: d["settings"].pop("date_from"), "unknown setting ${date_from}"),
        (lambda d: d["insights"]["response-time"].update(querry={}), "response-time.querry"),
        (lambda d: d["dashboards"]["user-journey"]["tiles"].append("nope"), "no insight 'nope'"),
        (lambda d: d["settings"].update(alert_persons=[]), "setting 'alert_persons'"),
        (lambda d: d["alerts"]["slow-request-volume"].update(insight="x"), "no insight 'x'"),
        (
            lambda d: d["settings"].update(slow_request_alert_upper="ten"),
            "alerts.slow-request-volume.threshold",
        ),
        (lambda d: d["cohorts"]["errors"].update(days=0), "cohorts.errors.days"),
        (
            lambda d: d["insights"]["person-errors"]["query"]["source"].update(
                query="SELECT count( FROM events"
            ),
            "unbalanced parentheses",
        ),
        (
            lambda d: d["insights"]["person-errors"]["query"]["source"].update(
                query="SELECT 1 FROM events WHERE distinct_id = {variables.who}"
            ),
            "{variables.who} is not in `variables`",
        ),
    ],
)
def test_invalid_definitions_fail_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], posthog: Any, change: Any, named: str
) -> None:
    fake, url = posthog
    path = edited(tmp_path, change)
    with pytest.raises(DefinitionError, match=named.replace("$", r"\$").replace("{", r"\{")):
        load(path)
    code, out, err = run(capsys, "apply", "--file", str(path), *target(url))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and named in err
    assert fake.requests == []


def test_init_writes_the_shipped_definitions_and_keeps_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.json"
    assert run(capsys, "init", str(path))[0] == 0
    assert json.loads(path.read_text()) == SHIPPED
    path.write_text("{}")
    code, _, err = run(capsys, "init", str(path))
    assert code == 2 and "exists" in err and path.read_text() == "{}"


def test_app_host_maps_cloud_ingestion_hosts() -> None:
    assert app_host("https://us.i.posthog.com/") == "https://us.posthog.com"
    assert app_host("https://eu.i.posthog.com") == "https://eu.posthog.com"
    assert app_host("https://posthog.example.com") == "https://posthog.example.com"
    assert app_host(None) == "https://us.posthog.com"


# -- apply / plan / destroy -----------------------------------------------------------------


def test_first_apply_creates_everything_and_a_second_writes_nothing(
    capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    fake.rate_limit_once = "GET dashboards"
    code, out, err = run(capsys, "apply", *target(url))
    assert code == 0, err
    assert_complete(fake)
    # the 429 was honoured: the same call came again after Retry-After
    limited = [r for r in fake.requests if r[3] == 429]
    assert len(limited) == 1
    later = [r for r in fake.requests if r[0] > limited[0][0] and r[2] == limited[0][2]]
    assert later and later[0][0] - limited[0][0] >= 0.9
    # insights sit on their dashboards; SQL tiles declare the variable PostHog knows
    dashboards = {d["name"]: d["id"] for d in fake.live("dashboards")}
    var_id = str(fake.live("insight_variables")[0]["id"])
    for insight in fake.live("insights"):
        assert len(insight["dashboards"]) == 1 and insight["dashboards"][0] in dashboards.values()
        assert "otel-posthog" in insight["tags"]
        source = insight["query"]["source"]
        if "{variables.distinct_id}" in source.get("query", ""):
            assert list(source["variables"]) == [var_id]
    alerts = fake.live("alerts")
    assert all(a["subscribed_users"] == [7] for a in alerts)
    first = len(fake.writes)
    assert first == 1 + N_DASHBOARDS + N_INSIGHTS + N_ALERTS + N_COHORTS

    code, out, err = run(capsys, "apply", *target(url))
    assert code == 0, err
    assert len(fake.writes) == first, fake.writes[first:]  # no write at all
    assert "0 writes" in out
    code, out, _ = run(capsys, "plan", "--json", *target(url))
    plan = json.loads(out)
    assert {a["action"] for a in plan["actions"]} == {"unchanged"}
    assert plan["summary"] == {"unchanged": N_DASHBOARDS + N_INSIGHTS + N_ALERTS + N_COHORTS}
    assert len(fake.writes) == first


def test_plan_writes_nothing_and_lists_what_apply_would_create(
    capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    code, out, _ = run(capsys, "plan", "--json", *target(url))
    assert code == 0
    plan = json.loads(out)
    assert plan["summary"] == {"create": 1 + N_DASHBOARDS + N_INSIGHTS + N_ALERTS + N_COHORTS}
    assert {(a["kind"], a["key"]) for a in plan["actions"]} >= {
        ("variable", "distinct_id"),
        ("dashboard", "user-journey"),
        ("alert", "repeated-request-errors"),
        ("cohort", "successful-journey"),
    }
    assert fake.writes == []
    code, out, _ = run(capsys, "plan", *target(url))
    assert "+ create" in out and "Nothing was written." in out


def test_a_changed_setting_patches_only_its_own_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    assert run(capsys, "apply", *target(url))[0] == 0
    before = len(fake.writes)
    path = edited(tmp_path, lambda d: d["settings"].update(slow_request_alert_upper=25))
    code, out, _ = run(capsys, "plan", "--json", "--file", str(path), *target(url))
    changed = [a for a in json.loads(out)["actions"] if a["action"] != "unchanged"]
    assert [(a["kind"], a["key"], a["action"], a["fields"]) for a in changed] == [
        ("alert", "slow-request-volume", "update", ["threshold"])
    ]
    assert run(capsys, "apply", "--file", str(path), *target(url))[0] == 0
    assert fake.writes[before:] == [("PATCH", "alerts")]
    alert = [a for a in fake.live("alerts") if "slow-request-volume" in a["name"]][0]
    assert alert["threshold"]["configuration"]["bounds"] == {"upper": 25}
    # an insight's step events: one insight patched (the cohort that shares them too)
    before = len(fake.writes)

    def steps(doc: dict[str, Any]) -> None:
        doc["settings"]["slow_request_alert_upper"] = 25
        doc["insights"]["slow-by-endpoint"]["name"] = "Slow requests per endpoint"

    path = edited(tmp_path, steps)
    assert run(capsys, "apply", "--file", str(path), *target(url))[0] == 0
    assert fake.writes[before:] == [("PATCH", "insights")]
    assert_complete(fake)


def test_objects_without_our_marker_survive_apply_and_destroy(
    capsys: pytest.CaptureFixture[str], posthog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = posthog
    theirs = [
        ("dashboards", fake.seed("dashboards", name="User Journey Timeline", tags=["otel"])),
        (
            "insights",
            fake.seed(
                "insights",
                name="API: slow requests by endpoint",
                description="managed by otel-posthog? no, by hand",
                query={"kind": "InsightVizNode", "source": {"kind": "TrendsQuery", "series": []}},
                dashboards=[],
            ),
        ),
        ("cohorts", fake.seed("cohorts", name="Persons with errors", filters={})),
    ]
    theirs.append(
        (
            "alerts",
            fake.seed(
                "alerts",
                name="Slow requests [otel-posthog:slow-request-volume]",  # on an insight not ours
                insight=theirs[1][1]["id"],
                subscribed_users=[7],
                threshold={"configuration": {"type": "absolute", "bounds": {"upper": 1}}},
                condition={"type": "absolute_value"},
            ),
        )
    )
    snapshot = json.dumps(theirs, sort_keys=True)
    assert run(capsys, "apply", *target(url))[0] == 0
    assert_complete(fake)
    assert json.dumps(theirs, sort_keys=True) == snapshot
    assert all(row["id"] in fake.objects[c] for c, row in theirs)

    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # no terminal: destroy asks for --yes
    code, _, err = run(capsys, "destroy", *target(url))
    assert code == 2 and "--yes" in err
    before, asked = len(fake.writes), len(fake.requests)
    code, out, _ = run(capsys, "destroy", "--yes", *target(url))
    assert code == 0
    assert not [r for r in fake.requests[asked:] if r[2] == "/api/users/@me/"]  # no need
    kinds = Counter(w for w in fake.writes[before:])
    assert kinds == {
        ("DELETE", "alerts"): N_ALERTS,
        ("PATCH", "insights"): N_INSIGHTS,
        ("PATCH", "dashboards"): N_DASHBOARDS,
        ("PATCH", "cohorts"): N_COHORTS,
    }
    assert fake.live("alerts") == [theirs[3][1]]
    for collection, row in theirs:
        assert [r["id"] for r in fake.live(collection)] == [row["id"]]
    assert json.dumps(theirs, sort_keys=True) == snapshot
    # a destroy with nothing of ours left writes nothing
    before = len(fake.writes)
    assert run(capsys, "destroy", "--yes", *target(url))[0] == 0
    assert len(fake.writes) == before


def test_a_hand_edit_is_reported_left_alone_and_restored_on_request(
    capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    assert run(capsys, "apply", *target(url))[0] == 0
    insight = [i for i in fake.live("insights") if "response-time" in i["description"]][0]
    insight["query"]["source"]["interval"] = "week"  # changed in PostHog's UI
    cohort = [c for c in fake.live("cohorts") if "cohort:errors " in c["description"]][0]
    cohort["name"] = "renamed by hand"
    code, out, _ = run(capsys, "plan", "--json", *target(url))
    changed = {(a["key"], a["action"]) for a in json.loads(out)["actions"]}
    assert ("response-time", "edited") in changed
    assert ("errors", "edited") in changed
    assert {a for _, a in changed} == {"unchanged", "edited"}
    code, out, _ = run(capsys, "plan", *target(url))
    assert "changed in PostHog by hand" in out
    before = len(fake.writes)
    code, out, _ = run(capsys, "apply", *target(url))
    assert code == 0 and "apply --restore puts it back" in out
    assert len(fake.writes) == before and insight["query"]["source"]["interval"] == "week"
    assert run(capsys, "apply", "--restore", *target(url))[0] == 0
    assert sorted(fake.writes[before:]) == [("PATCH", "cohorts"), ("PATCH", "insights")]
    assert insight["query"]["source"]["interval"] == "hour"
    before = len(fake.writes)
    assert run(capsys, "apply", *target(url))[0] == 0
    assert len(fake.writes) == before


def test_a_removed_definition_is_an_orphan_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    assert run(capsys, "apply", *target(url))[0] == 0

    def drop(doc: dict[str, Any]) -> None:
        del doc["cohorts"]["errors"]

    path = edited(tmp_path, drop)
    before = len(fake.writes)
    code, out, _ = run(capsys, "plan", "--json", "--file", str(path), *target(url))
    orphans = [a for a in json.loads(out)["actions"] if a["action"] == "orphan"]
    assert [(a["kind"], a["key"]) for a in orphans] == [("cohort", "errors")]
    code, out, _ = run(capsys, "apply", "--file", str(path), *target(url))
    assert code == 0 and "orphan" in out
    assert len(fake.writes) == before
    assert marked(fake, "cohorts")["cohort:errors"] == 1


def test_a_create_whose_answer_was_lost_is_not_repeated(
    capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    fake.lose_answer_once = "POST insights"
    code, out, err = run(capsys, "apply", *target(url))
    assert code == 0, err
    assert_complete(fake)


def test_a_killed_apply_is_finished_by_a_rerun_without_duplicates(
    capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    fake.hold_after_writes = 6  # the 7th write (an insight) is stored, its answer never comes
    env = {**os.environ, "POSTHOG_PERSONAL_API_KEY": FakePostHog.key}
    argv = [sys.executable, "-m", "otel_posthog.cli", "dashboards", "apply", *target(url)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert fake.held.wait(60), "apply never reached the held write"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(fake.writes) == 7 and fake.writes[-1] == ("POST", "insights")
    fake.hold_after_writes = None
    fake.release.set()
    code, out, err = run(capsys, "apply", *target(url))
    assert code == 0, err
    assert_complete(fake)
    assert Counter(fake.writes)[("POST", "insights")] == N_INSIGHTS


@pytest.mark.parametrize(
    ("setup", "expect"),
    [
        (lambda f: setattr(f, "key", "phx_other"), "the key is wrong"),
        (lambda f: setattr(f, "scopes", {"dashboard:read"}), "lacks the scope 'insight:read'"),
        (
            lambda f: setattr(f, "scopes", {"dashboard:read", "insight:read", "cohort:read"}),
            "lacks the scope 'alert:read'",
        ),
        (lambda f: setattr(f, "project_id", "2"), "project 1 not found"),
    ],
)
def test_api_errors_are_one_line_and_a_nonzero_exit(
    capsys: pytest.CaptureFixture[str], posthog: Any, setup: Any, expect: str
) -> None:
    fake, url = posthog
    setup(fake)
    code, out, err = run(capsys, "plan", *target(url))
    assert code == 1
    assert err.count("\n") == 1 and expect in err and "Traceback" not in err


def test_a_missing_write_scope_is_named(capsys: pytest.CaptureFixture[str], posthog: Any) -> None:
    fake, url = posthog
    fake.scopes = {f"{s}:read" for s in ("dashboard", "insight", "cohort", "alert")}
    fake.scopes |= {"insight_variable:write"}
    code, _, err = run(capsys, "apply", *target(url))
    assert code == 1 and err.count("\n") == 1
    assert "lacks the scope 'dashboard:write'" in err


def test_settings_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "plan", "--host", "http://127.0.0.1:9")
    assert code == 2 and "POSTHOG_PROJECT_ID" in err and err.count("\n") == 1
    monkeypatch.delenv("POSTHOG_PERSONAL_API_KEY")
    code, _, err = run(capsys, "plan", "--project-id", "1")
    assert code == 2 and "POSTHOG_PERSONAL_API_KEY" in err
    monkeypatch.setenv("POSTHOG_PERSONAL_API_KEY", FakePostHog.key)
    code, _, err = run(capsys, "plan", "--project-id", "abc")
    assert code == 2 and "must be a number" in err
    monkeypatch.setenv("POSTHOG_PERSONAL_API_KEY", "phc_project_key_123")
    code, _, err = run(capsys, "plan", "--project-id", "1")
    assert code == 2 and "project API key" in err and "phc_project_key_123" not in err


def test_an_unreachable_host_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_posthog.dashboards import api

    monkeypatch.setattr(api.time, "sleep", lambda s: None)  # the retries, without the waits
    started = time.monotonic()
    code, _, err = run(capsys, "plan", "--host", "http://127.0.0.1:9", "--project-id", "1")
    assert code == 1 and "cannot reach PostHog" in err and err.count("\n") == 1
    assert time.monotonic() - started < 120


# -- HogQL, by PostHog's own grammar ----------------------------------------------------------


def hogql_parse(items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    script = Path(__file__).with_name("hogql_check.py")
    proc = subprocess.run(
        [sys.executable, "-I", str(script)],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def hogql_errors(items: list[tuple[str, str]]) -> list[str | None]:
    return [result["error"] for result in hogql_parse(items)]


def test_every_shipped_hogql_parses_with_posthogs_grammar() -> None:
    items: list[tuple[str, str]] = []
    for insight in load().of("insight"):
        query = insight.query or {}
        source = query["source"]
        if source["kind"] == "HogQLQuery":
            items.append(("select", source["query"]))
        for node in [source, *source.get("series", [])]:
            for prop in node.get("properties", []):
                if prop["type"] == "hogql":
                    items.append(("expr", prop["key"]))
        breakdown = source.get("breakdownFilter", {})
        if breakdown.get("breakdown_type") == "hogql":
            items.append(("expr", breakdown["breakdown"]))
        aggregate = source.get("funnelsFilter", {}).get("funnelAggregateByHogQL")
        if aggregate:
            items.append(("expr", aggregate))
    assert len(items) >= 8
    assert hogql_errors(items) == [None] * len(items), items
    # and the check can fail
    broken = [("select", "SELECT event FROM events WHERE (a = 1"), ("expr", "distinct_id IN (")]
    assert all(hogql_errors(broken))


def test_without_tags_the_description_marker_keeps_apply_idempotent(
    capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    fake.drop_tags = True
    assert run(capsys, "apply", *target(url))[0] == 0
    assert all(d["tags"] == [] for d in fake.live("dashboards"))
    before = len(fake.writes)
    assert run(capsys, "apply", *target(url))[0] == 0
    assert len(fake.writes) == before
    code, out, _ = run(capsys, "plan", "--json", *target(url))
    assert {a["action"] for a in json.loads(out)["actions"]} == {"unchanged"}
    assert_complete(fake)


def test_destroy_asks_on_a_terminal(posthog: Any) -> None:
    import pty

    fake, url = posthog
    env = {**os.environ, "POSTHOG_PERSONAL_API_KEY": FakePostHog.key}
    argv = [sys.executable, "-m", "otel_posthog.cli", "dashboards"]
    subprocess.run([*argv, "apply", *target(url)], env=env, cwd=ROOT, check=True, timeout=120)
    created = len(fake.writes)
    for answer, deleted in (("n", False), ("y", True)):
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [*argv, "destroy", *target(url)],
            env=env,
            cwd=ROOT,
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(follower)
        os.write(leader, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=120)
        os.close(leader)
        assert "Delete them? [y/N]" in out, err
        assert FakePostHog.key not in out + err
        if deleted:
            assert proc.returncode == 0 and "objects deleted" in out
            assert fake.live("dashboards") == [] and fake.live("alerts") == []
        else:
            assert proc.returncode == 1 and "Nothing deleted." in out
            assert len(fake.writes) == created


def test_a_copy_made_in_posthog_is_reported_and_left_alone(
    capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    assert run(capsys, "apply", *target(url))[0] == 0
    ours = [d for d in fake.live("dashboards") if "dashboard:user-journey " in d["description"]][0]
    copy = fake.seed(
        "dashboards",
        **{k: v for k, v in ours.items() if k not in ("id", "deleted")},
    )  # PostHog's "Duplicate dashboard" keeps description and tags
    before = len(fake.writes)
    code, out, _ = run(capsys, "plan", "--json", *target(url))
    odd = [a for a in json.loads(out)["actions"] if a["action"] != "unchanged"]
    assert [(a["action"], a["key"], a["id"]) for a in odd] == [
        ("duplicate", "user-journey", copy["id"])
    ]
    assert run(capsys, "apply", *target(url))[0] == 0
    assert run(capsys, "destroy", "--yes", *target(url))[0] == 0
    assert [d["id"] for d in fake.live("dashboards")] == [copy["id"]]
    assert ("PATCH", "dashboards") in fake.writes[before:]
    assert fake.objects["dashboards"][ours["id"]]["deleted"] is True


def test_next_links_never_take_the_key_to_another_host(
    capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    fake.next_origin = "http://203.0.113.9:1"  # unroutable: a request there would fail
    assert run(capsys, "apply", *target(url))[0] == 0
    assert_complete(fake)
    assert len(fake.live("insights")) > fake.page_size  # lists did follow `next`


def test_plan_needs_only_read_scopes(capsys: pytest.CaptureFixture[str], posthog: Any) -> None:
    fake, url = posthog
    fake.scopes = {f"{s}:read" for s in ("dashboard", "insight", "cohort", "alert")}
    fake.scopes.add("insight_variable:read")
    code, out, err = run(capsys, "plan", *target(url))
    assert code == 0, err
    assert fake.writes == []


def test_a_5xx_on_a_read_is_retried(capsys: pytest.CaptureFixture[str], posthog: Any) -> None:
    fake, url = posthog
    fake.error_once = "GET insights"
    code, _, err = run(capsys, "apply", *target(url))
    assert code == 0, err
    assert [r[3] for r in fake.requests if r[3] >= 500] == [503]
    assert_complete(fake)


def test_a_dashboard_of_yours_an_insight_was_added_to_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    assert run(capsys, "apply", *target(url))[0] == 0
    mine = fake.seed("dashboards", name="My board")
    insight = [i for i in fake.live("insights") if "insight:slow-by-endpoint " in i["description"]]
    insight[0]["dashboards"].append(mine["id"])  # added to your dashboard in PostHog
    before = len(fake.writes)
    code, out, _ = run(capsys, "plan", "--json", *target(url))
    assert {a["action"] for a in json.loads(out)["actions"]} == {"unchanged"}
    path = edited(tmp_path, lambda d: d["insights"]["slow-by-endpoint"].update(name="Slow ones"))
    assert run(capsys, "apply", "--file", str(path), *target(url))[0] == 0
    assert fake.writes[before:] == [("PATCH", "insights")]
    assert insight[0]["name"] == "Slow ones" and mine["id"] in insight[0]["dashboards"]
    assert len(insight[0]["dashboards"]) == 2


def test_persons_in_hogql_are_quoted_literals(tmp_path: Path) -> None:
    persons = ["o'brien", "back\\slash", "x') OR 1=1 --"]
    path = edited(tmp_path, lambda d: d["settings"].update(alert_persons=persons))
    insight = [i for i in load(path).of("insight") if i.key == "watched-person-errors"][0]
    key = (insight.query or {})["source"]["properties"][0]["key"]
    [result] = hogql_parse([("expr", key)])
    tree = result["tree"]
    assert tree["node"] == "CompareOperation" and tree["op"] == "in"
    assert [c["value"] for c in tree["right"]["exprs"]] == persons


def test_a_posthog_that_drops_our_markers_stops_apply_without_strays(
    capsys: pytest.CaptureFixture[str], posthog: Any
) -> None:
    fake, url = posthog
    fake.drop_tags = fake.drop_descriptions = True
    for _ in range(2):  # and a rerun does not pile up objects either
        code, _, err = run(capsys, "apply", *target(url))
        assert code == 1 and err.count("\n") == 1
        assert "did not keep otel-posthog's marker on the new dashboard 'user-journey'" in err
        assert fake.live("dashboards") == []


def test_help_lists_the_dashboards_commands() -> None:
    assert "dashboards" in cli.build_parser().format_help()
    for name in ("apply", "plan", "destroy", "init"):
        cli.build_parser().parse_args(["dashboards", name])


def test_a_redirect_is_one_line_naming_where(capsys: pytest.CaptureFixture[str]) -> None:
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    async def moved(request: Any) -> RedirectResponse:
        return RedirectResponse("https://eu.posthog.example" + request.url.path, 301)

    app = Starlette(routes=[Route("/{path:path}", moved, methods=["GET", "POST", "PATCH"])])
    with ThreadedServer(app) as server:
        code, _, err = run(capsys, "plan", *target(server.url))
    assert code == 1 and err.count("\n") == 1
    assert "redirecting to https://eu.posthog.example/api/projects/1/" in err


# -- the shipped validator agrees with jsonschema -------------------------------------------


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 500)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.sampled_from(["", "event", "hour", "ActionsTable", "EventsNode", "total", "p95", "x"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["kind", "event", "math", "x", "series"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*path, i))
    return out


_QUERIES = [i.query for i in load().of("insight")]
_VALIDATORS: dict[str, Any] = {}


@st.composite
def mutated_queries(draw: Any) -> dict[str, Any]:
    query = json.loads(json.dumps(draw(st.sampled_from(_QUERIES))))
    path = draw(st.sampled_from(_paths(query)[1:]))
    parent = query
    for step in path[:-1]:
        parent = parent[step]
    action = draw(st.sampled_from(["replace", "add", "delete"]))
    if action == "replace":
        parent[path[-1]] = draw(_JSON)
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["series", "seris", "display", "math", "name", "limit"]))] = (
            draw(_JSON)
        )
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    return query


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_queries())
def test_the_shipped_validator_agrees_with_jsonschema(query: dict[str, Any]) -> None:
    kind = query.get("kind")
    if not isinstance(kind, str) or kind not in definitions():
        assert query_errors(query)
        return
    if kind not in _VALIDATORS:
        schema = {"$ref": f"#/definitions/{kind}", "definitions": definitions()}
        _VALIDATORS[kind] = jsonschema.Draft7Validator(schema)
    assert _VALIDATORS[kind].is_valid(query) == (query_errors(query) == [])
