"""Shared pieces of the OTLP adapters: kind numbers, remote-parent flags, validated ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.spanview import CLIENT, CONSUMER, INTERNAL, PRODUCER, SERVER, ExceptionInfo, SpanView

# OTLP SpanKind numbers (not the Python SDK enum's values).
OTLP_KINDS: dict[int, str] = {
    0: "unspecified",
    1: INTERNAL,
    2: SERVER,
    3: CLIENT,
    4: PRODUCER,
    5: CONSUMER,
}
OTLP_KIND_NAMES: dict[str, int] = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
STATUS_ERROR = 2
STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200


class SpanRejected(ValueError):
    """One span cannot be used (bad ids, wrong types); the rest of the request still can."""


def span_ids(trace_id: bytes, span_id: bytes, parent: bytes) -> tuple[int, int, int | None]:
    """Validated ids as ints: trace 16 bytes, span 8, parent 8 or empty; none all-zero."""
    if len(trace_id) != 16 or not any(trace_id):
        raise SpanRejected("invalid traceId")
    if len(span_id) != 8 or not any(span_id):
        raise SpanRejected("invalid spanId")
    if parent and len(parent) != 8:
        raise SpanRejected("invalid parentSpanId")
    parent_id = int.from_bytes(parent, "big") if parent else 0
    return int.from_bytes(trace_id, "big"), int.from_bytes(span_id, "big"), parent_id or None


def parent_is_remote(flags: int, kind: str, has_parent: bool) -> bool:
    """From the span flags when the sender set them; else a SERVER span's parent is remote.

    Senders older than OTLP 1.1 leave the is-remote bits unset. A SERVER span's parent then
    almost always is the caller's CLIENT span in another process.
    """
    if not has_parent:
        return False
    if flags & _HAS_IS_REMOTE:
        return bool(flags & _IS_REMOTE)
    return kind == SERVER


def build_view(
    *,
    name: str,
    kind_number: int,
    ids: tuple[int, int, int | None],
    flags: int,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, Any],
    resource: Mapping[str, Any],
    exceptions: tuple[ExceptionInfo, ...],
    status_code: int,
) -> SpanView:
    kind = OTLP_KINDS.get(kind_number, "unspecified")
    trace_id, span_id, parent = ids
    return SpanView(
        name=name,
        kind=kind,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        parent_is_remote=parent_is_remote(flags, kind, parent is not None),
        start_ns=start_ns,
        end_ns=end_ns or start_ns,
        attributes=attributes,
        resource=resource,
        exceptions=exceptions,
        status_error=status_code == STATUS_ERROR,
        facts=None,  # from outside the process: identity comes from attributes
    )


exception_info = ExceptionInfo.from_attributes
