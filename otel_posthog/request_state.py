"""Per-request state the bridge keeps in process, and where to find it.

The :class:`PostHogPropagator` creates a :class:`RequestState` from the request headers and
puts it in the OTel context. The span processor binds it to the request's local-root
SERVER span (``LIVE``), so code running in the request (``identify()``, ``capture()``),
the response propagator and the export worker all reach the same object. Raw header
values such as the bearer token stay here, in memory, and never become attributes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from .spanview import CustomEvent, RequestFacts

STATE_KEY = otel_context.create_key("otel-posthog-request")


class RequestState:
    """Mutable facts about one request; shared by the request thread and the export worker."""

    __slots__ = (
        "session_id",
        "window_id",
        "header_distinct_id",
        "baggage_distinct_id",
        "x_request_id",
        "has_traceparent",
        "token",
        "client_ip",
        "identified_id",
        "jwt_distinct_id",
        "jwt_pending",
        "request_id",
        "trace_id_hint",
        "span",
        "span_id",
        "trace_id",
        "captures",
        "rollup",
        "finished",
        "emit_late",
        "created",
        "_lock",
    )

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.window_id: str | None = None
        self.header_distinct_id: str | None = None
        self.baggage_distinct_id: str | None = None
        self.x_request_id: str | None = None
        self.has_traceparent = False
        self.token: str | None = None
        self.client_ip: str | None = None
        self.identified_id: str | None = None
        self.jwt_distinct_id: str | None = None
        self.jwt_pending = False
        self.request_id: str | None = None  # set only when it is not the trace id
        self.trace_id_hint: int | None = None  # trace id to use for a new trace (UUID request id)
        self.span: Any = None
        self.span_id = 0
        self.trace_id = 0
        self.captures: list[CustomEvent] = []
        self.rollup: dict[str, float] = {}
        self.finished = False
        self.emit_late: Any = None  # callable(state, CustomEvent) once the request span ended
        self.created = time.monotonic()
        self._lock = threading.Lock()

    @property
    def effective_request_id(self) -> str:
        return self.request_id or format(self.trace_id, "032x")

    def add_capture(self, event: str, properties: Mapping[str, Any]) -> None:
        with self._lock:
            custom = CustomEvent(event, dict(properties), time.time_ns(), len(self.captures))
            self.captures.append(custom)
            late = self.emit_late if self.finished else None
        if late is not None:
            late(self, custom)

    def add_rollup(self, key_calls: str, key_time: str, ms: float) -> None:
        with self._lock:
            self.rollup[key_calls] = self.rollup.get(key_calls, 0) + 1
            self.rollup[key_time] = round(self.rollup.get(key_time, 0.0) + ms, 3)

    def facts(self) -> RequestFacts:
        with self._lock:
            captures = tuple(self.captures)
            rollup = dict(self.rollup)
        return RequestFacts(
            identified_id=self.identified_id,
            jwt_distinct_id=self.jwt_distinct_id,
            header_distinct_id=self.header_distinct_id,
            baggage_distinct_id=self.baggage_distinct_id,
            session_id=self.session_id,
            window_id=self.window_id,
            request_id=self.request_id,
            client_request_id=self.x_request_id if self.request_id is None else None,
            client_ip=self.client_ip,
            custom_events=captures,
            rollup=rollup,
        )


class LiveRequests:
    """Request states by local-root span id, for spans that have started and not ended.

    Bounded: entries older than ``max_age_s`` (a span that never ends) are pruned, and
    the table never holds more than ``max_entries``.
    """

    def __init__(self, max_entries: int = 100_000, max_age_s: float = 600.0) -> None:
        self._items: dict[int, RequestState] = {}
        self._max_entries = max_entries
        self._max_age_s = max_age_s
        self.pruned = 0

    def put(self, span_id: int, state: RequestState) -> None:
        items = self._items
        if len(items) >= self._max_entries:
            self.prune()
        items[span_id] = state

    def get(self, span_id: int) -> RequestState | None:
        return self._items.get(span_id)

    def pop(self, span_id: int) -> RequestState | None:
        return self._items.pop(span_id, None)

    def __len__(self) -> int:
        return len(self._items)

    def prune(self) -> None:
        now = time.monotonic()
        stale = [k for k, s in list(self._items.items()) if now - s.created > self._max_age_s]
        if len(self._items) - len(stale) >= self._max_entries:
            # still full: drop the oldest half
            ordered = sorted(self._items.items(), key=lambda kv: kv[1].created)
            stale = [k for k, _ in ordered[: len(ordered) // 2]]
        for key in stale:
            self._items.pop(key, None)
        self.pruned += len(stale)


LIVE = LiveRequests()


def current_state(ctx: Context | None = None) -> RequestState | None:
    """The request state of the current (or given) context, found from any child span."""
    state = otel_context.get_value(STATE_KEY, ctx)
    if isinstance(state, RequestState):
        return state
    from opentelemetry import trace

    span_ctx = trace.get_current_span(ctx).get_span_context()
    return LIVE.get(span_ctx.span_id) if span_ctx.is_valid else None
