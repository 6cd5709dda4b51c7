"""The one PostHog pipeline behind both SDK entry points: span processor and span exporter.

A :class:`Pipeline` owns the JWT verifier, the table of request states handed from the
processor to the exporter, the span -> events function (:meth:`map_work`, where a
finished SDK request span meets :func:`otel_posthog.core.mapping.map_span`; the OTLP receiver
has its own) and one :class:`EventSender`.
:class:`~otel_posthog.sdk.processor.PostHogSpanProcessor` and
:class:`~otel_posthog.sdk.exporter.PostHogSpanExporter` are adapters over it and know nothing
of each other: both hand finished request spans to :meth:`Pipeline.submit`; when an
exporter sends through the processor's pipeline, the processor only holds request states
(:meth:`hold`) and the exporter claims them and submits, so a span never makes events twice.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import NamedTuple

from opentelemetry.sdk.trace import ReadableSpan

from ..core.mapping import Event, map_custom_events, map_span
from ..core.settings import Settings
from ..core.spanview import CustomEvent, GenAIFacts, SpanView
from ..counters import STATS
from ..delivery.before_send import apply_before_send
from ..delivery.sender import EventSender
from . import asgi_routes, lifecycle
from .jwt_identity import JwtVerifier
from .request_state import LiveRequests, RequestState
from .sdk_span import add_genai_span_facts, view_from_sdk_span

log = logging.getLogger("otel_posthog")

_PIPELINES: weakref.WeakSet[Pipeline] = weakref.WeakSet()


class SpanWork(NamedTuple):
    """A finished local-root SERVER span and its request; ``captured``: how many
    ``capture()`` events go out with it (later ones are :class:`LateCapture`)."""

    span: ReadableSpan
    state: RequestState
    captured: int


class LateCapture(NamedTuple):
    """A ``capture()`` after its request span ended (``span``: that finished span)."""

    span: ReadableSpan
    state: RequestState
    custom: CustomEvent


class GenAIWork(NamedTuple):
    """A GenAI span that ended after its request (``state``), or outside any (None)."""

    span: ReadableSpan
    state: RequestState | None
    genai: GenAIFacts


Work = SpanWork | LateCapture | GenAIWork  # what the sender's worker maps
# a NamedTuple's own __new__ is Python code: the request path builds its SpanWork directly
_new_tuple = tuple.__new__


class Pipeline:
    """JWT re-check, span -> events mapping and delivery of one bridge (one sender thread).

    Reference counted: every owner (a processor, an exporter) calls :meth:`acquire` and
    :meth:`release`; the last release shuts the sender down after a final flush.
    """

    def __init__(self, settings: Settings, verifier: JwtVerifier | None = None) -> None:
        self.settings = settings
        self.verifier = verifier or JwtVerifier(settings)
        self.sender: EventSender | None = None
        self._owners = 0
        self._lock = threading.Lock()
        self._emit_late = self.emit_late  # one bound method, not one per request
        # True once a PostHogSpanExporter sends through this pipeline: it submits the spans
        # (the processor then only holds request states for it, from on_start)
        self.exporter_submits = False
        # request states the exporter claims when the SDK exports their span, by span id;
        # bounded and pruned (a span a batch processor dropped never claims its state)
        self.held = LiveRequests(max_entries=50_000, max_age_s=600.0)
        # server spans nested in a request in flight: the exporter drops them (no events)
        self.nested = LiveRequests(max_entries=10_000, max_age_s=600.0)
        if not settings.enabled:
            return
        spool = None
        if settings.spool_dir:
            from ..delivery.spool import open_spool

            spool = open_spool(settings, required=False)  # the app never fails for it
        self.sender = EventSender(settings, self.map_work, spool=spool)
        if settings.scrub_secrets:  # exception text other exporters get, scrubbed too
            from .span_scrub import install

            install(settings.scrub_patterns)
        self.verifier.start()
        _PIPELINES.add(self)
        lifecycle.install(flush_all)

    # -- request path (never blocks) --------------------------------------------------------
    def hold(self, span_id: int, state: RequestState) -> None:
        """Keep a request's state for the exporter (from ``on_start``: the exporter may get
        the span before the processor's ``on_end`` runs)."""
        self.held.put(span_id, state)

    def claim(self, span_id: int) -> RequestState | None:
        """The state held for an exported span (None: attributes only)."""
        return self.held.pop(span_id)

    def skip(self, span_id: int, state: RequestState) -> None:
        """A server span nested in a request in flight: it makes no event of its own."""
        self.nested.put(span_id, state)

    def skipped(self, span_id: int) -> bool:
        """The exported span was nested in another request (forgotten once asked)."""
        return bool(len(self.nested)) and self.nested.pop(span_id) is not None

    def submit(self, span: ReadableSpan, state: RequestState | None) -> None:
        """Queue a finished local-root SERVER span; ``state`` None means attributes only."""
        if self.sender is None:
            return
        if state is None:
            state = RequestState()
            state.span_id, state.trace_id = span.context.span_id, span.context.trace_id
        with state._lock:
            state.finished = True
            state.span = span  # the finished, read-only copy
            state.emit_late = self._emit_late
            # captures from now on go out through emit_late: not with the span too
            captured = len(state.captures)
            # GenAI spans that ended in the request: state.genai, frozen from now on
        self.sender.submit("work", _new_tuple(SpanWork, (span, state, captured)))

    def submit_genai(
        self, span: ReadableSpan, state: RequestState | None, genai: GenAIFacts
    ) -> None:
        """Queue a finished GenAI span outside a request, or after its request ended."""
        if self.sender is not None:
            self.sender.submit("work", GenAIWork(span, state, genai))

    def emit_late(self, state: RequestState, custom: CustomEvent) -> None:
        """A ``capture()`` after the request span ended (e.g. in a BackgroundTask)."""
        if self.sender is not None:
            self.sender.submit("work", LateCapture(state.span, state, custom))

    # -- export worker ------------------------------------------------------------------------
    def map_work(self, work: Work) -> list[Event]:
        """The span -> events function shared by the processor and the exporter."""
        state = work.state
        if state is None:  # a GenAI span outside any request
            assert type(work) is GenAIWork
            return self._finish(self._genai_events(work.span, work.genai, None))
        if state.jwt_pending and state.token:
            # only the worker may wait for a key refresh: the overflow and hand-off paths
            # map on a request or shutdown thread, with what the key cache holds
            sender = self.sender
            on_worker = sender is not None and sender.on_worker_thread()
            cancel = sender.deadline_passed if sender is not None else None
            result = self.verifier.resolve(state.token, allow_fetch=on_worker, cancel=cancel)
            state.jwt_distinct_id, state.jwt_pending = result.distinct_id, False
        facts = state.facts()
        if state.token is not None:
            state.token = None  # the raw token is not needed any more
        if type(work) is GenAIWork:  # ended after its request: state.span is the request
            request = view_from_sdk_span(state.span, facts)
            return self._finish(self._genai_events(work.span, work.genai, request))
        view = view_from_sdk_span(work.span, facts)
        if state.app is not None:
            app, state.app = state.app, None
            try:
                route = asgi_routes.route_for(app, state.root_path, view.attributes)
                state.route = facts.route = route
            except Exception as exc:
                STATS.error("pipeline.route", exc)
        if type(work) is LateCapture:
            facts.custom_events = (work.custom,)
            events = map_custom_events(view, self.settings)
        else:
            assert type(work) is SpanWork
            if facts.custom_events:  # only those captured before the span ended
                facts.custom_events = facts.custom_events[: work.captured]
            events = map_span(view, self.settings)
            for genai_span, genai in state.genai:  # no more are added once it finished
                events.extend(self._genai_events(genai_span, genai, view))
        return self._finish(events)

    def _genai_events(
        self, span: ReadableSpan, genai: GenAIFacts, request: SpanView | None
    ) -> list[Event]:
        """A GenAI span's event; one that cannot be mapped is counted, never costs its
        request's events."""
        try:
            genai.request = request
            view = view_from_sdk_span(span)
            view.genai = add_genai_span_facts(span, genai)
            return map_span(view, self.settings)
        except Exception as exc:
            STATS.error("pipeline.genai", exc)
            return []

    def _finish(self, events: list[Event]) -> list[Event]:
        if self.settings.before_send is None:
            return events
        return apply_before_send(events, self.settings)

    # -- lifecycle ----------------------------------------------------------------------------
    def acquire(self) -> Pipeline:
        with self._lock:
            self._owners += 1
        return self

    def release(self) -> None:
        """Drop one owner; the last one flushes and stops the sender."""
        with self._lock:
            self._owners -= 1
            last = self._owners <= 0
        if last:
            self.shutdown()
        else:
            self.flush(self.settings.shutdown_timeout_ms / 1000)

    def flush(self, timeout_s: float) -> bool:
        return True if self.sender is None else self.sender.flush(timeout_s)

    def shutdown(self) -> None:
        if self.sender is not None:
            self.sender.shutdown(self.settings.shutdown_timeout_ms / 1000)
        _PIPELINES.discard(self)


def active_pipelines() -> list[Pipeline]:
    return list(_PIPELINES)


def flush_all(timeout_s: float | None = None) -> None:
    """Deliver what every pipeline holds (spans still in an SDK batch processor first).

    The one flush of the process: ``lifecycle`` calls it at shutdown."""
    pipelines = active_pipelines()
    if any(p.exporter_submits for p in pipelines):  # spans may wait in a BatchSpanProcessor
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            try:
                ms = 5000 if timeout_s is None else int(timeout_s * 1000)
                flush(ms)
            except Exception as exc:
                STATS.error("flush_all.provider", exc)
    for pipeline in pipelines:
        try:
            t = timeout_s if timeout_s is not None else pipeline.settings.shutdown_timeout_ms / 1000
            pipeline.flush(t)
        except Exception as exc:
            STATS.error("flush_all", exc)
