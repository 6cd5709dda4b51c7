"""``OTEL_TRACES_EXPORTER=posthog``: a ``SpanExporter`` that turns request spans into events.

Alone (any distro, e.g. ``OTEL_TRACES_EXPORTER=otlp,posthog``) it maps each finished
local-root SERVER span from its attributes, like the OTLP receiver. Linked to a
:class:`~otel_posthog.processor.PostHogSpanProcessor` (the PostHog configurator links
them; so does ``configure()`` when an exporter is already running) it gets each request's
:class:`RequestState` (verified person, session, adopted request id, ``capture()`` events,
client-call rollup) from the processor's hand-off table and sends through the processor's
pipeline: one pipeline, one event per span.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .genai import is_genai
from .pipeline import Pipeline
from .request_state import LiveRequests, RequestState
from .runtime import STATS
from .settings import Settings, resolve_settings
from .spanview import GenAIFacts

if TYPE_CHECKING:
    from .processor import PostHogSpanProcessor

log = logging.getLogger("otel_posthog")

_SERVER = trace.SpanKind.SERVER
_EXPORTERS: weakref.WeakSet[PostHogSpanExporter] = weakref.WeakSet()
_warned_unlinked = False


class PostHogSpanExporter(SpanExporter):
    """Maps exported request spans to ``api_request`` / ``api_error`` / ``slow_request``.

    ``processor``: the identity-enriching processor of the same provider, whose pipeline
    this exporter then shares. Other keyword arguments are settings.
    """

    def __init__(
        self,
        processor: PostHogSpanProcessor | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        self.processor: PostHogSpanProcessor | None = None
        # request states handed over by the processor, by span id; bounded and pruned
        # (a span the batch processor dropped never comes to claim its state)
        self.held = LiveRequests(max_entries=50_000, max_age_s=600.0)
        self.nested = LiveRequests(max_entries=10_000, max_age_s=600.0)  # make no events
        self._lock = threading.Lock()
        self._shutdown = False
        if processor is not None:
            self.pipeline = processor.pipeline.acquire()
            processor.link_exporter(self)
            self.processor = processor
        else:
            resolved = settings if settings is not None else resolve_settings(**overrides)
            self.pipeline = Pipeline(resolved).acquire()
        _EXPORTERS.add(self)

    @property
    def settings(self) -> Settings:
        return self.pipeline.settings

    def link(self, processor: PostHogSpanProcessor) -> None:
        """Send through ``processor``'s pipeline and receive its request states."""
        with self._lock:
            if self.processor is processor:
                return
            old, self.pipeline = self.pipeline, processor.pipeline.acquire()
            self.processor = processor
        processor.link_exporter(self)
        old.release()

    def hold(self, span_id: int, state: RequestState) -> None:
        """Called by the linked processor in ``on_start``, so ``export`` always finds it."""
        self.held.put(span_id, state)

    def skip(self, span_id: int, state: RequestState) -> None:
        """A server span nested in a request in flight: it makes no event of its own."""
        self.nested.put(span_id, state)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        pipeline = self.pipeline
        for span in spans:
            try:
                if span.kind is not _SERVER:
                    if self.processor is None and is_genai(span.attributes or {}):
                        # alone: a GenAI span from its attributes (linked: the processor's)
                        pipeline.submit_genai(span, None, GenAIFacts())
                    continue
                parent = span.parent
                if parent is not None and parent.is_valid and not parent.is_remote:
                    continue  # a nested server span: only the local root makes events
                state = self.held.pop(span.context.span_id)
                if state is None:
                    if len(self.nested) and self.nested.pop(span.context.span_id) is not None:
                        continue
                    self._warn_unlinked()
                pipeline.submit(span, state)
            except Exception as exc:
                STATS.error("exporter.export", exc)
        return SpanExportResult.SUCCESS

    def _warn_unlinked(self) -> None:
        global _warned_unlinked
        if self.processor is None and not _warned_unlinked and self.pipeline.sender is not None:
            _warned_unlinked = True
            log.warning(
                "otel_posthog: the posthog exporter runs without the PostHog span processor, so "
                "events carry no verified identity, session or X-Request-ID. Under "
                "opentelemetry-instrument set OTEL_PYTHON_DISTRO=posthog (and "
                "OTEL_PYTHON_CONFIGURATOR=posthog), or call otel_posthog.configure() in the app"
            )

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.pipeline.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        _EXPORTERS.discard(self)
        self.pipeline.release()


def live_exporters() -> list[PostHogSpanExporter]:
    return list(_EXPORTERS)


def unlinked_exporters() -> list[PostHogSpanExporter]:
    return [e for e in _EXPORTERS if e.processor is None]
