"""Adapter: an OTel SDK ``ReadableSpan`` becomes the neutral :class:`SpanView`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from .spanview import ExceptionInfo, GenAIFacts, RequestFacts, SpanView

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


def _exceptions(span: ReadableSpan) -> tuple[ExceptionInfo, ...]:
    out = []
    for ev in span.events:
        if ev.name == "exception":
            attrs = ev.attributes or {}
            out.append(
                ExceptionInfo(
                    type=str(attrs.get("exception.type", "")),
                    message=str(attrs.get("exception.message", "")),
                    stacktrace=str(attrs.get("exception.stacktrace", "")),
                )
            )
    return tuple(out)


_RESOURCES: dict[int, tuple[Any, Mapping[str, Any]]] = {}


def _resource_attributes(resource: Any) -> Mapping[str, Any]:
    """A resource's attributes as a plain dict; a provider has one resource for all
    its spans, so this is looked up by identity (the entry keeps the resource alive)."""
    if resource is None:
        return {}
    found = _RESOURCES.get(id(resource))
    if found is not None and found[0] is resource:
        return found[1]
    attrs = _plain(resource.attributes)
    if len(_RESOURCES) >= 64:
        _RESOURCES.clear()
    _RESOURCES[id(resource)] = (resource, attrs)
    return attrs


def view_from_sdk_span(span: ReadableSpan, facts: RequestFacts | None = None) -> SpanView:
    try:  # the SDK's fields: each public property is a Python call, ten per span
        ctx, parent, kind = span._context, span._parent, span._kind
        start, end, status = span._start_time, span._end_time, span._status
        raw, resource = span._attributes, span._resource
    except AttributeError:  # another ReadableSpan implementation
        ctx, parent, kind = span.context, span.parent, span.kind
        start, end, status = span.start_time, span.end_time, span.status
        raw, resource = span.attributes, span.resource
    return SpanView(
        span.name,
        _KINDS.get(id(kind)) or kind.name.lower(),
        ctx.trace_id if ctx else 0,
        ctx.span_id if ctx else 0,
        parent.span_id if parent is not None and parent.is_valid else None,
        parent is not None and parent.is_remote,
        start or 0,
        end or start or 0,
        _plain(raw),
        _resource_attributes(resource),
        () if _no_events(span) else _exceptions(span),
        status.status_code is StatusCode.ERROR,
        facts,
    )


def add_genai_span_facts(span: ReadableSpan, genai: GenAIFacts) -> GenAIFacts:
    """The status description and the ``gen_ai.*`` span events of a finished GenAI span."""
    status = span.status
    genai.status_message = (status.description or "") if status is not None else ""
    if not _no_events(span):
        genai.events = tuple(
            (ev.name, dict(ev.attributes or {}))
            for ev in span.events
            if ev.name.startswith("gen_ai.")
        )
    return genai
