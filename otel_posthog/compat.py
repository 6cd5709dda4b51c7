"""Every reliance on a private name of opentelemetry or starlette, behind one door.

Each fast path here reads (never writes) something the libraries do not promise: a
private field of the SDK's span, the SDK's configurator internals, the members of a
``CompositePropagator``, Starlette's router lifespan. Each is decided once, by a feature
probe against the installed library (the SDK probes run on first use, so the CLI
commands that need no SDK load none), and each has a public-API fallback used when the
probe fails.

``OTEL_POSTHOG_COMPAT=public`` (a diagnostic, not a setting) forces every fallback; CI
runs the integration tests once that way (``make test-public-api``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context

log = logging.getLogger("otel_posthog")

COMPAT_ENV = "OTEL_POSTHOG_COMPAT"
PUBLIC_ONLY = os.environ.get(COMPAT_ENV, "").strip().lower() == "public"


# -- instrumentation suppression (opentelemetry-api) --------------------------------------
_SUPPRESS_KEYS: tuple[str, ...] = ()
if not PUBLIC_ONLY:
    _SUPPRESS_KEYS = tuple(
        key
        for key in (
            getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None),
            getattr(otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None),
        )
        if isinstance(key, str)
    )
_PLAIN_SUPPRESS_KEY = "suppress_instrumentation"  # what older instrumentations read


def _public_suppressors() -> list[Callable[[], Any]]:
    try:  # opentelemetry-instrumentation's public helpers (an optional dependency)
        from opentelemetry.instrumentation.utils import (
            suppress_http_instrumentation,
            suppress_instrumentation,
        )
    except ImportError:
        return []
    return [suppress_instrumentation, suppress_http_instrumentation]


@contextmanager
def suppressed_instrumentation() -> Iterator[None]:
    """No spans from what runs inside: the bridge's own HTTP calls are never traced."""
    ctx = otel_context.set_value(_PLAIN_SUPPRESS_KEY, True)
    for key in _SUPPRESS_KEYS:
        ctx = otel_context.set_value(key, True, ctx)
    token = otel_context.attach(ctx)
    try:
        if _SUPPRESS_KEYS:
            yield
        else:
            with ExitStack() as stack:
                for suppress in _public_suppressors():
                    stack.enter_context(suppress())
                yield
    finally:
        otel_context.detach(token)


# -- the SDK's span (opentelemetry-sdk) ---------------------------------------------------
@dataclass(frozen=True)
class SdkProbe:
    """What the installed SDK's span stores where the fast paths read it."""

    span_fields: bool  # _context, _parent, _kind, _start_time, _end_time, _status, ...
    attribute_dict: bool  # BoundedAttributes._dict, a plain dict
    event_deque: bool  # BoundedList._dq, a deque


@functools.cache
def sdk_probe() -> SdkProbe:
    """Probe a real span of the installed SDK once: each private field must hold what its
    public property returns."""
    if PUBLIC_ONLY:
        return SdkProbe(False, False, False)
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.trace import SpanKind, set_span_in_context

        tracer = TracerProvider(shutdown_on_exit=False).get_tracer("otel_posthog.compat")
        parent = tracer.start_span("parent")
        span: Any = tracer.start_span(
            "probe",
            context=set_span_in_context(parent),
            kind=SpanKind.SERVER,
            attributes={"a": "b"},
        )
        span.add_event("e")
        span.end()
        fields = (
            span._context is span.context
            and span._parent is span.parent
            and span._kind is span.kind is SpanKind.SERVER
            and span._start_time == span.start_time
            and span._end_time == span.end_time
            and span._status is span.status
            and span._resource is span.resource
            and span._attributes is not None
        )
        raw = getattr(span._attributes, "_dict", None)
        attribute_dict = isinstance(raw, dict) and dict(raw) == dict(span.attributes)
        dq = getattr(getattr(span, "_events", None), "_dq", None)
        event_deque = dq is not None and len(dq) == len(span.events) == 1
        return SdkProbe(bool(fields), attribute_dict, event_deque)
    except Exception as exc:
        log.debug("otel_posthog: SDK span probe failed (%r): public properties only", exc)
        return SdkProbe(False, False, False)


SpanFields = tuple[Any, Any, Any, Any, Any, Any, Any, Any]


def _public_fields(span: Any) -> SpanFields:
    return (
        span.context,
        span.parent,
        span.kind,
        span.start_time,
        span.end_time,
        span.status,
        span.attributes,
        span.resource,
    )


def _private_fields(span: Any) -> SpanFields:
    try:  # each public property is a Python call
        return (
            span._context,
            span._parent,
            span._kind,
            span._start_time,
            span._end_time,
            span._status,
            span._attributes,
            span._resource,
        )
    except AttributeError:  # another ReadableSpan implementation
        return _public_fields(span)


def _public_kind_and_parent(span: Any) -> tuple[Any, Any]:
    return span.kind, span.parent


def _private_kind_and_parent(span: Any) -> tuple[Any, Any]:
    try:
        return span._kind, span._parent
    except AttributeError:
        return span.kind, span.parent


def _public_plain(attributes: Any) -> Mapping[str, Any]:
    if attributes is None:
        return {}
    return attributes if type(attributes) is dict else dict(attributes)


def _private_plain(attributes: Any) -> Mapping[str, Any]:
    """Every lookup through ``BoundedAttributes`` (behind a ``MappingProxyType``) runs
    Python code; a finished span's attributes no longer change: read its storage dict."""
    if attributes is None:
        return {}
    inner = getattr(attributes, "_dict", None)
    if isinstance(inner, dict):
        return inner
    return attributes if type(attributes) is dict else dict(attributes)


