"""Adapter: an OTel SDK ``ReadableSpan`` becomes the neutral :class:`SpanView`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from .spanview import ExceptionInfo, RequestFacts, SpanView

# by identity: hashing an Enum member runs Python code
_KINDS = {id(kind): kind.name.lower() for kind in SpanKind}


def _plain(attributes: Any) -> Mapping[str, Any]:
    """A plain dict to read from, without copying when possible.

    Every lookup on the SDK's ``BoundedAttributes`` (behind a ``MappingProxyType``) runs
    Python code, and the mapping makes about fifteen per span; a finished span's
    attributes no longer change, so its storage dict is read directly.
    """
    if attributes is None:
        return {}
    inner = getattr(attributes, "_dict", None)
    if isinstance(inner, dict):
        return inner
    return attributes if type(attributes) is dict else dict(attributes)


def _no_events(span: ReadableSpan) -> bool:
    """True when the span recorded no events, without copying them (``span.events``)."""
    raw = getattr(span, "_events", None)
    if raw is None:
        return False
    storage = getattr(raw, "_dq", raw)  # the SDK's BoundedList keeps a deque
    try:
        return len(storage) == 0
    except TypeError:
        return False


def view_from_sdk_span(span: ReadableSpan, facts: RequestFacts | None = None) -> SpanView:
    ctx = span.context
    parent = span.parent
    exceptions = (
        ()
        if _no_events(span)
        else tuple(
            ExceptionInfo(
                type=str(ev.attributes.get("exception.type", "")) if ev.attributes else "",
                message=str(ev.attributes.get("exception.message", "")) if ev.attributes else "",
                stacktrace=str(ev.attributes.get("exception.stacktrace", ""))
                if ev.attributes
                else "",
            )
            for ev in span.events
            if ev.name == "exception"
        )
    )
    return SpanView(
        name=span.name,
        kind=_KINDS.get(id(span.kind)) or span.kind.name.lower(),
        trace_id=ctx.trace_id if ctx else 0,
        span_id=ctx.span_id if ctx else 0,
        parent_span_id=parent.span_id if parent is not None and parent.is_valid else None,
        parent_is_remote=bool(parent is not None and parent.is_remote),
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        attributes=_plain(
            raw if (raw := getattr(span, "_attributes", None)) is not None else span.attributes
        ),
        resource=_plain(span.resource.attributes) if span.resource else {},
        exceptions=exceptions,
        status_error=span.status.status_code is StatusCode.ERROR,
        facts=facts,
    )
