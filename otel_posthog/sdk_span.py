"""Adapter: an OTel SDK ``ReadableSpan`` becomes the neutral :class:`SpanView`."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from .spanview import ExceptionInfo, RequestFacts, SpanView


def view_from_sdk_span(span: ReadableSpan, facts: RequestFacts | None = None) -> SpanView:
    ctx = span.context
    parent = span.parent
    exceptions = tuple(
        ExceptionInfo(
            type=str(ev.attributes.get("exception.type", "")) if ev.attributes else "",
            message=str(ev.attributes.get("exception.message", "")) if ev.attributes else "",
            stacktrace=str(ev.attributes.get("exception.stacktrace", "")) if ev.attributes else "",
        )
        for ev in span.events
        if ev.name == "exception"
    )
    return SpanView(
        name=span.name,
        kind=span.kind.name.lower(),
        trace_id=ctx.trace_id if ctx else 0,
        span_id=ctx.span_id if ctx else 0,
        parent_span_id=parent.span_id if parent is not None and parent.is_valid else None,
        parent_is_remote=bool(parent is not None and parent.is_remote),
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        attributes=span.attributes or {},
        resource=span.resource.attributes if span.resource else {},
        exceptions=exceptions,
        status_error=span.status.status_code is StatusCode.ERROR,
        facts=facts,
    )
