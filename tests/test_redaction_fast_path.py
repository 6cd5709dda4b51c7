"""The query-redaction check's early return decides as its general loop does."""

from __future__ import annotations

import itertools
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from otel_posthog.sdk import redaction

_KEYS = ("http.url", "url.full", "http.target", "url.query")
_VALUES: tuple[Any, ...] = (None, "/a", "/a?token=s", "", "token=s", 7)


def _outcome(span: Any) -> tuple[dict[str, Any], bool, dict[str, Any]]:
    """Attributes after the check, whether set_attribute was wrapped, and the
    attributes after every URL key is set again with a query string."""
    now = dict(span.attributes)
    wrapped = "set_attribute" in vars(span)
    for key in _KEYS:
        span.set_attribute(key, "token=later" if key == "url.query" else "/b?token=later")
    later = dict(span.attributes)
    span.end()
    return now, wrapped, later


def test_early_return_matches_the_loop() -> None:
    tracer = TracerProvider().get_tracer("redaction-test")
    for combo in itertools.product(_VALUES, repeat=len(_KEYS)):
        attrs = {k: v for k, v in zip(_KEYS, combo, strict=True) if v is not None}
        fast = tracer.start_span("GET", kind=SpanKind.SERVER, attributes=attrs)
        slow = tracer.start_span("GET", kind=SpanKind.SERVER, attributes=attrs)
        redaction.redact_span_urls(fast)
        redaction._redact_each(slow, redaction._readable_attributes(slow))
        assert _outcome(fast) == _outcome(slow), attrs


def test_plain_urls_are_left_alone_and_queries_redacted() -> None:
    tracer = TracerProvider().get_tracer("redaction-test")
    plain = tracer.start_span("GET", attributes={"http.url": "http://h/a", "http.target": "/a"})
    redaction.redact_span_urls(plain)
    assert "set_attribute" not in vars(plain)
    secret = tracer.start_span("GET", attributes={"http.target": "/a?token=s"})
    redaction.redact_span_urls(secret)
    assert secret.attributes["http.target"] == "/a?token=REDACTED"
    assert "set_attribute" in vars(secret)
