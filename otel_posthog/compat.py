"""Every reliance on a private name of opentelemetry or starlette, behind one door.

Each fast path here either reads something the libraries do not promise (a private field
of the SDK's span, the SDK's configurator internals, the members of a
``CompositePropagator``) or patches one of their classes or objects (the SDK's id
generator object, Starlette's middleware stack and router lifespan; and, with public
names only and no public alternative, the SDK span's error methods and a span's
attribute setters, which keep secrets from other exporters). Each is decided by a
feature probe against the installed library, once where it can be (the SDK probes run
on first use, so the CLI commands that need no SDK load none), and each has a public-API
fallback used when the probe fails.

``OTEL_POSTHOG_COMPAT=public`` (a diagnostic, not a setting) forces every fallback but
those two secret-keeping wraps; CI runs the integration tests once that way
(``make test-public-api``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import weakref
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
            and span._name == span.name
        )
        raw = getattr(span._attributes, "_dict", None)
        attribute_dict = isinstance(raw, dict) and dict(raw) == dict(span.attributes)
        dq = getattr(getattr(span, "_events", None), "_dq", None)
        event_deque = dq is not None and len(dq) == len(span.events) == 1
        return SdkProbe(bool(fields), attribute_dict, event_deque)
    except Exception as exc:
        log.debug("otel_posthog: SDK span probe failed (%r): public properties only", exc)
        return SdkProbe(False, False, False)


SpanFields = tuple[Any, Any, Any, Any, Any, Any, Any, Any, Any]


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
        span.name,
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
            span._name,
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


def wrap_span_setters(
    span: Any,
    set_one: Callable[[Callable[[str, Any], None]], Callable[[str, Any], None]],
    set_many: Callable[[Callable[[Any], None]], Callable[[Any], None]],
) -> bool:
    """This span's later ``set_attribute`` / ``set_attributes`` calls go through
    ``set_one(original)`` / ``set_many(original)`` (an instance attribute shadows the
    class's method; probe: the span takes instance attributes). False, nothing wrapped,
    when it does not: the span then keeps what is set later as it is given.

    Public names only, on the span the ``SpanProcessor`` API hands to ``on_start``, and
    no public alternative (a span cannot be changed once it ended): kept under the
    public switch, which would otherwise let query secrets reach other exporters."""
    if not isinstance(getattr(span, "__dict__", None), dict):
        return False
    span.set_attribute = set_one(span.set_attribute)
    span.set_attributes = set_many(span.set_attributes)
    return True


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


# -- the SDK's id generator (opentelemetry-sdk) --------------------------------------------
_WRAPPED_GENERATORS: weakref.WeakSet[Any] = weakref.WeakSet()
TraceIdMethods = tuple[Callable[[], int], Callable[[], bool]]


def wrap_id_generator(
    provider: Any,
    is_ours: Callable[[Any], bool],
    wrap: Callable[[Any], Any],
    wrap_methods: Callable[[Callable[[], int], Callable[[], bool]], TraceIdMethods],
) -> str:
    """Route ``provider``'s trace ids through the bridge's generator; idempotent.

    Fast path: the generator instance the provider holds gets ``wrap_methods``' versions of
    its ``generate_trace_id`` / ``is_trace_id_random``, so tracers handed out before this
    call use them too (probe: both are callables and the instance takes attributes).
    Public fallback: ``provider.id_generator`` (the attribute ``TracerProvider`` stores its
    ``id_generator`` argument in) becomes ``wrap(generator)``, read by every tracer
    obtained afterwards. Returns ``"patched"``, ``"replaced"``, ``"ours"`` or ``"none"``.
    """
    generator = getattr(provider, "id_generator", None)
    if generator is None:
        return "none"
    if is_ours(generator) or generator in _WRAPPED_GENERATORS:
        return "ours"
    if not PUBLIC_ONLY and _takes_method_wrappers(generator):
        generate, is_random = wrap_methods(
            generator.generate_trace_id, generator.is_trace_id_random
        )
        generator.generate_trace_id = generate
        generator.is_trace_id_random = is_random
        _WRAPPED_GENERATORS.add(generator)
        return "patched"
    try:
        provider.id_generator = wrap(generator)
    except (AttributeError, TypeError) as exc:
        log.warning("otel_posthog: X-Request-ID cannot become the trace id here (%r)", exc)
        return "none"
    return "replaced"


def _takes_method_wrappers(generator: Any) -> bool:
    try:
        weakref.ref(generator)
    except TypeError:
        return False
    return (
        isinstance(getattr(generator, "__dict__", None), dict)
        and callable(getattr(generator, "generate_trace_id", None))
        and callable(getattr(generator, "is_trace_id_random", None))
    )


# -- the SDK's span methods (opentelemetry-sdk) ---------------------------------------------
_RECORD_EXCEPTION_PARAMS = ["self", "exception", "attributes", "timestamp", "escaped"]


def wrap_span_error_methods(
    record_exception: Callable[[Callable[..., None]], Callable[..., None]],
    set_status: Callable[[Callable[..., None]], Callable[..., None]],
) -> bool:
    """Replace the SDK ``Span`` class's ``record_exception`` and ``set_status`` by
    ``record_exception(original)`` / ``set_status(original)``, once per process.

    Both are public methods, but replacing them patches a library class: probed (the
    ``record_exception`` signature the wrapper forwards to; ``set_status`` is called as
    ``(self, status, description)``, its documented form); when the probe fails the SDK's
    methods stay as they are (False). Public names only and no public alternative (a
    recorded event cannot be changed): kept under the public switch, which would
    otherwise let secrets in exception text reach other exporters.
    """
    try:
        from opentelemetry.sdk.trace import Span

        original_record = Span.record_exception
        original_status = Span.set_status
        if getattr(original_record, "__otel_posthog_wrapped__", False):
            return True
        if list(inspect.signature(original_record).parameters) != _RECORD_EXCEPTION_PARAMS:
            return False
        if list(inspect.signature(original_status).parameters)[:1] != ["self"]:
            return False
    except Exception:
        return False
    new_record = functools.wraps(original_record)(record_exception(original_record))
    new_status = functools.wraps(original_status)(set_status(original_status))
    new_record.__otel_posthog_wrapped__ = True  # type: ignore[attr-defined]
    Span.record_exception = new_record  # type: ignore[method-assign]
    Span.set_status = new_status  # type: ignore[method-assign]
    return True


# -- Starlette ------------------------------------------------------------------------------
def hook_starlette_middleware_stack(wrap: Callable[[Any, Any], Any]) -> bool:
    """Every stack ``Starlette.build_middleware_stack`` builds passes ``wrap(app, stack)``
    (an undocumented method): probed as a plain ``(self)`` function; False (nothing
    wrapped) under the public switch or without Starlette. The public fallback is the
    ASGI middleware the app wraps itself in (:class:`otel_posthog.PostHogASGIMiddleware`).
    """
    if PUBLIC_ONLY:
        return False
    try:
        from starlette.applications import Starlette
    except ImportError:
        return False
    original = getattr(Starlette, "build_middleware_stack", None)
    if getattr(original, "__otel_posthog_wrapped__", False):
        return True
    try:
        if original is None or list(inspect.signature(original).parameters) != ["self"]:
            return False
    except (TypeError, ValueError):
        return False

    def build_middleware_stack(self: Any) -> Any:
        return wrap(self, original(self))

    build_middleware_stack.__otel_posthog_wrapped__ = True  # type: ignore[attr-defined]
    Starlette.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    return True


def hook_starlette_lifespan(wrap_send: Callable[[Any], Any]) -> bool:
    """Starlette's router runs its lifespan with ``wrap_send(send)`` (which runs the
    bridge's flush before ``lifespan.shutdown.complete``); False when Starlette is absent,
    its router's ``lifespan(self, scope, receive, send)`` is not there to wrap, or under
    the public switch (then :class:`otel_posthog.PostHogASGIMiddleware` does it)."""
    if PUBLIC_ONLY:
        return False
    try:
        from starlette.routing import Router
    except ImportError:
        return False
    original = getattr(Router, "lifespan", None)
    if original is None or not inspect.iscoroutinefunction(original):
        return False
    if getattr(original, "__otel_posthog_wrapped__", False):
        return True
    try:
        params = list(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        return False
    if params != ["self", "scope", "receive", "send"]:
        return False

    async def lifespan(self: Any, scope: Any, receive: Any, send: Any) -> None:
        await original(self, scope, receive, wrap_send(send))

    lifespan.__otel_posthog_wrapped__ = True  # type: ignore[attr-defined]
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
