"""Query-string values out of server and client span URL attributes.

Query strings often carry secrets (tokens, signed URLs, passwords, API keys of the
services an app calls). The HTTP instrumentations record them in ``http.url`` /
``url.full`` / ``url.query``, and may set those attributes again after the span started,
so the bridge wraps the request (SERVER) or outbound (CLIENT) span's
``set_attribute`` to keep parameter names and replace values with ``REDACTED`` (the
OpenTelemetry instrumentations' own convention). ``OTEL_POSTHOG_REDACT_QUERY=false``
turns it off. The wrap of a span's methods is
:func:`otel_posthog.compat.wrap_span_setters` (probed: where a span takes no instance
attributes, only the values present when it starts are redacted; PostHog events never
carry a query string: :func:`otel_posthog.core.properties.request_path`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .. import compat

REDACTED = "REDACTED"
_URL_KEYS = ("http.url", "url.full", "http.target")
_QUERY_KEYS = ("url.query",)
_ALL_KEYS = _URL_KEYS + _QUERY_KEYS
_KEYS = frozenset(_ALL_KEYS)


def redact_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{name}={REDACTED}" for name, _ in pairs) if pairs else REDACTED


def redact_url(url: str) -> str:
    if "?" not in url:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=redact_query(parts.query)))


def redact_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if key in _URL_KEYS:
            return redact_url(value)
        if key in _QUERY_KEYS and value:
            return redact_query(value)
    return value


# the span's attributes to read: each lookup through the SDK's ``MappingProxyType`` and
# ``BoundedAttributes`` runs Python code, and an absent key raises and catches ``KeyError``
_readable_attributes = compat.live_attributes_reader()


def redact_span_urls(span: Any) -> None:
    """Redact the span's URL attributes now and whenever they are set again.

    Instrumentations set the URL attributes when they start the server span, then set
    the same values again; when they came without a query string, nothing will need
    redacting and the span is left alone (the request path's common case). Only a
    query string, or a span started without URL attributes, wraps ``set_attribute``.
    """
    attrs = _readable_attributes(span)
    get = attrs.get
    url, full, target, query = (
        get("http.url"),
        get("url.full"),
        get("http.target"),
        get("url.query"),
    )
    if (
        (url is None or (type(url) is str and "?" not in url))
        and (full is None or (type(full) is str and "?" not in full))
        and (target is None or (type(target) is str and "?" not in target))
        and (query is None or (type(query) is str and not query))
        and not (url is None and full is None and target is None and query is None)
    ):
        return  # URL attributes, none with a query string: what _redact_each would find
    _redact_each(span, attrs)


def _redact_each(span: Any, attrs: Any) -> None:
    """Each URL attribute redacted; ``set_attribute`` wrapped unless a URL attribute came
    without a query string (the general form of :func:`redact_span_urls`' early return)."""
    seen_url = had_query = False
    for key in _ALL_KEYS:
        value = attrs.get(key)
        if value is None:
            continue
        seen_url = True
        if type(value) is str and (not value if key in _QUERY_KEYS else "?" not in value):
            continue  # no query string: nothing to redact (the common case, no calls)
        redacted = redact_value(key, value)
        if redacted is not value:
            had_query = True
            span.set_attribute(key, redacted)
    if seen_url and not had_query:
        return
    compat.wrap_span_setters(span, _redacting_set, _redacting_set_many)


# called for every attribute the instrumentation sets (about 14 per request): only the few
# URL keys pay for redaction
def _redacting_set(original: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    def set_attribute(key: str, value: Any) -> None:
        original(key, redact_value(key, value) if key in _KEYS else value)

    return set_attribute


def _redacting_set_many(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def set_attributes(attributes: Any) -> None:
        if any(k in _KEYS for k in attributes):
            attributes = {k: redact_value(k, v) for k, v in attributes.items()}
        original(attributes)

    return set_attributes
