"""The ``otel-posthog`` command line, run as subprocesses against a running sink's database."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from posthog import Client

from otel_posthog import cli
from tests.helpers import ROOT, VENV_BIN

CLI = str(VENV_BIN / "otel-posthog")
LINE = re.compile(r"^\d\d:\d\d:\d\d - [\w$]+( \(.*\))?$")
T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


class SinkProcess:
    """``otel-posthog sink`` in a subprocess; url and key read from what it prints."""

    def __init__(self, db: Path, *extra: str) -> None:
        argv = [CLI, "sink", "--port", "0", "--db", str(db), *extra]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.banner = [self.proc.stdout.readline() for _ in range(6)]
        text = "".join(self.banner)
        self.url = re.search(r"listening on (http://\S+)", text).group(1)  # type: ignore[union-attr]
        self.key = re.search(r"api key:\s+(\S+)", text).group(1)  # type: ignore[union-attr]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(15)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[SinkProcess, Path]]:
    db = tmp_path / "sink" / "events.db"
    sink = SinkProcess(db)
    yield sink, db
    if sink.proc.poll() is None:
        sink.stop()


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def journey_events(key: str) -> dict:
    """The guide's chat example: frontend and backend events of user_12345, out of order
    (events at the same instant keep their arrival order)."""
    session = "019a3b6b-634f-72e5-a430-d105b888fb87"

    def ev(t: float, name: str, **props: object) -> dict:
        props.setdefault("$session_id", session)
        return {
            "uuid": str(uuid.uuid4()),
            "event": name,
            "distinct_id": props.pop("person", "user_12345"),
            "timestamp": at(t),
            "properties": props,
        }

    batch = [
        ev(7.2, "api_request", request_id="ghi-789", endpoint="/api/chat/send",
           status_code=200, response_time_ms=1200.4, source="backend"),
        ev(7.2, "slow_request", request_id="ghi-789", endpoint="/api/chat/send",
           duration_ms=1200.4, threshold_ms=1000, source="backend"),
        ev(0, "button_click", request_id="def-456", button_name="Start Chat", source="frontend"),
        ev(1, "api_request", request_id="def-456", endpoint="/api/chat/messages",
           status_code=200, response_time_ms=45.2, source="backend"),
        ev(5, "chat_message_sent", request_id="ghi-789", source="frontend"),
        ev(9, "api_error", request_id="err-1", endpoint="/api/fail", status_code=500,
           error_type="RuntimeError", error_message="down", source="backend"),
        ev(3, "slow_request", request_id="other", endpoint="/api/x", duration_ms=3000,
           threshold_ms=1000, person="user_other", **{"$session_id": "other"}),
        ev(4, "api_error", request_id="other-e", endpoint="/api/y", status_code=502,
           error_type="HTTP 502", error_message="Bad Gateway", person="user_other",
           **{"$session_id": "other"}),
    ]  # fmt: skip
    return {"api_key": key, "batch": batch}


def test_cli_reads_while_the_sink_writes(running: tuple[SinkProcess, Path]) -> None:
    sink, db = running
    assert requests.post(sink.url + "/batch/", json=journey_events(sink.key), timeout=5).ok
    client = Client(sink.key, host=sink.url, gzip=True, sync_mode=True)
    client.capture("api_request", distinct_id="user_py", properties={"request_id": "py-1"})

    out = run("journey", "--user", "user_12345", "--db", str(db)).stdout.splitlines()
    assert out[0] == f"{T0.date().isoformat()} (UTC)"
    assert all(LINE.match(line) for line in out[1:]), out
    assert [line.split(" - ")[1].split(" ")[0] for line in out[1:]] == [
        "button_click",
        "api_request",
        "chat_message_sent",
        "api_request",
        "slow_request",
        "api_error",
    ]
    hms = f"{T0 + timedelta(seconds=1):%H:%M:%S}"
    assert out[2] == (
        f"{hms} - api_request (request_id: def-456, endpoint: /api/chat/messages, "
        "status: 200, response_time_ms: 45)"
    )
    assert "button_click (request_id: def-456, button_name: Start Chat)" in out[1]

    by_request = run("journey", "--request", "def-456", "--db", str(db)).stdout
    assert "button_click" in by_request and "user: user_12345" in by_request
    assert "chat_message_sent" not in by_request

    session = "019a3b6b-634f-72e5-a430-d105b888fb87"
    as_json = json.loads(run("journey", "--session", session, "--json", "--db", str(db)).stdout)
    assert len(as_json) == 6
    assert set(as_json[0]) == {"timestamp", "event", "distinct_id", "properties"}

    only = run("journey", "--user", "user_12345", "--event", "api_request", "--event",
               "api_error", "--since", at(2), "--json", "--db", str(db)).stdout  # fmt: skip
    assert [e["event"] for e in json.loads(only)] == ["api_request", "api_error"]

    # posthog-python's event is readable at once: WAL, no lock between the two processes
    assert "py-1" in run("journey", "--user", "user_py", "--db", str(db)).stdout


def test_slow_and_errors(running: tuple[SinkProcess, Path]) -> None:
    sink, db = running
    assert requests.post(sink.url + "/batch/", json=journey_events(sink.key), timeout=5).ok
    slow = json.loads(run("slow", "--json", "--db", str(db)).stdout)
    assert [e["properties"]["duration_ms"] for e in slow] == [3000, 1200.4]
    assert len(json.loads(run("slow", "--json", "--limit", "1", "--db", str(db)).stdout)) == 1
    mine = run("slow", "--user", "user_12345", "--db", str(db)).stdout
    assert "duration_ms: 1200, threshold_ms: 1000" in mine and "user_other" not in mine
    everyone = run("slow", "--db", str(db)).stdout
    assert "user: user_other" in everyone.splitlines()[1]

    errors = run("errors", "--user", "user_12345", "--db", str(db)).stdout.splitlines()
    assert len(errors) == 2 and "error_type: RuntimeError" in errors[1]
    all_errors = json.loads(run("errors", "--json", "--db", str(db)).stdout)
    assert [e["distinct_id"] for e in all_errors] == ["user_other", "user_12345"]


def test_sink_banner_key_and_clean_stop(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    first = SinkProcess(db)
    assert "export POSTHOG_HOST=" in "".join(first.banner)
    wrong = requests.post(first.url + "/batch/", json={"api_key": "nope", "batch": []}, timeout=5)
    assert wrong.status_code == 401  # the key is checked even when there is nothing to store
    assert first.stop(signal.SIGINT) == 0
    second = SinkProcess(db)  # the key is kept next to the database
    assert second.key == first.key
    assert second.stop() == 0
    third = SinkProcess(db, "--api-key", "phc_mine")
    assert third.key == "phc_mine"
    bad = requests.post(third.url + "/batch/", json={"api_key": first.key, "batch": []}, timeout=5)
    assert bad.status_code in (200, 401)
    assert third.stop() == 0


def test_missing_database_and_bad_arguments(tmp_path: Path) -> None:
    missing = run("journey", "--user", "u", "--db", str(tmp_path / "none.db"), ok=False)
    assert missing.returncode == 2 and "no database" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    assert run("journey", "--db", str(tmp_path / "x.db"), ok=False).returncode == 2
    both = run("journey", "--user", "a", "--request", "b", ok=False)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    assert "bad --since" in run("errors", "--since", "yesterday", ok=False).stderr


def test_a_persons_journey_includes_its_anonymous_past(running: tuple[SinkProcess, Path]) -> None:
    sink, db = running

    def js(t: float, name: str, person: str, **props: object) -> dict:
        props = {"token": sink.key, "distinct_id": person, "$lib": "web", **props}
        return {"uuid": str(uuid.uuid4()), "event": name, "timestamp": at(t), "properties": props}

    body = [
        js(0, "$pageview", "anon-1", **{"$pathname": "/login"}),
        js(1, "$identify", "user_merged", **{"$anon_distinct_id": "anon-1"}),
        js(2, "button_click", "user_merged", button_name="Start Chat"),
        js(3, "$pageview", "anon-2"),  # someone else, never identified as user_merged
    ]
    assert requests.post(sink.url + "/e/", json=body, timeout=5).ok
    out = json.loads(run("journey", "--user", "user_merged", "--json", "--db", str(db)).stdout)
    assert [(e["event"], e["distinct_id"]) for e in out] == [
        ("$pageview", "anon-1"),
        ("$identify", "user_merged"),
        ("button_click", "user_merged"),
    ]


def test_empty_results_say_so(running: tuple[SinkProcess, Path]) -> None:
    _, db = running
    empty = run("journey", "--user", "nobody", "--db", str(db))
    assert empty.stdout == "" and "no events for user nobody" in empty.stderr
    assert run("slow", "--json", "--db", str(db)).stdout.strip() == "[]"


def test_help_lists_every_subcommand() -> None:
    out = run("--help").stdout
    for name in ("sink", "journey", "slow", "errors", "demo"):
        assert name in out
    assert cli.build_parser().parse_args(["slow", "--limit", "3"]).limit == 3
