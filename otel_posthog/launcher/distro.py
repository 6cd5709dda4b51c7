"""Zero code: the ``posthog`` distro and configurator for ``opentelemetry-instrument``.

``PostHogDistro`` (entry point ``opentelemetry_distro``) sets defaults before the SDK is
built: ``OTEL_TRACES_EXPORTER=posthog`` when no exporter is set, ``OTEL_PYTHON_CONFIGURATOR=
posthog`` when none is set, our propagator added to the global one, and the FastAPI
instrumentation without its per-message ``http send`` / ``http receive`` spans.

``PostHogConfigurator`` (entry point ``opentelemetry_configurator``) builds the SDK the
standard way (same environment variables) and adds to the provider it builds:

* the identity-enriching :class:`PostHogSpanProcessor`, first, so it sees each request
  span start before any exporter sees it end;
* an id generator that makes a UUID ``X-Request-ID`` the trace id (around the configured
  ``OTEL_PYTHON_ID_GENERATOR``);
* the ``posthog`` exporter in a ``SimpleSpanProcessor`` (its ``export`` only appends to
  the pipeline's in-memory queue), linked to the processor: one pipeline, one event per
  span. Other exporters keep the standard ``BatchSpanProcessor``;
* the response propagator that sets ``X-Request-ID``.

It extends the SDK's configurator (``_OTelSDKConfigurator``, the class the SDK asks
distros to subclass) through its one hook, ``_configure(**kwargs)``, which passes span
processors, the export processor factory and exporter arguments on to the components it
builds. Where the SDK does not take them (:mod:`otel_posthog.compat` probes it), the SDK
builds everything but the ``posthog`` exporter (it reads ``OTEL_TRACES_EXPORTER`` without
it) and ``configure()`` adds the bridge to the provider it built: its processor then sends
each request span when it ends, as the linked exporter does. With ``OTEL_CONFIG_FILE``
the SDK builds everything and ``configure()`` adds the bridge.

A mis-selection (another distro or configurator chosen while ``POSTHOG_API_KEY`` is set)
is logged as a warning naming the variables to set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from .. import compat
from ..api import install_propagators, remember_processor
from ..sdk.exporter import PostHogSpanExporter
from ..sdk.processor import PostHogSpanProcessor
from ..sdk.propagator import install_request_id_generator

log = logging.getLogger("otel_posthog")

NAME = "posthog"
DISTRO_VAR = "OTEL_PYTHON_DISTRO"
CONFIGURATOR_VAR = "OTEL_PYTHON_CONFIGURATOR"
# Instrumentations (entry point names) known to take ``exclude_spans``: the per-message
# ASGI ``http send`` / ``http receive`` spans are noise for request events.
_EXCLUDE_SPANS_FOR = ("fastapi",)

_ran = {"distro": False, "configurator": False}
FIX_HINT = f"set {DISTRO_VAR}={NAME} (and {CONFIGURATOR_VAR}={NAME})"


class PostHogDistro(BaseDistro):
    """Defaults for PostHog events from ``opentelemetry-instrument``, zero code."""

    def _configure(self, **kwargs: Any) -> None:
        _ran["distro"] = True
        os.environ.setdefault(OTEL_TRACES_EXPORTER, NAME)
        os.environ.setdefault(CONFIGURATOR_VAR, NAME)
        install_propagators()  # the global propagator is already built: add ours to it

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        if entry_point.name in _EXCLUDE_SPANS_FOR:
            kwargs.setdefault("exclude_spans", ["send", "receive"])
        super().load_instrumentor(entry_point, **kwargs)


def _export_span_processor(span_exporter: SpanExporter, *args: Any, **kwargs: Any) -> SpanProcessor:
    if isinstance(span_exporter, PostHogSpanExporter):
        return SimpleSpanProcessor(span_exporter)  # export() never blocks: it queues
    return BatchSpanProcessor(span_exporter, *args, **kwargs)


class PostHogConfigurator(compat.sdk_configurator_base()):  # type: ignore[misc]
    """The SDK's standard configuration plus the PostHog processor, id generator and
    response propagator."""

    def _configure(self, **kwargs: Any) -> None:
        _ran["configurator"] = True
        if not _ran["distro"] and os.environ.get("POSTHOG_API_KEY"):
            log.warning(
                "otel_posthog: the PostHog configurator runs under another distro (%s=%s), "
                "whose defaults apply; %s",
                DISTRO_VAR,
                os.environ.get(DISTRO_VAR, "<unset>"),
                FIX_HINT,
            )
        if os.environ.get("OTEL_CONFIG_FILE"):
            # declarative configuration builds the SDK; configure() then adds the bridge
            self._configure_sdk(**kwargs)
            _configure_bridge()
            return
        if not compat.configurator_takes_components():
            # the SDK builds everything but the posthog exporter (it would run in a
            # BatchSpanProcessor, finishing each request late); the processor configure()
            # adds then sends each request span itself, when it ends, as the exporter does
            with _without_posthog_exporter():
                self._configure_sdk(**kwargs)
            _configure_bridge()
            return
        processor = PostHogSpanProcessor()
        super()._configure(
            **kwargs,
            span_processors=[processor],
            export_span_processor=_export_span_processor,
            exporter_args_map={PostHogSpanExporter: {"processor": processor}},
        )
        provider = trace.get_tracer_provider()
        install_request_id_generator(provider)  # around the configured OTEL_PYTHON_ID_GENERATOR
        remember_processor(provider, processor)
        install_propagators()

    def _configure_sdk(self, **kwargs: Any) -> None:
        base = super()._configure
        if getattr(base, "__isabstractmethod__", False):  # no SDK configurator to extend
            log.error(
                "otel_posthog: this opentelemetry-sdk has no configurator to extend; the "
                "bridge is added to a default TracerProvider. Set OTEL_PYTHON_CONFIGURATOR to "
                "the SDK's and call otel_posthog.configure() in the app instead"
            )
            return
        base(**kwargs)


def _configure_bridge() -> None:
    from ..api import configure

    configure()


@contextmanager
def _without_posthog_exporter() -> Iterator[None]:
    """``OTEL_TRACES_EXPORTER`` (the SDK's public setting) without ``posthog`` while the
    SDK reads it."""
    names = os.environ.get(OTEL_TRACES_EXPORTER)
    listed = [name.strip() for name in (names or "").split(",") if name.strip()]
    kept = [name for name in listed if name != NAME]
    if names is None or kept == listed:
        yield
        return
    os.environ[OTEL_TRACES_EXPORTER] = ",".join(kept) or "none"
    try:
        yield
    finally:
        os.environ[OTEL_TRACES_EXPORTER] = names


def check_selection() -> None:
    """``opentelemetry_post_instrument`` hook: warn when PostHog was wanted but not set up."""
    if not os.environ.get("POSTHOG_API_KEY") or _ran["configurator"]:
        return
    from ..sdk.exporter import live_exporters

    effect = (
        "the posthog exporter sends events without identity, session or X-Request-ID"
        if live_exporters()
        else "requests make no PostHog events"
    )
    log.warning(
        "otel_posthog: POSTHOG_API_KEY is set but opentelemetry-instrument did not select the "
        "PostHog distro/configurator (%s=%s, %s=%s): unless the app calls "
        "otel_posthog.configure(), %s. To fix: %s",
        DISTRO_VAR,
        os.environ.get(DISTRO_VAR, "<unset>"),
        CONFIGURATOR_VAR,
        os.environ.get(CONFIGURATOR_VAR, "<unset>"),
        effect,
        FIX_HINT,
    )


__all__ = ["PostHogDistro", "PostHogConfigurator", "check_selection"]
