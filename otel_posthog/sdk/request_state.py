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
from types import MappingProxyType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from ..core.spanview import CustomEvent, RequestFacts

STATE_KEY = otel_context.create_key("otel-posthog-request")
# a list in the ASGI scope that receives the request's state (otel_posthog.sdk.starlette_layer)
SCOPE_STATE_KEY = "otel_posthog.request"


class RequestState:
    """Mutable facts about one request; shared by the request thread and the export worker.

    Built for every request, so the defaults are class attributes: an instance stores
    only what its request set (a request with two PostHog headers sets about six).
    """

    session_id: str | None = None
    window_id: str | None = None
    header_distinct_id: str | None = None
    baggage_distinct_id: str | None = None
    x_request_id: str | None = None
    has_traceparent = False
    cross_origin = False  # the request had an Origin header
    token: str | None = None
    client_ip: str | None = None
    identified_id: str | None = None
    jwt_distinct_id: str | None = None
    jwt_pending = False
    request_id: str | None = None  # set only when it is not the trace id
    response_request_id: str | None = None  # the app's X-Request-ID beside a traceparent
    app: Any = None  # the ASGI app that received the request (route templates of mounted apps)
    root_path = ""  # its ASGI root_path, before routing
    route: str | None = None  # the full route template, when the span's falls short
    trace_id_hint: int | None = None  # trace id to use for a new trace (UUID request id)
    span: Any = None
    span_id = 0
    trace_id = 0
    captures: list[CustomEvent] | tuple[()] = ()  # a list from the first capture() on
    rollup: Mapping[str, float] = MappingProxyType({})  # replaced, never changed in place
    genai: list[Any] | tuple[()] = ()  # (span, GenAIFacts) of GenAI spans that ended
    finished = False
    emit_late: Any = None  # callable(state, CustomEvent) once the request span ended

    def __init__(self) -> None:
        self.created = time.monotonic()
        self._lock = threading.Lock()

    def add_capture(self, event: str, properties: Mapping[str, Any]) -> None:
        with self._lock:
            custom = CustomEvent(event, dict(properties), time.time_ns(), len(self.captures))
            if not self.captures:
                self.captures = []
            self.captures.append(custom)
            late = self.emit_late if self.finished else None
        if late is not None:
            late(self, custom)

    def add_rollup(self, key_calls: str, key_time: str, ms: float) -> None:
        with self._lock:
            rollup = dict(self.rollup)
            rollup[key_calls] = rollup.get(key_calls, 0) + 1
            rollup[key_time] = round(rollup.get(key_time, 0.0) + ms, 3)
            self.rollup = rollup

    def add_llm_rollup(
        self, ms: float, input_tokens: int | None, output_tokens: int | None
    ) -> None:
        """One model call (generation or embedding) for the ``api_request`` LLM rollup."""
        with self._lock:
            rollup = dict(self.rollup)
            rollup["llm_calls"] = rollup.get("llm_calls", 0) + 1
            rollup["llm_time_ms"] = round(rollup.get("llm_time_ms", 0.0) + ms, 3)
            rollup["llm_input_tokens"] = rollup.get("llm_input_tokens", 0) + (input_tokens or 0)
            rollup["llm_output_tokens"] = rollup.get("llm_output_tokens", 0) + (output_tokens or 0)
            self.rollup = rollup

    def add_genai(self, item: Any) -> bool:
        """Hold a finished GenAI span until its request ends; False when it already ended."""
        with self._lock:
            if self.finished:
                return False
            if not self.genai:
                self.genai = []
            self.genai.append(item)
            return True

    def facts(self) -> RequestFacts:
        """A snapshot for the mapping."""
        request_id = self.request_id
        captures: tuple[CustomEvent, ...] = ()
        if self.captures:
            with self._lock:
                captures = tuple(self.captures)
        return RequestFacts(
            self.identified_id,
            self.jwt_distinct_id,
            self.header_distinct_id,
            self.baggage_distinct_id,
            self.session_id,
            self.window_id,
            request_id,
            self.x_request_id,  # the mapping keeps it only when it is not the request id
            self.client_ip,
            captures,
            self.rollup,
            self.route,
            self.response_request_id,
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
