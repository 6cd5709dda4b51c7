"""What ``otel-posthog journey/errors/slow`` print from stored events that anyone could send.

Stored text is untrusted: escape sequences, bidi overrides and line separators reach the
terminal escaped, one event per line; ``--json`` keeps the values exactly. Events without a
verified person are marked.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from otel_posthog.sink.store import EventStore
from tests.helpers import ROOT, VENV_BIN

CLI = str(VENV_BIN / "otel-posthog")
T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\u202eevil\u2028next\rback\nline\x9b1m\x00"
BAD = ("\x1b", "\x07", "\u202e", "\u2028", "\r", "\x9b", "\x00")


def run(*args: str) -> str:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def stored(tmp_path: Path, events: list[dict]) -> Path:
    db = tmp_path / "events.db"
    store = EventStore(str(db))
    store.insert(events, T0.isoformat())
    store.close()
    return db


def ev(t: int, name: str, person: str, **props: object) -> dict:
    return {
        "uuid": str(uuid.uuid4()),
        "event": name,
        "distinct_id": person,
        "timestamp": (T0 + timedelta(seconds=t)).isoformat(),
        "properties": props,
    }


def test_escape_sequences_are_printed_escaped(tmp_path: Path) -> None:
    db = stored(
        tmp_path,
        [
            ev(0, "api_error", "user_1", request_id="r1", endpoint="/x" + HOSTILE,
               status_code=500, error_type="E", error_message=HOSTILE),
            ev(1, "slow_request", "user_1", request_id="r1", endpoint=HOSTILE,
               duration_ms=2000, threshold_ms=1000),
            ev(2, "evil" + HOSTILE, "user_1" + HOSTILE, request_id="r1", note=HOSTILE),
        ],
    )  # fmt: skip
    outputs = {
        "journey": run("journey", "--request", "r1", "--db", str(db)),
        "errors": run("errors", "--db", str(db)),
        "slow": run("slow", "--db", str(db)),
    }
    for command, out in outputs.items():
        assert not any(c in out for c in BAD), (command, out)
        assert "\\x1b]0;owned\\x07" in out or "\\x1b" in out, (command, out)
    journey = outputs["journey"].splitlines()
    assert len(journey) == 4, journey  # the day, then one line per event
    assert "\\u202eevil\\u2028next\\x0dback\\x0aline" in outputs["errors"]
    # --json is data, not terminal output: the values come back exactly
    data = json.loads(run("journey", "--request", "r1", "--db", str(db), "--json"))
    assert data[0]["properties"]["error_message"] == HOSTILE
    assert data[2]["distinct_id"] == "user_1" + HOSTILE


def test_unverified_persons_are_marked(tmp_path: Path) -> None:
    db = stored(
        tmp_path,
        [
            ev(0, "api_request", "user_12345", request_id="r2", endpoint="/a", status_code=200),
            ev(1, "api_request", "anon-req", request_id="r2", endpoint="/b", status_code=200,
               **{"$process_person_profile": False}),
        ],
    )  # fmt: skip
    lines = run("journey", "--request", "r2", "--db", str(db)).splitlines()[1:]
    assert lines[0].endswith("user: user_12345)")
    assert lines[1].endswith("user: anon-req (unverified))")
    # a person's own journey names no person, but still marks the unverified event
    (line,) = run("journey", "--user", "anon-req", "--db", str(db)).splitlines()[1:]
    assert "user: anon-req (unverified)" in line
    (line,) = run("journey", "--user", "user_12345", "--db", str(db)).splitlines()[1:]
    assert "user:" not in line
