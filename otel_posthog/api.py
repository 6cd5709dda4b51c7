"""The public, programmatic API: ``configure()``, ``identify()``, ``capture()``, ``stats()``."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider

from . import compat
from .core.headers import sanitize
from .counters import STATS
from .sdk.processor import PostHogSpanProcessor
from .sdk.propagator import (
    PostHogPropagator,
    PostHogResponsePropagator,
    RequestIdGenerator,
    install_request_id_generator,
)
from .sdk.request_state import current_state

log = logging.getLogger("otel_posthog")
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def configure(
    tracer_provider: TracerProvider | None = None, **settings: Any
) -> PostHogSpanProcessor:
    """Add the PostHog bridge to an OpenTelemetry setup; returns its span processor.

    Uses ``tracer_provider``, else the global SDK provider (creating and setting one only
    when none is set). Adds :class:`PostHogPropagator` to the global propagator, keeping
    the existing ones, and installs the response propagator that sets ``X-Request-ID``.
    Calling it again returns the processor already added. Call it before instrumenting.
    """
    provider = tracer_provider
    if provider is None:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current
        else:
            provider = TracerProvider(id_generator=RequestIdGenerator())
            trace.set_tracer_provider(provider)
    existing = processor_of(provider)
    if existing is not None:
        return existing
    processor = PostHogSpanProcessor(**settings)
    provider.add_span_processor(processor)
    remember_processor(provider, processor)
    from .sdk.exporter import unlinked_exporters

    for exporter in unlinked_exporters():  # OTEL_TRACES_EXPORTER=posthog under another distro
        exporter.link(processor)  # one pipeline: the exporter sends, with our request states
    install_request_id_generator(provider)
    install_propagators()
    return processor


_PROCESSORS: weakref.WeakKeyDictionary[Any, PostHogSpanProcessor] = weakref.WeakKeyDictionary()


def processor_of(provider: Any) -> PostHogSpanProcessor | None:
    """The bridge's processor on ``provider`` (added by :func:`configure` or the
    configurator), None if none."""
    try:
        return _PROCESSORS.get(provider)
    except TypeError:  # not weak-referenceable
        return None


def remember_processor(provider: Any, processor: PostHogSpanProcessor) -> None:
    try:
        _PROCESSORS[provider] = processor
    except TypeError:
        log.debug("otel_posthog: %r cannot be weak-referenced", type(provider).__name__)


def install_propagators() -> None:
    """Add :class:`PostHogPropagator` to the global one and set the response propagator."""
    current = propagate.get_global_textmap()
    members = compat.members_of(current)
    ours = [p for p in members if isinstance(p, PostHogPropagator)]
    if not ours:
        propagate.set_global_textmap(compat.composite([*members, PostHogPropagator()]))
    elif members[-1] is not ours[-1]:
        # last, after the W3C baggage propagator: it removes the inbound posthog.* entries
        # that propagator extracted, and rewrites the baggage header it injected
        others = [p for p in members if not isinstance(p, PostHogPropagator)]
        propagate.set_global_textmap(compat.composite([*others, ours[-1]]))
    try:
        from opentelemetry.instrumentation.propagators import set_global_response_propagator
    except ImportError:
        return
    set_global_response_propagator(PostHogResponsePropagator())


def identify(distinct_id: str) -> bool:
    """Set the person of the current request's events. False outside a request."""
    state = current_state()
    person = sanitize(str(distinct_id)) if distinct_id is not None else None
    if state is None or not person:
        _warn_once("identify", "otel_posthog.identify() called outside a request: ignored")
        return False
    state.identified_id = person
    if not state.finished and state.span is not None and _span_attributes_on():
        if state.span.is_recording():
            state.span.set_attribute("enduser.id", person)
    return True


def capture(event: str, properties: Mapping[str, Any] | None = None) -> bool:
    """Send ``event`` with the current request's person, session and request id.

    Emitted when the request ends, so an ``identify()`` later in the same request applies.
    False (and nothing sent) outside a request.
    """
    state = current_state()
    if state is None:
        _warn_once("capture", "otel_posthog.capture() called outside a request: ignored")
        return False
    state.add_capture(str(event), dict(properties or {}))
    return True


def stats() -> dict[str, Any]:
    """Counters: events queued / sent / retried / spooled / dropped, bridge errors."""
    snapshot: dict[str, Any] = STATS.snapshot()  # depths of every sender: processor,
    return snapshot  # exporter-only and receiver setups alike


def _span_attributes_on() -> bool:
    from .sdk.runtime import current_settings

    return current_settings().span_attributes
