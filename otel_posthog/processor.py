"""Adapter: the SDK span processor that turns request spans into PostHog events.

``on_start`` binds the request's :class:`RequestState` to its local-root SERVER span and
resolves the person (cached, CPU only). ``on_end`` queues the finished span; mapping
(:func:`otel_posthog.mapping.map_span`) and sending happen on the sender's worker thread.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from . import lifecycle
from .jwt_identity import JwtVerifier
from .mapping import Event, map_custom_events, map_span
from .request_state import LIVE, RequestState, current_state
from .runtime import STATS, resolved_person, set_current_settings
from .sdk_span import view_from_sdk_span
from .settings import Settings, resolve_settings
from .spanview import CustomEvent, RequestFacts
from .transport import EventSender

log = logging.getLogger("otel_posthog")

_SERVER = trace.SpanKind.SERVER
_CLIENT = trace.SpanKind.CLIENT
_PROCESSORS: weakref.WeakSet[PostHogSpanProcessor] = weakref.WeakSet()


class PostHogSpanProcessor(SpanProcessor):
    """Makes ``api_request``, ``api_error`` and ``slow_request`` events from request spans.

    Keyword arguments are settings (see :class:`otel_posthog.settings.Settings`); each
    falls back to its environment variable, then its default.
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else resolve_settings(**overrides)
        set_current_settings(self.settings)
        self.verifier = JwtVerifier(self.settings)
        self._children: dict[int, RequestState] = {}
        self.enabled = self.settings.enabled
        self.sender: EventSender | None = None
        if not self.enabled:
            log.warning(
                "otel_posthog: POSTHOG_API_KEY is not set: the PostHog bridge is disabled"
            )
            return
        spool = None
        if self.settings.spool_dir:
            from .spool import Spool

            spool = Spool(self.settings)
        self.sender = EventSender(self.settings, self._map_work, spool=spool)
        self.verifier.start()
        _PROCESSORS.add(self)
        lifecycle.install()

    # -- request path ----------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self.enabled:
            return
        try:
            parent = trace.get_current_span(parent_context).get_span_context()
            local_root = not parent.is_valid or parent.is_remote
            if span.kind is _SERVER and local_root:
                self._bind_request(span, current_state(parent_context))
            elif span.kind is _CLIENT and not local_root:
                state = current_state(parent_context)
                if state is not None:
                    self._children[span.context.span_id] = state
        except Exception as exc:
            STATS.error("processor.on_start", exc)

    def _bind_request(self, span: Span, state: RequestState | None) -> None:
        if state is None or state.span is not None:
            state = RequestState()  # no PostHogPropagator configured: attributes only
        span_ctx = span.context
        state.span = span
        state.span_id = span_ctx.span_id
        state.trace_id = span_ctx.trace_id
        if state.token:
            result = self.verifier.resolve(state.token)
            state.jwt_distinct_id = result.distinct_id
            state.jwt_pending = result.pending
        LIVE.put(span_ctx.span_id, state)
        if self.settings.span_attributes:
            set_identity_attributes(span, state)

    def on_end(self, span: ReadableSpan) -> None:
        if not self.enabled:
            return
        try:
            span_id = span.context.span_id
            if span.kind is _SERVER:
                state = LIVE.pop(span_id)
                if state is None:
                    parent = span.parent
                    if parent is not None and parent.is_valid and not parent.is_remote:
                        return  # a nested server span: the local root makes the event
                    state = RequestState()
                    state.span_id, state.trace_id = span_id, span.context.trace_id
                with state._lock:
                    state.finished = True
                    state.span = span  # the finished, read-only copy
                    state.emit_late = self._emit_late
                assert self.sender is not None
                self.sender.submit("work", ("span", span, state))
            elif span.kind is _CLIENT:
                state = self._children.pop(span_id, None)
                if state is not None and span.end_time and span.start_time:
                    ms = (span.end_time - span.start_time) / 1e6
                    attrs = span.attributes or {}
                    if "db.system" in attrs or "db.system.name" in attrs:
                        state.add_rollup("db_calls", "db_time_ms", ms)
                    else:
                        state.add_rollup("http_client_calls", "http_client_time_ms", ms)
        except Exception as exc:
            STATS.error("processor.on_end", exc)

    def _emit_late(self, state: RequestState, custom: CustomEvent) -> None:
        """A ``capture()`` after the request span ended (e.g. in a BackgroundTask)."""
        if self.sender is not None:
            self.sender.submit("work", ("late", state.span, state, custom))

    # -- export worker --------------------------------------------------------------------
    def _map_work(self, work: tuple[Any, ...]) -> list[Event]:
        kind, span, state = work[0], work[1], work[2]
        if state.jwt_pending and state.token:
            result = self.verifier.resolve(state.token, allow_fetch=True)
            state.jwt_distinct_id, state.jwt_pending = result.distinct_id, False
        facts = state.facts()
        state.token = None  # the raw token is not needed any more
        if kind == "late":
            facts = _only_capture(facts, work[3])
            events = map_custom_events(view_from_sdk_span(span, facts), self.settings)
        else:
            events = map_span(view_from_sdk_span(span, facts), self.settings)
        return self._before_send(events)

    def _before_send(self, events: list[Event]) -> list[Event]:
        hook = self.settings.before_send
        if hook is None:
            return events
        out = []
        for event in events:
            try:
                result = hook(event)
            except Exception as exc:
                STATS.error("before_send", exc)
                result = event
            if result is not None:
                out.append(result)
        return out

    # -- SpanProcessor lifecycle ------------------------------------------------------------
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self.sender is None:
            return True
        return self.sender.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        if self.sender is not None:
            self.sender.shutdown(self.settings.shutdown_timeout_ms / 1000)


def _only_capture(facts: RequestFacts, custom: CustomEvent) -> RequestFacts:
    facts.custom_events = (custom,)
    return facts


def set_identity_attributes(span: Any, state: RequestState) -> None:
    """Semantic-convention ``enduser.id`` / ``session.id`` for other exporters (personal data)."""
    if not span.is_recording():
        return
    person = state.identified_id or state.jwt_distinct_id or state.baggage_distinct_id
    if person:
        span.set_attribute("enduser.id", person)
    if state.session_id:
        span.set_attribute("session.id", state.session_id)


def active_processors() -> list[PostHogSpanProcessor]:
    return list(_PROCESSORS)


def flush_all(timeout_s: float | None = None) -> None:
    for processor in active_processors():
        try:
            t = timeout_s if timeout_s is not None else processor.settings.shutdown_timeout_ms / 1000
            processor.force_flush(int(t * 1000))
        except Exception as exc:
            STATS.error("flush_all", exc)


__all__ = ["PostHogSpanProcessor", "resolved_person", "flush_all"]
