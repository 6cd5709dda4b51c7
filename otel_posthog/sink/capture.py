"""Decoding PostHog capture requests as posthog-python and posthog-js send them.

Pure functions, no I/O: body bytes (gzip, base64 form data, JSON batch, single event or
array) in, normalised events out; ``sent_at`` clock-skew correction as PostHog applies it.
The key is looked for in the unwrapped bytes before any JSON is parsed; JSON too deep for
the parser, or nested deeper than :data:`MAX_DEPTH`, is a :class:`CaptureError` (400), and
``NaN``/``Infinity`` (not JSON) are read as ``null``.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

from ..core.bounded_gzip import GzipError, gunzip

MAX_DECOMPRESSED = 20 * 1024 * 1024
MAX_DEPTH = 64


class CaptureError(ValueError):
    """The body cannot be read as PostHog events; the message is the 400 reason."""


class AuthError(ValueError):
    """Missing or wrong project API key."""


def _gunzip(data: bytes) -> bytes:
    try:
        return gunzip(data, MAX_DECOMPRESSED)
    except GzipError as exc:
        if exc.kind == "too_large":
            raise CaptureError("decompressed body too large") from None
        if exc.kind == "truncated":
            raise CaptureError("truncated gzip body") from None
        raise CaptureError(f"bad gzip body: {exc}") from None


def decode_body(
    body: bytes,
    content_type: str,
    content_encoding: str,
    compression: str,
    api_key: str | None = None,
) -> Any:
    """The JSON payload of a capture request; :class:`AuthError` first if ``api_key`` is
    set and appears nowhere in the body (no parsing for a request that cannot be let in)."""
    body = unwrap_body(body, content_type, content_encoding, compression)
    if api_key is not None and api_key.encode() not in body:
        raise AuthError("missing or wrong api_key")
    return parse_json(body)


def parse_json(body: bytes | str) -> Any:
    """Untrusted JSON: a :class:`CaptureError` for anything that is not JSON or too deep."""
    try:
        value = json.loads(body, parse_constant=lambda _: None)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CaptureError(f"body is not JSON: {exc.__class__.__name__}: {exc}") from None
    if _deeper_than(value, MAX_DEPTH):
        raise CaptureError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False


def unwrap_body(body: bytes, content_type: str, content_encoding: str, compression: str) -> bytes:
    """The JSON bytes of a capture body: gzip, form data and base64 undone."""
    if content_encoding.lower() == "gzip" or compression == "gzip-js" or body[:2] == b"\x1f\x8b":
        body = _gunzip(body)
    if "application/x-www-form-urlencoded" in content_type or body[:5] == b"data=":
        form = parse_qs(body.decode("latin-1"))
        data = (form.get("data") or [""])[0]
        try:
            body = base64.b64decode(data + "=" * (-len(data) % 4))
        except (ValueError, TypeError):
            body = data.encode()
        if body[:2] == b"\x1f\x8b":
            body = _gunzip(body)
    elif compression == "base64":
        try:
            body = base64.b64decode(body)
        except ValueError:
            raise CaptureError("bad base64 body") from None
    return body


def _parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def normalise(payload: Any, api_key: str | None, now: datetime | None = None) -> list[dict]:
    """Events of a decoded payload, key-checked and clock-skew corrected.

    Raises :class:`AuthError` when ``api_key`` is set and the payload's key differs, and
    :class:`CaptureError` when an event lacks its name or person.
    """
    now = now or datetime.now(timezone.utc)
    if isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        raw_events, top = payload["batch"], payload
    elif isinstance(payload, list):
        raw_events, top = payload, {}
    elif isinstance(payload, dict):
        raw_events, top = [payload], payload
    else:
        raise CaptureError("expected a JSON object or array")
    sent_at = _parse_ts(top.get("sent_at"))
    events = []
    for raw in raw_events:
        if not isinstance(raw, dict):
            raise CaptureError("each event must be a JSON object")
        raw_props = raw.get("properties")
        props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
        key = top.get("api_key") or top.get("token") or raw.get("api_key") or props.get("token")
        if api_key is not None and key != api_key:
            raise AuthError("missing or wrong api_key")
        name = raw.get("event")
        person = raw.get("distinct_id") or props.get("distinct_id") or props.get("$distinct_id")
        if not isinstance(name, str) or not name:
            raise CaptureError("event without a name")
        if person is None or person == "":
            raise CaptureError(f"event {name!r} without distinct_id")
        ts = _parse_ts(raw.get("timestamp"))
        if ts is not None and sent_at is not None:
            ts = now - (sent_at - ts)
        elif ts is None and isinstance(raw.get("offset"), (int, float)):
            ts = now - timedelta(milliseconds=raw["offset"])
        ts = ts or now
        props = {k: v for k, v in props.items() if k != "token"}
        events.append(
            {
                "uuid": raw.get("uuid"),
                "event": name,
                "distinct_id": str(person),
                "timestamp": ts.astimezone(timezone.utc).isoformat(),
                "properties": props,
            }
        )
    return events
