"""``OTEL_TRACES_EXPORTER=posthog``: a ``SpanExporter`` that turns request spans into events.

Alone (any distro, e.g. ``OTEL_TRACES_EXPORTER=otlp,posthog``) it maps each finished
local-root SERVER span from its attributes, like the OTLP receiver. Linked to a
:class:`~otel_posthog.sdk.processor.PostHogSpanProcessor` (the PostHog configurator links
them; so does ``configure()`` when an exporter is already running) it sends through the
processor's pipeline and claims from it each request's :class:`RequestState` (verified
person, session, adopted request id, ``capture()`` events, client-call rollup) that the
processor held there: one pipeline, one event per span.
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

from ..core.genai import is_genai
from ..core.settings import Settings, resolve_settings
from ..core.spanview import GenAIFacts
from ..counters import STATS
from .pipeline import Pipeline
from .sdk_span import is_local_root

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
        self._lock = threading.Lock()
        self._shutdown = False
        if processor is not None:
            self.pipeline = processor.pipeline.acquire()
            self.processor = processor
        else:
            resolved = settings if settings is not None else resolve_settings(**overrides)
            self.pipeline = Pipeline(resolved).acquire()
        self.pipeline.exporter_submits = True
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
            self.pipeline.exporter_submits = True  # the processor holds, this submits
            self.processor = processor
        old.release()

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
                if not is_local_root(span.parent):
                    continue  # a nested server span: only the local root makes events
                state = pipeline.claim(span.context.span_id)
                if state is None:
                    if pipeline.skipped(span.context.span_id):
                        continue  # nested in another request: that one makes the event
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
