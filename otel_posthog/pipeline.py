"""The one PostHog pipeline behind both SDK entry points: span processor and span exporter.

A :class:`Pipeline` owns the JWT verifier, the span -> events function (:meth:`map_work`,
the only place a finished request span meets :func:`otel_posthog.mapping.map_span`) and
one :class:`EventSender`. :class:`~otel_posthog.processor.PostHogSpanProcessor` and
:class:`~otel_posthog.exporter.PostHogSpanExporter` both hand finished request spans to
:meth:`Pipeline.submit`; when the two are linked they share one pipeline, and only the
exporter submits, so a span never makes events twice.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from . import asgi_routes, lifecycle
from .jwt_identity import JwtVerifier
from .mapping import Event, map_custom_events, map_span
from .request_state import RequestState
from .runtime import STATS
from .sdk_span import add_genai_span_facts, view_from_sdk_span
from .settings import Settings
from .spanview import CustomEvent, GenAIFacts, SpanView
from .transport import EventSender

log = logging.getLogger("otel_posthog")

_PIPELINES: weakref.WeakSet[Pipeline] = weakref.WeakSet()


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
        if not settings.enabled:
            return
        spool = None
        if settings.spool_dir:
            from .spool import Spool

            try:  # a corrupt file is moved aside by Spool itself; this is what is left
                spool = Spool(settings)
            except Exception as exc:  # read-only or full disk, a file where the dir should be
                STATS.error("spool.open", exc)
                log.warning(
                    "otel_posthog: the spool in %s cannot be used (%s: %s); events are "
                    "delivered from memory only",
                    settings.spool_dir,
                    exc.__class__.__name__,
                    exc,
                )
        self.sender = EventSender(settings, self.map_work, spool=spool)
        if settings.scrub_secrets:  # exception text other exporters get, scrubbed too
            from .span_scrub import install

            install(settings.scrub_patterns)
        self.verifier.start()
        _PIPELINES.add(self)
        lifecycle.install()

    # -- request path (never blocks) --------------------------------------------------------
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
        self.sender.submit("work", ("span", span, state, captured))

    def submit_genai(
        self, span: ReadableSpan, state: RequestState | None, genai: GenAIFacts
    ) -> None:
        """Queue a finished GenAI span outside a request, or after its request ended."""
        if self.sender is not None:
            self.sender.submit("work", ("genai", span, state, genai))

    def emit_late(self, state: RequestState, custom: CustomEvent) -> None:
        """A ``capture()`` after the request span ended (e.g. in a BackgroundTask)."""
        if self.sender is not None:
            self.sender.submit("work", ("late", state.span, state, custom))

    # -- export worker ------------------------------------------------------------------------
    def map_work(self, work: tuple[Any, ...]) -> list[Event]:
        """The span -> events function shared by the processor and the exporter."""
        kind, span, state = work[0], work[1], work[2]
        if state is None:  # a GenAI span outside any request
            return self._finish(self._genai_events(span, work[3], None))
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
        if kind == "genai":  # ended after its request: state.span is the finished request
            request = view_from_sdk_span(state.span, facts)
            return self._finish(self._genai_events(span, work[3], request))
        view = view_from_sdk_span(span, facts)
        if state.app is not None:
            app, state.app = state.app, None
            try:
                route = asgi_routes.route_for(app, state.root_path, view.attributes)
                state.route = facts.route = route
            except Exception as exc:
                STATS.error("pipeline.route", exc)
        if kind == "late":
            facts.custom_events = (work[3],)
            events = map_custom_events(view, self.settings)
        else:
            if facts.custom_events:  # only those captured before the span ended
                facts.custom_events = facts.custom_events[: work[3]]
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


def apply_before_send(events: list[Event], settings: Settings) -> list[Event]:
    """Run the user's ``before_send`` hook: an event back (changed or not) or None to drop.

    A hook that raises is counted and its event sent unchanged.
    """
    hook = settings.before_send
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


def active_pipelines() -> list[Pipeline]:
    return list(_PIPELINES)


def flush_all(timeout_s: float | None = None) -> None:
    """Deliver what every pipeline holds (spans still in an SDK batch processor first)."""
    from .exporter import live_exporters

    if live_exporters():  # their spans may still wait in a BatchSpanProcessor
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            try:
                ms = 5000 if timeout_s is None else int(timeout_s * 1000)
                flush(ms)
            except Exception as exc:
                STATS.error("flush_all.provider", exc)
    for pipeline in active_pipelines():
        try:
            t = timeout_s if timeout_s is not None else pipeline.settings.shutdown_timeout_ms / 1000
            pipeline.flush(t)
        except Exception as exc:
            STATS.error("flush_all", exc)
