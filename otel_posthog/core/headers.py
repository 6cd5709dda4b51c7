"""The request and response headers the bridge reads and writes, and their hygiene:
names, length limits, sanitising, UUID and ``traceparent`` checks, bearer tokens.

Everything read from a request header passes through here before the bridge uses it.
"""

from __future__ import annotations

import re
import unicodedata

AUTHORIZATION_HEADER = "authorization"
SESSION_HEADER = "x-posthog-session-id"
WINDOW_HEADER = "x-posthog-window-id"
DISTINCT_HEADER = "x-posthog-distinct-id"
REQUEST_ID_HEADER = "x-request-id"
TRACERESPONSE_HEADER = "traceresponse"
# what a browser must be allowed to send (CORS allow list) and may read (expose list)
REQUEST_HEADERS = (
    AUTHORIZATION_HEADER,
    "content-type",
    "traceparent",
    "tracestate",
    "baggage",
    REQUEST_ID_HEADER,
    SESSION_HEADER,
    WINDOW_HEADER,
    DISTINCT_HEADER,
)
RESPONSE_HEADERS = ("X-Request-ID", TRACERESPONSE_HEADER)  # as the responses spell them

MAX_HEADER_CHARS = 1000  # characters kept of a header value
MAX_AUTHORIZATION_CHARS = 16_384  # a JWT with many claims
_LIMITS = {AUTHORIZATION_HEADER: MAX_AUTHORIZATION_CHARS}


def header_limit(name: str) -> int:
    """Characters kept of the value of header ``name`` (lower-case)."""
    return _LIMITS.get(name, MAX_HEADER_CHARS)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
NIL_UUID = "00000000-0000-0000-0000-000000000000"


# Stripped besides C0/C1 controls: format characters (bidi overrides such as U+202E,
# zero-width characters), line and paragraph separators, lone surrogates.
_INVISIBLE = frozenset(("Cf", "Zl", "Zp", "Cs"))


def _visible(value: str) -> str:
    return "".join(c for c in value if c.isprintable() or unicodedata.category(c) not in _INVISIBLE)


def sanitize(value: object, limit: int = MAX_HEADER_CHARS) -> str | None:
    """Strip control and format characters and surrounding space, cap the length; None
    when empty."""
    if isinstance(value, bytes):
        value = value[: limit * 4].decode("latin-1")
    if not isinstance(value, str):
        return None
    value = value[: limit * 4]
    if not (value.isascii() and value.isprintable()):  # the common case needs no regex
        value = _CONTROL.sub("", value)
        if not value.isprintable():  # non-ASCII: format characters, separators
            value = _visible(value)
    cleaned = value.strip()[:limit]
    return cleaned or None


_SEEN_UUIDS: dict[str, bool] = {}  # a session id repeats on every request of its session


def valid_uuid(value: str | None) -> bool:
    if not value:
        return False
    known = _SEEN_UUIDS.get(value)
    if known is None:
        known = _UUID.match(value) is not None
        if len(_SEEN_UUIDS) >= 4096:
            _SEEN_UUIDS.clear()
        _SEEN_UUIDS[value] = known
    return known


def uuid_int(value: str) -> int | None:
    """The 128 bits of a UUID string, or None for a non-UUID or the nil UUID."""
    if not valid_uuid(value):
        return None
    number = int(value.replace("-", ""), 16)
    return number or None


def valid_traceparent(value: str | None) -> bool:
    """W3C trace-context validity, as the SDK's TraceContextTextMapPropagator judges it."""
    if not value:
        return False
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return False
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return False
    return int(trace_id, 16) != 0 and int(span_id, 16) != 0


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None
