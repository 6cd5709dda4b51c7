"""Journeys over the sink's store: the guide's timeline lines, slow requests, errors.

Pure functions over :class:`StoredEvent` lists, shared by the CLI, the demo and the web view.
Timeline lines are for terminals: stored text is untrusted, so control and format
characters (escape sequences, bidi overrides, line separators) are shown escaped. An event
whose ``$process_person_profile`` is false has no verified person (no JWT, no
``identify()``): its line says ``user: <id> (unverified)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from .store import EventStore, StoredEvent

# Properties shown in a timeline line, per event; other events show request_id and a few
# of their own non-$ properties.
LINE_PROPERTIES: dict[str, tuple[str, ...]] = {
    "api_request": ("request_id", "endpoint", "status_code", "response_time_ms"),
    "slow_request": ("request_id", "endpoint", "duration_ms", "threshold_ms"),
    "api_error": ("request_id", "endpoint", "status_code", "error_type", "error_message"),
}
# LLM calls ($ai_generation, $ai_embedding, $ai_span): model, tokens, latency, errors
_AI_LINE = (
    "request_id",
    "$ai_span_name",
    "$ai_model",
    "$ai_input_tokens",
    "$ai_output_tokens",
    "$ai_latency",
    "$ai_http_status",
    "$ai_error",
)
LINE_PROPERTIES.update(dict.fromkeys(("$ai_generation", "$ai_embedding", "$ai_span"), _AI_LINE))
LABELS = {
    "status_code": "status",
    "$ai_span_name": "span",
    "$ai_model": "model",
    "$ai_input_tokens": "input_tokens",
    "$ai_output_tokens": "output_tokens",
    "$ai_latency": "latency_s",
    "$ai_http_status": "http_status",
    "$ai_error": "error",
}
HIDDEN = {"session_id", "source", "environment", "service", "path", "method", "distinct_id"}
MAX_OTHER = 4


def parse_since(value: str) -> str:
    """An ISO date or datetime (naive means UTC) in the store's timestamp format."""
    ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).isoformat()


def _value(key: str, value: Any) -> str:
    if isinstance(value, float) and key.endswith("_ms"):
        return str(round(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def printable(text: str) -> str:
    """``text`` with every non-printable character (``\\x1b``, U+202E, U+2028...) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def unverified(ev: StoredEvent) -> bool:
    """No verified person: the event was sent with ``$process_person_profile: false``."""
    return ev.properties.get("$process_person_profile") is False


def line_properties(ev: StoredEvent) -> list[tuple[str, Any]]:
    props = ev.properties
    keys = LINE_PROPERTIES.get(ev.event)
    if keys is None:
        own = [
            k
            for k in props
            if not k.startswith("$") and k not in HIDDEN and k != "request_id" and k != "token"
        ]
        keys = ("request_id", *own[:MAX_OTHER])
    return [(k, props[k]) for k in keys if props.get(k) is not None]


def clock(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp).astimezone(timezone.utc)


def timeline_line(ev: StoredEvent, show_person: bool = False) -> str:
    """``10:05:01 - api_request (request_id: ..., endpoint: ..., status: 200, ...)``."""
    pairs = [f"{LABELS.get(k, k)}: {_value(k, v)}" for k, v in line_properties(ev)]
    if unverified(ev):
        pairs.append(f"user: {ev.distinct_id} (unverified)")
    elif show_person:
        pairs.append(f"user: {ev.distinct_id}")
    detail = f" ({', '.join(pairs)})" if pairs else ""
    return printable(f"{clock(ev.timestamp):%H:%M:%S} - {ev.event}{detail}")


def timeline(events: Iterable[StoredEvent], show_person: bool = False) -> list[str]:
    """Timeline lines, with a ``YYYY-MM-DD (UTC)`` line whenever the day changes."""
    lines: list[str] = []
    day = None
    for ev in events:
        this_day = clock(ev.timestamp).date()
        if this_day != day:
            day = this_day
            lines.append(f"{day.isoformat()} (UTC)")
        lines.append(timeline_line(ev, show_person))
    return lines


def as_json(events: Iterable[StoredEvent]) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": e.timestamp,
            "event": e.event,
            "distinct_id": e.distinct_id,
            "properties": e.properties,
        }
        for e in events
    ]


def journey(
    store: EventStore,
    *,
    user: str | None = None,
    request: str | None = None,
    session: str | None = None,
    events: Sequence[str] | None = None,
    since: str | None = None,
    limit: int | None = None,
) -> list[StoredEvent]:
    """Events of one person, request or session, oldest first (the newest ``limit``).

    A person's events include those of the anonymous ids ``$identify`` merged into it,
    as PostHog's person view does.
    """
    found = store.query(
        distinct_id=person_ids(store, user) if user is not None else None,
        request_id=request,
        session_id=session,
        events=events or None,
        since=since,
        order="timestamp DESC" if limit else "timestamp ASC",
        limit=limit,
    )
    return found[::-1] if limit else found


def person_ids(store: EventStore, user: str) -> list[str]:
    """``user`` and the anonymous ids it was identified from."""
    return [user, *store.anonymous_ids(user)]


def _duration(ev: StoredEvent) -> float:
    value = ev.properties.get("duration_ms", ev.properties.get("response_time_ms"))
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def slow_requests(
    store: EventStore, user: str | None = None, limit: int | None = 20, since: str | None = None
) -> list[StoredEvent]:
    """``slow_request`` events, slowest first by ``duration_ms``."""
    people = person_ids(store, user) if user is not None else None
    found = store.query(distinct_id=people, events=["slow_request"], since=since)
    found.sort(key=_duration, reverse=True)
    return found[:limit] if limit else found


def errors(
    store: EventStore, user: str | None = None, limit: int | None = None, since: str | None = None
) -> list[StoredEvent]:
    """``api_error`` events, oldest first (the newest ``limit``)."""
    return journey(store, user=user, events=["api_error"], since=since, limit=limit)
