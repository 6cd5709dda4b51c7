"""Adapter: the SDK span processor that turns request spans into PostHog events.

``on_start`` binds the request's :class:`RequestState` to its local-root SERVER span and
resolves the person (cached, CPU only). ``on_end`` hands the finished span to the
:class:`~otel_posthog.pipeline.Pipeline` (mapping and sending happen on its worker
thread), or, when a :class:`~otel_posthog.exporter.PostHogSpanExporter` is linked, hands
the request state to that exporter, which submits the span when the SDK exports it.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .jwt_identity import JwtVerifier
from .pipeline import Pipeline
from .pipeline import flush_all as _flush_pipelines
from .redaction import redact_span_urls
from .request_state import LIVE, LiveRequests, RequestState, current_state
from .runtime import STATS, resolved_person, set_current_settings
from .settings import Settings, resolve_settings
from .transport import EventSender

if TYPE_CHECKING:
    from .exporter import PostHogSpanExporter

log = logging.getLogger("otel_posthog")

_SERVER = trace.SpanKind.SERVER
_CLIENT = trace.SpanKind.CLIENT
_PROCESSORS: weakref.WeakSet[PostHogSpanProcessor] = weakref.WeakSet()
# A request that never ends is forgotten after this long (Sentry's 10-minute rule).
REQUEST_MAX_AGE_S = 600.0
_SWEEP_EVERY_S = 30.0


class PostHogSpanProcessor(SpanProcessor):
    """Makes ``api_request``, ``api_error`` and ``slow_request`` events from request spans.

    Keyword arguments are settings (see :class:`otel_posthog.settings.Settings`); each
    falls back to its environment variable, then its default.
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else resolve_settings(**overrides)
        set_current_settings(self.settings)
        self.pipeline = Pipeline(self.settings).acquire()
        self.verifier: JwtVerifier = self.pipeline.verifier
        # in-flight CLIENT children -> their request, for the rollup; bounded and swept
        self._children = LiveRequests(max_entries=100_000, max_age_s=REQUEST_MAX_AGE_S)
        # server spans nested in a request in flight (they make no event of their own)
        self._nested = LiveRequests(max_entries=10_000, max_age_s=REQUEST_MAX_AGE_S)
        self._last_sweep = time.monotonic()
        self.exporter: PostHogSpanExporter | None = None
        self.enabled = self.settings.enabled
        if not self.enabled:
            log.warning("otel_posthog: POSTHOG_API_KEY is not set: the PostHog bridge is disabled")
            return
        _PROCESSORS.add(self)

    @property
    def sender(self) -> EventSender | None:
        return self.pipeline.sender

    def link_exporter(self, exporter: PostHogSpanExporter) -> None:
        """From now on ``exporter`` submits the request spans this processor enriches."""
        self.exporter = exporter

    # -- request path ----------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self.enabled:
            return
        try:
            kind, parent = _kind_and_parent(span)  # the SDK keeps None for an invalid parent
            local_root = parent is None or parent.is_remote
            if kind is _SERVER and local_root:
                self._bind_request(span, current_state(parent_context))
            elif kind is _CLIENT and not local_root:
                if getattr(trace.get_current_span(parent_context), "kind", None) is _CLIENT:
                    return  # e.g. urllib3 under requests: one outbound call, counted once
                state = current_state(parent_context)
                if state is not None and not state.finished:
                    self._children.put(span.context.span_id, state)
        except Exception as exc:
            STATS.error("processor.on_start", exc)

    def _bind_request(self, span: Span, state: RequestState | None) -> None:
        if state is not None and state.span is not None:
            if not state.finished:
                # a server span inside a request in flight (a mounted app's own, which
                # starts a new trace): part of that request, which makes the one event
                self._nested.put(span.context.span_id, state)
                if self.exporter is not None:
                    self.exporter.skip(span.context.span_id, state)
                return
            state = None
        if state is None:
            state = RequestState()  # no PostHogPropagator configured: attributes only
        span_ctx = span.context
        state.span = span
        state.span_id = span_ctx.span_id
        state.trace_id = span_ctx.trace_id
        if self.settings.redact_query:
            redact_span_urls(span)
        if state.token:
            result = self.verifier.resolve(state.token)
            state.jwt_distinct_id = result.distinct_id
            state.jwt_pending = result.pending
        LIVE.put(span_ctx.span_id, state)
        if self.exporter is not None:
            # held from the start: the exporter may get the span before our on_end runs
            self.exporter.hold(span_ctx.span_id, state)
        if self.settings.span_attributes:
            set_identity_attributes(span, state)
        if time.monotonic() - self._last_sweep >= _SWEEP_EVERY_S:
            self._sweep()

    def _sweep(self) -> None:
        """Forget requests (and their children) that started too long ago and never ended."""
        self._last_sweep = time.monotonic()
        self._children.prune()
        self._nested.prune()
        LIVE.prune()
        if self.exporter is not None:
            self.exporter.held.prune()
            self.exporter.nested.prune()

    def on_end(self, span: ReadableSpan) -> None:
        if not self.enabled:
            return
        try:
            kind, _ = _kind_and_parent(span)
            span_id = span.context.span_id
            if kind is _SERVER:
                state = LIVE.pop(span_id)
                if state is None:
                    if len(self._nested) and self._nested.pop(span_id) is not None:
                        return  # nested in another request: that one makes the event
                    parent = span.parent
                    if parent is not None and parent.is_valid and not parent.is_remote:
                        return  # a nested server span: the local root makes the event
                if self.exporter is None:
                    self.pipeline.submit(span, state)
                # else the linked exporter submits it, with the state held since on_start
            elif kind is _CLIENT:
                state = self._children.pop(span_id)
                if state is not None and span.end_time and span.start_time:
                    ms = (span.end_time - span.start_time) / 1e6
                    attrs = span.attributes or {}
                    if "db.system" in attrs or "db.system.name" in attrs:
                        state.add_rollup("db_calls", "db_time_ms", ms)
                    else:
                        state.add_rollup("http_client_calls", "http_client_time_ms", ms)
        except Exception as exc:
            STATS.error("processor.on_end", exc)

    # -- SpanProcessor lifecycle ------------------------------------------------------------
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.pipeline.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        _PROCESSORS.discard(self)
        self.pipeline.release()


