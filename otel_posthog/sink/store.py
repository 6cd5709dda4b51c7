"""The local sink's event store: SQLite in WAL mode, deduplicated by event ``uuid``.

WAL lets the CLI read while the sink writes. Each event keeps its full JSON; the columns
that journeys filter on (person, request, session, event name, time) are indexed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    uuid TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    request_id TEXT,
    session_id TEXT,
    source TEXT,
    received_at TEXT NOT NULL,
    properties TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_person ON events (distinct_id, timestamp);
CREATE INDEX IF NOT EXISTS events_request ON events (request_id);
CREATE INDEX IF NOT EXISTS events_session ON events (session_id);
CREATE INDEX IF NOT EXISTS events_name ON events (event, timestamp);
"""
SELECT_DEADLINE_S = 5.0
SELECT_CHECK_EVERY = 10000  # SQLite VM steps between deadline checks


@dataclass(frozen=True)
class StoredEvent:
    uuid: str
    event: str
    distinct_id: str
    timestamp: str
    properties: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "timestamp": self.timestamp,
            "event": self.event,
            "distinct_id": self.distinct_id,
            "properties": self.properties,
        }


class EventStore:
    """Thread-safe SQLite event table. ``path=":memory:"`` works for one process.

    ``readonly=True`` (the CLI) never creates or changes the database; it raises
    ``FileNotFoundError`` when there is none.
    """

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        if readonly:
            if path == ":memory:" or not os.path.exists(path):
                raise FileNotFoundError(path)
            uri = Path(path).resolve().as_uri() + "?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
            return
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=10)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self._conn.commit()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def insert(self, events: Iterable[dict[str, Any]], received_at: str) -> int:
        """Insert normalised events; returns how many were new (duplicates by uuid collapse)."""
        rows = []
        for ev in events:
            props = ev.get("properties") or {}
            rows.append(
                (
                    str(ev.get("uuid") or uuid_mod.uuid4()),
                    str(ev["event"]),
                    str(ev["distinct_id"]),
                    str(ev["timestamp"]),
                    _str_or_none(props.get("request_id")),
                    _str_or_none(props.get("$session_id") or props.get("session_id")),
                    _str_or_none(props.get("source")),
                    received_at,
                    json.dumps(props, default=str),
                )
            )
        with self._lock:
            before = self._conn.total_changes
            self._conn.executemany("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?)", rows)
            self._conn.commit()
            return self._conn.total_changes - before

    def query(
        self,
        *,
        distinct_id: str | Sequence[str] | None = None,
        request_id: str | None = None,
        session_id: str | None = None,
        events: Sequence[str] | None = None,
        since: str | None = None,
        order: str = "timestamp ASC",
        limit: int | None = None,
    ) -> list[StoredEvent]:
        where, args = [], []
        if isinstance(distinct_id, str):
            where.append("distinct_id = ?")
            args.append(distinct_id)
        elif distinct_id is not None:
            where.append(f"distinct_id IN ({','.join('?' * len(distinct_id))})")
            args.extend(distinct_id)
        if request_id is not None:
            where.append("request_id = ?")
            args.append(request_id)
        if session_id is not None:
            where.append("session_id = ?")
            args.append(session_id)
        if events:
            where.append(f"event IN ({','.join('?' * len(events))})")
            args.extend(events)
        if since is not None:
            where.append("timestamp >= ?")
            args.append(since)
        sql = "SELECT uuid, event, distinct_id, timestamp, properties FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if order not in ("timestamp ASC", "timestamp DESC"):
            raise ValueError(order)
        sql += f" ORDER BY {order}, rowid {order.split()[1]}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [StoredEvent(r[0], r[1], r[2], r[3], _properties(r[4])) for r in rows]

    def anonymous_ids(self, distinct_id: str) -> list[str]:
        """The ids ``distinct_id`` had before posthog-js' ``$identify`` merged them into it."""
        sql = (
            "SELECT DISTINCT json_extract(properties, '$.\"$anon_distinct_id\"') FROM events "
            "WHERE distinct_id = ? AND event = '$identify'"
        )
        with self._lock:
            rows = self._conn.execute(sql, (distinct_id,)).fetchall()
        return [str(r[0]) for r in rows if r[0] and str(r[0]) != distinct_id]

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def recent_values(self, column: str, limit: int = 50) -> list[tuple[str, int, str]]:
        """(value, events, last timestamp) of ``column``, most recently seen first."""
        if column not in ("distinct_id", "session_id", "request_id", "event"):
            raise ValueError(column)
        sql = (
            f"SELECT {column}, COUNT(*), MAX(timestamp) FROM events WHERE {column} IS NOT NULL "
            f"GROUP BY {column} ORDER BY MAX(timestamp) DESC LIMIT {int(limit)}"
        )
        with self._lock:
            return [(str(r[0]), int(r[1]), str(r[2])) for r in self._conn.execute(sql)]

    def select(
        self, sql: str, params: dict[str, Any], prepare: Callable[[sqlite3.Connection], None]
    ) -> list[tuple[Any, ...]]:
        """Run one read-only statement over ``events`` (the dashboards' query engine).

        ``prepare`` registers the engine's SQL functions. An authorizer refuses anything but
        reading the events table, and a deadline ends a statement that runs too long.
        """
        deadline = time.monotonic() + SELECT_DEADLINE_S
        with self._lock:
            prepare(self._conn)
            self._conn.set_authorizer(_read_events_only)
            self._conn.set_progress_handler(
                lambda: int(time.monotonic() > deadline), SELECT_CHECK_EVERY
            )
            try:
                return self._conn.execute(sql, params).fetchall()
            finally:
                self._conn.set_progress_handler(None, 0)
                self._conn.set_authorizer(None)

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM events")
            self._conn.commit()


def _properties(text: str) -> dict[str, Any]:
    """Stored properties; a row no parser can read shows as such instead of failing a query."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {"$unreadable_properties": text[:200]}
    return value if isinstance(value, dict) else {}


_READ_ACTIONS = (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION)


def _read_events_only(
    action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None
) -> int:
    if action == sqlite3.SQLITE_READ and arg1 != "events":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
