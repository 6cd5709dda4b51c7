"""The neutral span view the mapping core reads, and the bridge's in-process request facts.

Adapters build a :class:`SpanView` from whatever they hold (an SDK ``ReadableSpan``, an
OTLP protobuf or JSON span) so the mapping in :mod:`otel_posthog.core.mapping` is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Span kinds by name: the SDK enum and OTLP numbers differ, so adapters translate to these.
SERVER = "server"
CLIENT = "client"
INTERNAL = "internal"
PRODUCER = "producer"
CONSUMER = "consumer"


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    """One recorded ``exception`` span event."""

    type: str
    message: str
    stacktrace: str = ""

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any] | None) -> ExceptionInfo:
        """From an ``exception`` event's semantic-convention attributes (any source)."""
        attrs = attributes or {}
        return cls(
            type=str(attrs.get("exception.type", "")),
            message=str(attrs.get("exception.message", "")),
            stacktrace=str(attrs.get("exception.stacktrace", "")),
        )


@dataclass(frozen=True, slots=True)
class CustomEvent:
    """An event captured with ``otel_posthog.capture()`` during a request."""

    event: str
    properties: Mapping[str, Any]
    timestamp_ns: int
    index: int


@dataclass(slots=True)
class RequestFacts:
    """What the in-process bridge resolved for one request, outside span attributes.

    Kept apart from attributes so an attribute set by the app cannot override the
    bridge's resolution out of order. The receiver path has none of these (``None``).
    """

    identified_id: str | None = None  # otel_posthog.identify()
    jwt_distinct_id: str | None = None  # verified JWT
    header_distinct_id: str | None = None  # X-POSTHOG-DISTINCT-ID (client-controlled)
    baggage_distinct_id: str | None = None  # trusted baggage (OTEL_POSTHOG_TRUST_BAGGAGE)
    session_id: str | None = None
    window_id: str | None = None
    request_id: str | None = None  # adopted X-Request-ID, when it is the request id
    client_request_id: str | None = None  # X-Request-ID kept beside a traceparent
    client_ip: str | None = None
    custom_events: tuple[CustomEvent, ...] = ()
    rollup: Mapping[str, float] = field(default_factory=dict)
    route: str | None = None  # full route template found from the framework's routing
    response_request_id: str | None = None  # the app's own X-Request-ID, kept beside


@dataclass(slots=True)
class GenAIFacts:
    """What the mapping of a GenAI span needs beyond its own attributes.

    Adapters fill it: the in-process processor from what it saw while the span ran, the
    OTLP receiver from the other spans of the same export batch.
    """

    request: SpanView | None = None  # the request (local-root SERVER span) it ran in
    parent_genai_span_id: int | None = None  # the direct parent, when it is a GenAI span
    http_status: int | None = None  # the last child HTTP span's status code
    http_url: str | None = None  # the last child HTTP span's URL
    status_message: str = ""  # the span status description
    events: tuple[tuple[str, Mapping[str, Any]], ...] = ()  # the span's gen_ai.* events


@dataclass(slots=True)
class SpanView:
    """A finished span, reduced to what the mapping needs. Read-only by convention.

    Not a frozen dataclass: one is built for every request, and a frozen dataclass's
    ``__init__`` makes an ``object.__setattr__`` call per field (docs/performance.md).
    """

    name: str
    kind: str
    trace_id: int
    span_id: int
    parent_span_id: int | None
    parent_is_remote: bool
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    resource: Mapping[str, Any]
    exceptions: tuple[ExceptionInfo, ...] = ()
    status_error: bool = False
    facts: RequestFacts | None = None
    genai: GenAIFacts | None = None  # set for GenAI spans (gen_ai.operation.name)

    @property
    def is_local_root(self) -> bool:
        """No parent, or a remote one: the process's root span of its request."""
        return self.parent_span_id is None or self.parent_is_remote