def _kind_and_parent(span: Any) -> tuple[Any, Any]:
    try:  # the SDK span's fields: its properties are Python calls, on every span
        return span._kind, span._parent
    except AttributeError:
        return span.kind, span.parent


def set_identity_attributes(span: Any, state: RequestState) -> None:
    """Semantic-convention ``enduser.id`` / ``session.id`` for other exporters (personal data)."""
    person = state.identified_id or state.jwt_distinct_id or state.baggage_distinct_id
    session = state.session_id
    if person:
        _add_attributes(
            span,
            {"enduser.id": person, "session.id": session} if session else {"enduser.id": person},
        )
    elif session:
        _add_attributes(span, {"session.id": session})


def _add_attributes(span: Any, items: dict[str, str]) -> None:
    """``span.set_attributes(items)`` for a span that has just started.

    The SDK's ``set_attributes`` validates and locks per attribute (about 1 % of a
    request); these values are sanitised strings, so when the span's storage has room and
    no value-length limit they go straight in, as the SDK would store them.
    """
    try:
        attributes = span._attributes
        store = attributes._dict
        maxlen = attributes.maxlen
        fast = (
            type(store) is dict
            and (maxlen is None or len(store) + len(items) <= maxlen)
            and attributes.max_value_len is None
            and attributes._immutable is False
            and span._end_time is None
        )
    except AttributeError:  # not the SDK's span
        fast = False
    if fast:
        store.update(items)
    else:
        span.set_attributes(items)


def active_processors() -> list[PostHogSpanProcessor]:
    return list(_PROCESSORS)


def flush_all(timeout_s: float | None = None) -> None:
    """Deliver everything queued by every bridge in this process."""
    _flush_pipelines(timeout_s)


__all__ = ["PostHogSpanProcessor", "resolved_person", "flush_all"]