def _public_readable(span: Any) -> Mapping[str, Any]:
    return span.attributes or {}


def _private_readable(span: Any) -> Mapping[str, Any]:
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    return inner if isinstance(inner, dict) else (span.attributes or {})


def _public_no_events(span: Any) -> bool:
    return not span.events


def _private_no_events(span: Any) -> bool:
    raw = getattr(span, "_events", None)
    if raw is None:
        return not span.events
    try:
        return len(getattr(raw, "_dq", raw)) == 0
    except TypeError:
        return not span.events


def span_fields_reader() -> Callable[[Any], SpanFields]:
    """``(context, parent, kind, start, end, status, attributes, resource)`` of a span."""
    return _private_fields if sdk_probe().span_fields else _public_fields


def kind_and_parent_reader() -> Callable[[Any], tuple[Any, Any]]:
    return _private_kind_and_parent if sdk_probe().span_fields else _public_kind_and_parent


def plain_attributes_reader() -> Callable[[Any], Mapping[str, Any]]:
    """A finished span's (or a resource's) attributes as a mapping to read, no copy if can."""
    return _private_plain if sdk_probe().attribute_dict else _public_plain


def live_attributes_reader() -> Callable[[Any], Mapping[str, Any]]:
    """A started span's attributes, to read only (never written through)."""
    return _private_readable if sdk_probe().attribute_dict else _public_readable


def no_events_reader() -> Callable[[Any], bool]:
    """True when a finished span recorded no events, without copying them."""
    return _private_no_events if sdk_probe().event_deque else _public_no_events


# -- the SDK's configurator (opentelemetry-sdk) -------------------------------------------
_COMPONENT_KWARGS = ("span_processors", "export_span_processor", "exporter_args_map")


def sdk_configurator_base() -> type:
    """The class the SDK asks distros to subclass (``_OTelSDKConfigurator``).

    Without it (a future SDK), the instrumentation package's public ``BaseConfigurator``,
    whose ``_configure`` the PostHog configurator then implements on the public API.
    """
    try:
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator

        return _OTelSDKConfigurator
    except ImportError:
        from opentelemetry.instrumentation.configurator import BaseConfigurator

        base: type = BaseConfigurator
        return base


@functools.cache
def configurator_takes_components() -> bool:
    """The SDK configurator's ``_configure(**kwargs)`` hands span processors, an export
    processor factory and exporter arguments to the components it builds."""
    if PUBLIC_ONLY:
        return False
    try:
        from opentelemetry.sdk import _configuration

        base = getattr(_configuration, "_OTelSDKConfigurator", None)
        init = getattr(_configuration, "_initialize_components", None)
        if base is None or init is None:
            return False
        params = inspect.signature(init).parameters
        return all(name in params for name in _COMPONENT_KWARGS)
    except Exception:
        return False


# -- propagators (opentelemetry-api) --------------------------------------------------------
_COMPOSED: dict[int, tuple[Any, tuple[Any, ...]]] = {}


def composite(members: Sequence[Any]) -> Any:
    """A ``CompositePropagator`` of ``members`` whose members :func:`members_of` knows."""
    from opentelemetry.propagators.composite import CompositePropagator

    out = CompositePropagator(list(members))
    _COMPOSED.clear()
    _COMPOSED[id(out)] = (out, tuple(members))
    return out


def members_of(propagator: Any) -> list[Any]:
    """The propagators inside a composite one (or the propagator itself)."""
    known = _COMPOSED.get(id(propagator))
    if known is not None and known[0] is propagator:
        return list(known[1])
    if not PUBLIC_ONLY:
        inner = getattr(propagator, "_propagators", None)
        if isinstance(inner, (list, tuple)):
            return list(inner)
    return [propagator]


# -- Starlette ------------------------------------------------------------------------------
def hook_starlette_lifespan(on_shutdown: Callable[[], None]) -> bool:
    """Run ``on_shutdown`` (in an executor) before Starlette's router reports
    ``lifespan.shutdown.complete``; False when Starlette is absent or its router's
    ``lifespan(self, scope, receive, send)`` is not there to wrap."""
    if PUBLIC_ONLY:
        return False
    try:
        from starlette.routing import Router
    except ImportError:
        return False
    original = getattr(Router, "lifespan", None)
    if original is None or not inspect.iscoroutinefunction(original):
        return False
    try:
        params = list(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        return False
    if params != ["self", "scope", "receive", "send"]:
        return False

    import asyncio

    async def lifespan(self: Any, scope: Any, receive: Any, send: Any) -> None:
        async def send_after_flush(message: Any) -> None:
            if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                try:
                    await asyncio.get_running_loop().run_in_executor(None, on_shutdown)
                except Exception as exc:
                    log.warning("otel_posthog: flush at shutdown failed: %r", exc)
            await send(message)

        await original(self, scope, receive, send_after_flush)

    Router.lifespan = lifespan  # type: ignore[method-assign]
    return True


def describe() -> dict[str, bool]:
    """Which fast paths are on (for tests and bug reports)."""
    probe = sdk_probe()
    return {
        "public_only": PUBLIC_ONLY,
        "suppression_keys": bool(_SUPPRESS_KEYS),
        "span_fields": probe.span_fields,
        "attribute_dict": probe.attribute_dict,
        "event_deque": probe.event_deque,
        "configurator_components": configurator_takes_components(),
    }
