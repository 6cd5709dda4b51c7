"""Adapter: an OTel SDK ``ReadableSpan`` becomes the neutral :class:`SpanView`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from .. import compat
from ..core.spanview import ExceptionInfo, GenAIFacts, RequestFacts, SpanView

# by identity: hashing an Enum member runs Python code
_KINDS = {id(kind): kind.name.lower() for kind in SpanKind}


_plain = compat.plain_attributes_reader()
_no_events = compat.no_events_reader()
_fields = compat.span_fields_reader()


def is_local_root(parent: Any) -> bool:
    """A span with this parent (an SDK ``SpanContext`` or None) is its process's root for the
    request: no parent, a remote one, or an invalid one. Only a local-root SERVER span makes
    request events; a nested one is left to it (the core's rule for a ``SpanView`` is in
    :func:`otel_posthog.core.mapping.map_span`)."""
    return parent is None or parent.is_remote or not parent.is_valid


def _exceptions(span: ReadableSpan) -> tuple[ExceptionInfo, ...]:
    return tuple(
        ExceptionInfo.from_attributes(ev.attributes) for ev in span.events if ev.name == "exception"
    )


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
    ctx, parent, kind, start, end, status, raw, resource, name = _fields(span)
    return SpanView(
        name,
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
