"""The sink's PostHog objects (dashboards, tiles, insights, cohorts, alerts, insight variables).

One SQLite table beside the events (same database file, its own connection): each object is
its JSON under a kind and an id. Numeric ids come from one sequence; alerts and insight
variables have UUIDs, as in PostHog.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS posthog_objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (kind, id)
);
"""
UUID_KINDS = ("alert", "insight_variable")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class ObjectStore:
    """Thread-safe CRUD over ``posthog_objects``. ``path=":memory:"`` keeps them in memory."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=10)
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)
        self._conn.commit()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            key = str(uuid.uuid4()) if kind in UUID_KINDS else None
            cur = self._conn.execute(
                "INSERT INTO posthog_objects (kind, id, data) VALUES (?, ?, '{}')",
                (kind, key or f"pending-{uuid.uuid4()}"),
            )
            seq = int(cur.lastrowid or 0)
            obj_id: Any = key or seq
            obj = {"id": obj_id, **data}
            self._conn.execute(
                "UPDATE posthog_objects SET id = ?, data = ? WHERE seq = ?",
                (str(obj_id), json.dumps(obj), seq),
            )
            self._conn.commit()
            return obj

    def get(self, kind: str, obj_id: Any) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT data FROM posthog_objects WHERE kind = ? AND id = ?", (kind, str(obj_id))
            ).fetchone()
        return json.loads(row[0]) if row else None

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT data FROM posthog_objects WHERE kind = ? ORDER BY seq", (kind,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def save(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._conn.execute(
                "UPDATE posthog_objects SET data = ? WHERE kind = ? AND id = ?",
                (json.dumps(obj), kind, str(obj["id"])),
            )
            self._conn.commit()
        return obj

    def delete(self, kind: str, obj_id: Any) -> None:
        with self._lock:
            self._conn.execute(
                "DELETE FROM posthog_objects WHERE kind = ? AND id = ?", (kind, str(obj_id))
            )
            self._conn.commit()
