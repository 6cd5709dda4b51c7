"""Adapter: the SDK span processor that turns request spans into PostHog events.

``on_start`` binds the request's :class:`RequestState` to its local-root SERVER span and
resolves the person (cached, CPU only). ``on_end`` hands the finished span to the
:class:`~otel_posthog.sdk.pipeline.Pipeline` (mapping and sending happen on its worker
thread), or, when a :class:`~otel_posthog.sdk.exporter.PostHogSpanExporter` sends through
the same pipeline, leaves the request state held there for it (from ``on_start``): the
exporter submits the span when the SDK exports it.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .. import compat
from ..core.genai import OPERATION, input_tokens, output_tokens
from ..core.headers import valid_uuid
from ..core.settings import Settings, resolve_settings
from ..core.spanview import GenAIFacts
from ..counters import STATS
from ..delivery.sender import EventSender
from .genai_spans import (
    GenAIRecord,
    GenAISpans,
    is_model_call,
    span_attributes,
)
from .jwt_identity import JwtVerifier
from .pipeline import Pipeline
from .pipeline import flush_all as _flush_pipelines
from .redaction import redact_span_urls
from .request_state import LIVE, LiveRequests, RequestState, current_state
from .runtime import resolved_person, set_current_settings, verified_person
from .sdk_span import is_local_root

log = logging.getLogger("otel_posthog")

_SERVER = trace.SpanKind.SERVER
_CLIENT = trace.SpanKind.CLIENT
_INTERNAL = trace.SpanKind.INTERNAL
_PROCESSORS: weakref.WeakSet[PostHogSpanProcessor] = weakref.WeakSet()
# A request that never ends is forgotten after this long (Sentry's 10-minute rule).
REQUEST_MAX_AGE_S = 600.0
_SWEEP_EVERY_S = 30.0
# the SDK span's kind and parent: its properties are Python calls, on every span
_kind_and_parent = compat.kind_and_parent_reader()


class PostHogSpanProcessor(SpanProcessor):
    """Makes ``api_request``, ``api_error`` and ``slow_request`` events from request spans.

    Keyword arguments are settings (see :class:`otel_posthog.core.settings.Settings`); each
    falls back to its environment variable, then its default.
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else resolve_settings(**overrides)
        set_current_settings(self.settings)
        self.pipeline = Pipeline(self.settings).acquire()
        self.verifier: JwtVerifier = self.pipeline.verifier
        # in-flight CLIENT children -> their request, for the rollup; bounded and swept
        self._children = LiveRequests(max_entries=100_000, max_age_s=REQUEST_MAX_AGE_S)
        # running GenAI spans -> their request, parent and HTTP children ($ai_* events)
        self._genai = GenAISpans(max_entries=100_000, max_age_s=REQUEST_MAX_AGE_S)
        self._ai = self.settings.ai_events
        # server spans nested in a request in flight (they make no event of their own)
        self._nested = LiveRequests(max_entries=10_000, max_age_s=REQUEST_MAX_AGE_S)
        self._last_sweep = time.monotonic()
        self.enabled = self.settings.enabled
        if not self.enabled:
            log.warning("otel_posthog: POSTHOG_API_KEY is not set: the PostHog bridge is disabled")
            return
        _PROCESSORS.add(self)

    @property
    def sender(self) -> EventSender | None:
        return self.pipeline.sender

    # -- request path ----------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self.enabled:
            return
        try:
            kind, parent = _kind_and_parent(span)
            if kind is _SERVER:
                if is_local_root(parent):
                    self._bind_request(span, current_state(parent_context))
            elif (kind is _CLIENT or kind is _INTERNAL) and self._ai and _named_genai(span):
                self._start_genai(span, parent_context, None if is_local_root(parent) else parent)
            elif kind is _CLIENT:
                if self.settings.redact_query:
                    redact_span_urls(span)  # outbound URLs carry API keys in their queries
                if is_local_root(parent):
                    return
                if self._genai.records and self._genai.start_http(
                    span.context.span_id, parent.span_id
                ):
                    return  # the HTTP call of a model call: its time is in llm_time_ms
                if getattr(trace.get_current_span(parent_context), "kind", None) is _CLIENT:
                    return  # e.g. urllib3 under requests: one outbound call, counted once
                state = current_state(parent_context)
                if state is not None and not state.finished:
                    self._children.put(span.context.span_id, state)
        except Exception as exc:
            STATS.error("processor.on_start", exc)

    def _start_genai(self, span: Span, parent_context: Context | None, parent: Any) -> None:
        """A GenAI span: remember its request (found now, it may end after the request)."""
        state = current_state(parent_context) if parent is not None else None
        self._genai.start(
            span.context.span_id,
            parent.span_id if parent is not None else None,
            state,
            is_model_call(span.attributes or {}),
        )

    def _end_genai(self, span: ReadableSpan, record: GenAIRecord) -> None:
        """Add a model call to its request's rollup; hand the span to the pipeline."""
        state = record.state
        if state is not None and record.model_call and not record.enclosed and not state.finished:
            if span.end_time and span.start_time:
                attrs = span.attributes or {}
                state.add_llm_rollup(
                    (span.end_time - span.start_time) / 1e6,
                    input_tokens(attrs),
                    output_tokens(attrs),
                )
        genai = GenAIFacts(
            parent_genai_span_id=record.parent_span_id,
            http_status=record.http_status,
            http_url=record.http_url,
        )
        if state is None or not state.add_genai((span, genai)):
            self.pipeline.submit_genai(span, state, genai)

    def _bind_request(self, span: Span, state: RequestState | None) -> None:
        if state is not None and state.span is not None:
            if not state.finished:
                # a server span inside a request in flight (a mounted app's own, which
                # starts a new trace): part of that request, which makes the one event
                self._nested.put(span.context.span_id, state)
                if self.pipeline.exporter_submits:
                    self.pipeline.skip(span.context.span_id, state)
                return
            state = None
        if state is None:
            state = RequestState()  # no PostHogPropagator configured: attributes only
        span_ctx = span.context
        span_id = span_ctx.span_id
        state.span = span
        state.span_id = span_id
        state.trace_id = span_ctx.trace_id
        settings = self.settings
        if settings.redact_query:
            redact_span_urls(span)
        if state.token:
            result = self.verifier.resolve(state.token)
            state.jwt_distinct_id = result.distinct_id
            state.jwt_pending = result.pending
        LIVE.put(span_id, state)
        if self.pipeline.exporter_submits:
            # held from the start: the exporter may get the span before our on_end runs
            self.pipeline.hold(span_id, state)
        if settings.span_attributes:
            set_identity_attributes(span, state)
        if time.monotonic() - self._last_sweep >= _SWEEP_EVERY_S:
            self._sweep()

    def _sweep(self) -> None:
        """Forget requests (and their children) that started too long ago and never ended."""
        self._last_sweep = time.monotonic()
        self._children.prune()
        self._genai.prune()
        self._nested.prune()
        LIVE.prune()
        self.pipeline.held.prune()
        self.pipeline.nested.prune()

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
                    if not is_local_root(span.parent):
                        return  # a nested server span: the local root makes the event
                if not self.pipeline.exporter_submits:
                    self.pipeline.submit(span, state)
                # else the exporter submits it, with the state held since on_start
            elif kind is _CLIENT or kind is _INTERNAL:
                if self._genai.records:  # GenAI spans are running: this may be one, or its call
                    record = self._genai.end(span_id)
                    if record is not None:
                        self._end_genai(span, record)
                        return
                    if kind is _CLIENT and self._genai.end_http(span_id, span_attributes(span)):
                        return
                if kind is _INTERNAL:
                    return
                state = self._children.pop(span_id)
                if state is not None and span.end_time and span.start_time:
                    ms = (span.end_time - span.start_time) / 1e6
                    attrs = span_attributes(span)
                    if "db.system" in attrs or "db.system.name" in attrs:
                        state.add_rollup("db_calls", "db_time_ms", ms)
                    elif self._ai and attrs.get(OPERATION):  # named GenAI after it started
                        self._end_genai(span, GenAIRecord(state, None, None, is_model_call(attrs)))
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


def _named_genai(span: Any) -> bool:
    """The span has ``gen_ai.operation.name``."""
    return bool(span_attributes(span).get(OPERATION))


def set_identity_attributes(span: Any, state: RequestState) -> None:
    """Semantic-convention ``enduser.id`` / ``session.id`` for other exporters (personal data)."""
    person = verified_person(state)
    session = state.session_id
    if session and not valid_uuid(session):
        session = None  # a client's header: only a posthog-js session id (a UUID) is set
    if person:
        span.set_attributes(
            {"enduser.id": person, "session.id": session} if session else {"enduser.id": person}
        )
    elif session:
        span.set_attribute("session.id", session)


def active_processors() -> list[PostHogSpanProcessor]:
    return list(_PROCESSORS)


def flush_all(timeout_s: float | None = None) -> None:
    """Deliver everything queued by every bridge in this process."""
    _flush_pipelines(timeout_s)


__all__ = ["PostHogSpanProcessor", "resolved_person", "flush_all"]
