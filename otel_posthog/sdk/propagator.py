"""Propagators: read PostHog and request headers in, write ``X-Request-ID`` out.

* :class:`PostHogPropagator` (entry point ``posthog`` for ``OTEL_PROPAGATORS``) reads the
  request headers into a :class:`RequestState` in the context, and removes inbound
  ``posthog.*`` baggage so the W3C baggage propagator never forwards a client's identity.
  It injects nothing by default; with ``OTEL_POSTHOG_PROPAGATE_IDENTITY=true`` only the
  verified person, and only to allowed hosts (:mod:`otel_posthog.core.identity_hosts`).
* :class:`PostHogResponsePropagator` sets ``X-Request-ID`` and W3C ``traceresponse`` on
  every response and exposes both to browsers.
* :class:`RequestIdGenerator` makes the trace id of a new trace equal a UUID
  ``X-Request-ID``, so request id and trace id stay one and the same without inventing
  a phantom parent span.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from .. import compat
from ..core.headers import (
    AUTHORIZATION_HEADER,
    DISTINCT_HEADER,
    REQUEST_ID_HEADER,
    RESPONSE_HEADERS,
    SESSION_HEADER,
    WINDOW_HEADER,
    bearer_token,
    sanitize,
    uuid_int,
    valid_traceparent,
    valid_uuid,
)
from ..core.headers import header_limit as _limit
from ..core.identity_hosts import destination_host, policy_for
from .request_state import LIVE, SCOPE_STATE_KEY, STATE_KEY, RequestState, current_state
from .runtime import current_settings, verified_person

BAGGAGE_DISTINCT_KEY = "posthog.distinct_id"
BAGGAGE_SESSION_KEY = "posthog.session_id"
BAGGAGE_PREFIX = "posthog."
_HEADERS = (
    "authorization",
    SESSION_HEADER,
    WINDOW_HEADER,
    DISTINCT_HEADER,
    REQUEST_ID_HEADER,
    "traceparent",
)


def _header(carrier: CarrierT, getter: Getter[CarrierT], name: str) -> str | None:
    values = getter.get(carrier, name)
    if values is None and name != name.title():
        values = getter.get(carrier, name.title())
    if not values:
        return None
    value = values[0] if isinstance(values, (list, tuple)) else values
    return sanitize(value, limit=_limit(name))


ORIGIN_HEADER = "origin"  # only its presence: CORS response headers are for browsers
BAGGAGE_HEADER = "baggage"  # only its presence: then inbound posthog.* baggage is removed
_WANTED = {name.encode(): name for name in (*_HEADERS, ORIGIN_HEADER, BAGGAGE_HEADER)}


_ASGI_SCOPES = frozenset(("http", "websocket"))


def _is_asgi_scope(carrier: object) -> bool:
    """An ASGI ``http`` / ``websocket`` scope, told by its shape (the ASGI spec's), whatever
    the getter: only the ASGI instrumentation extracts from one."""
    return isinstance(carrier, dict) and carrier.get("type") in _ASGI_SCOPES


# sanitised short header values by their raw bytes: a session's id and distinct id come
# again on each of its requests ("" stands for None); never a bearer token
_CLEAN_VALUES: dict[bytes, str] = {}
_CLEAN_MAX_BYTES = 128  # below every header's limit: the result does not depend on it
_CLEAN_MAX_ENTRIES = 4096


def _clean_value(value: bytes, name: str) -> str:
    """A header value decoded and sanitised ("" for None), kept when short."""
    try:
        text = value.decode("utf-8")
    except ValueError:  # never interpret escapes (unicode_escape would)
        text = value.decode("utf-8", "replace")
    clean = sanitize(text, _limit(name)) or ""
    if len(value) <= _CLEAN_MAX_BYTES and name != AUTHORIZATION_HEADER:
        if len(_CLEAN_VALUES) >= _CLEAN_MAX_ENTRIES:
            _CLEAN_VALUES.clear()
        _CLEAN_VALUES[value] = clean
    return clean


def _asgi_headers(carrier: object) -> dict[str, str | None] | None:
    """Our headers from an ASGI scope in one pass, sanitised (first value wins); None if
    the carrier is not one (told by its shape, the ASGI spec's: public, whatever getter).

    The ASGI getter scans and decodes every header for each name asked: six names, and a
    second try in Title-Case for each absent one, made this a large part of a request's
    cost (docs/performance.md).
    """
    if not isinstance(carrier, dict) or carrier.get("type") not in _ASGI_SCOPES:
        return None
    raw = carrier.get("headers")
    if not isinstance(raw, (list, tuple)):
        return None
    found: dict[str, str | None] = {}
    wanted = _WANTED
    try:
        for key, value in raw:
            name = wanted.get(key)  # servers send lower-case names (the ASGI spec)
            if name is None:
                if key.islower() or not isinstance(key, bytes):
                    continue
                name = wanted.get(key.lower())
                if name is None:
                    continue
            if name in found:
                continue
            if name is BAGGAGE_HEADER:
                found[name] = ""
                continue
            clean = _CLEAN_VALUES.get(value)
            if clean is None:
                if not isinstance(value, bytes):
                    return None
                clean = _clean_value(value, name)
            found[name] = clean or None
    except (TypeError, ValueError, AttributeError):
        return None
    return found


def _read_headers(carrier: CarrierT, getter: Getter[CarrierT], asgi: bool) -> dict[str, str | None]:
    found = _asgi_headers(carrier) if asgi else None
    if found is None:
        found = {name: _header(carrier, getter, name) for name in _HEADERS}
        found[ORIGIN_HEADER] = _header(carrier, getter, ORIGIN_HEADER)
        found[BAGGAGE_HEADER] = ""  # not looked up: check the extracted baggage
    return found


def _read_baggage(
    carrier: CarrierT, context: Context, getter: Getter[CarrierT], state: RequestState
) -> None:
    """Identity from trusted baggage; a malformed baggage header loses only the baggage."""
    try:
        bag = baggage.get_all(context)
        if BAGGAGE_DISTINCT_KEY not in bag and BAGGAGE_SESSION_KEY not in bag:
            # the W3C baggage propagator may not run (or not before us)
            bag = baggage.get_all(W3CBaggagePropagator().extract(carrier, Context(), getter))
        state.baggage_distinct_id = sanitize(bag.get(BAGGAGE_DISTINCT_KEY))
        state.session_id = state.session_id or sanitize(bag.get(BAGGAGE_SESSION_KEY))
    except Exception as exc:
        from ..counters import STATS

        STATS.error("propagator.baggage", exc)


def _is_posthog_key(key: object) -> bool:
    return str(key).strip().lower().startswith(BAGGAGE_PREFIX)


def _without_posthog_baggage(context: Context) -> Context:
    """``context`` without inbound ``posthog.*`` baggage (the app's own entries stay)."""
    bag = baggage.get_all(context)
    if bag:
        for key in [k for k in bag if _is_posthog_key(k)]:
            context = baggage.remove_baggage(key, context)
    return context


def _drop_baggage_header(carrier: CarrierT, setter: Setter[CarrierT]) -> None:
    """Remove a ``baggage`` header another propagator already wrote."""
    if isinstance(carrier, MutableMapping):
        for key in [k for k in carrier if isinstance(k, str) and k.lower() == "baggage"]:
            del carrier[key]
    else:
        setter.set(carrier, "baggage", "")


class PostHogPropagator(TextMapPropagator):
    """Reads ``Authorization: Bearer``, ``X-POSTHOG-*`` and ``X-Request-ID`` into the context."""

    def __init__(
        self,
        propagate_identity: bool | None = None,
        trust_baggage: bool | None = None,
        identity_hosts: Iterable[str] | None = None,
    ):
        self._propagate_identity = propagate_identity
        self._trust_baggage = trust_baggage
        self._identity_hosts = None if identity_hosts is None else tuple(identity_hosts)

    def _flags(self) -> tuple[bool, bool]:
        if self._propagate_identity is None or self._trust_baggage is None:
            settings = current_settings()
            return (
                settings.propagate_identity
                if self._propagate_identity is None
                else self._propagate_identity,
                settings.trust_baggage if self._trust_baggage is None else self._trust_baggage,
            )
        return self._propagate_identity, self._trust_baggage

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        if context is None:
            context = Context()
        try:
            asgi = _is_asgi_scope(carrier)
            if not asgi:  # the ASGI instrumentation extracts only outside any request
                outer = otel_context.get_value(STATE_KEY)
                if isinstance(outer, RequestState) and outer.span is not None:
                    if not outer.finished:
                        # extracted again inside a request in flight (a mounted app's own
                        # server span, e.g. FastAPI's built-in telemetry): the same request
                        return otel_context.set_value(STATE_KEY, outer, context)
            headers = _read_headers(carrier, getter, asgi)
            state = RequestState()
            if asgi and isinstance(carrier, dict):
                # the app and root path before routing (a sub-app and Mount change both in
                # place): the full route template of a mounted app is found from them and the
                # span's attributes, off the request path (otel_posthog.sdk.asgi_routes)
                state.app = carrier.get("app")
                root_path = carrier.get("root_path")
                if root_path:
                    state.root_path = root_path
                holder = carrier.get(SCOPE_STATE_KEY)  # otel_posthog.sdk.starlette_layer's
                if holder is not None:
                    holder.append(state)
            if headers:  # only what was sent: RequestState's defaults cover the rest
                get = headers.get
                if "authorization" in headers:
                    state.token = bearer_token(get("authorization"))
                if SESSION_HEADER in headers:
                    state.session_id = get(SESSION_HEADER)
                if WINDOW_HEADER in headers:
                    state.window_id = get(WINDOW_HEADER)
                if DISTINCT_HEADER in headers:
                    state.header_distinct_id = get(DISTINCT_HEADER)
                if get(ORIGIN_HEADER):
                    state.cross_origin = True
                if "traceparent" in headers:
                    state.has_traceparent = valid_traceparent(get("traceparent"))
                x_request_id = get(REQUEST_ID_HEADER)
                if x_request_id:
                    state.x_request_id = x_request_id
                    if not state.has_traceparent:
                        state.request_id = x_request_id
                        state.trace_id_hint = uuid_int(x_request_id)
                        if state.trace_id_hint and not _HINTS.seen:
                            _HINTS.seen = True
            trust_baggage = self._trust_baggage
            if trust_baggage is None:
                trust_baggage = current_settings().trust_baggage
            if trust_baggage:
                _read_baggage(carrier, context, getter, state)
            if BAGGAGE_HEADER in headers:
                # the W3C baggage propagator (before us) must not forward a client's posthog.*
                context = _without_posthog_baggage(context)
            return otel_context.set_value(STATE_KEY, state, context)
        except Exception:  # a malformed header never fails the request
            from ..counters import STATS

            STATS.error("propagator.extract")
            try:
                return _without_posthog_baggage(context)
            except Exception:
                return context

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """With ``OTEL_POSTHOG_PROPAGATE_IDENTITY=true``, the verified person and session as
        W3C baggage, only to an allowed host. Always: ``posthog.*`` baggage entries that did
        not come from us are removed from the ``baggage`` header (we run after the W3C
        baggage propagator, which wrote them)."""
        try:
            ctx = context if context is not None else otel_context.get_current()
            entries = baggage.get_all(ctx)
            foreign = any(_is_posthog_key(k) for k in entries) if entries else False
            ours = self._identity(ctx)
            if not ours and not foreign:
                return
            kept = {k: v for k, v in entries.items() if not _is_posthog_key(k)}
            kept.update(ours)
            if not kept:
                _drop_baggage_header(carrier, setter)
                return
            out = Context()
            for key, value in kept.items():
                out = baggage.set_baggage(key, value, out)
            # the whole baggage header: the app's entries and ours
            W3CBaggagePropagator().inject(carrier, out, setter)
        except Exception as exc:
            from ..counters import STATS

            STATS.error("propagator.inject", exc)

    def _identity(self, ctx: Context) -> dict[str, str]:
        """Our baggage entries for this outbound call: empty unless propagation is on,
        there is a verified person or a valid session, and the destination is allowed."""
        propagate, _ = self._flags()
        if not propagate:
            return {}
        state = current_state(ctx)
        if state is None:
            return {}
        ours: dict[str, str] = {}
        person = verified_person(state)  # never the client's X-POSTHOG-DISTINCT-ID
        if person:
            ours[BAGGAGE_DISTINCT_KEY] = person
        if state.session_id and valid_uuid(state.session_id):
            ours[BAGGAGE_SESSION_KEY] = state.session_id
        if not ours:
            return ours
        hosts = self._identity_hosts
        if hosts is None:
            hosts = current_settings().propagate_identity_hosts
        if not policy_for(hosts).allows(destination_host(trace.get_current_span(ctx))):
            return {}  # a third party, or a destination we cannot tell: fail closed
        return ours

    @property
    def fields(self) -> set[str]:
        return set(_HEADERS) | {"baggage"}


try:
    from opentelemetry.instrumentation.propagators import ResponsePropagator as _ResponseBase
except ImportError:  # opentelemetry-instrumentation not installed
    _ResponseBase = object  # type: ignore[assignment,misc]


_RID_NAME, _TRACERESPONSE_NAME = RESPONSE_HEADERS
_RID_BYTES, _TRACERESPONSE_BYTES = (name.lower().encode() for name in RESPONSE_HEADERS)
_EXPOSED = ", ".join(RESPONSE_HEADERS).encode()
_FLAGS_HEX = tuple(f"{flags:02x}" for flags in range(256))
# ASGI messages that carry no response headers (body chunks, trailers, websocket frames)
_NOT_A_RESPONSE_START = frozenset(
    ("http.response.body", "http.response.trailers", "websocket.send", "websocket.close")
)


def _app_request_id(carrier: object) -> str | None:
    """The ``X-Request-ID`` the response already carries (set by the app or a middleware).

    Reads the carriers the instrumentations hand over: an ASGI ``http.response.start``
    message, a WSGI header list, a Django ``HttpResponse`` (``has_header``), a Falcon
    response (``get_header``). Other carriers: None (never calls unknown methods).
    """
    if isinstance(carrier, dict):
        for key, value in carrier.get("headers") or ():
            if key[:1] in b"xX" and key.lower() == _RID_BYTES:
                return value.decode("latin-1") if isinstance(value, bytes) else str(value)
        return None
    if isinstance(carrier, list):
        for item in carrier:
            key = item[0]
            if len(key) == 12 and key.lower() == "x-request-id":
                return str(item[1])
        return None
    has_header = getattr(carrier, "has_header", None)
    if has_header is not None:
        return str(carrier["X-Request-ID"]) if has_header("X-Request-ID") else None  # type: ignore[index]
    get_header = getattr(carrier, "get_header", None)
    if get_header is not None:
        found = get_header("X-Request-ID")
        return str(found) if found else None
    return None


def adopt_app_request_id(state: RequestState, value: str) -> None:
    """The response carries the app's own ``X-Request-ID``: the events follow what the client
    can know. With a valid ``traceparent`` the trace id stays ``request_id`` and the app's
    value is kept as ``response_request_id``; without one, the client learns the id only
    from that header, so it becomes ``request_id``."""
    clean = sanitize(value)
    if not clean:
        return
    if state.has_traceparent:
        state.response_request_id = clean
    else:
        state.request_id = clean


class PostHogResponsePropagator(_ResponseBase):
    """Sets ``X-Request-ID`` and ``traceresponse`` on responses; lists both in
    ``Access-Control-Expose-Headers`` when the request came with an ``Origin`` (browsers).

    A response that already carries ``X-Request-ID`` (the app's own, e.g. from
    asgi-correlation-id) keeps it as its only one: see :func:`adopt_app_request_id`.
    """

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        try:
            msg_type = carrier.get("type") if isinstance(carrier, dict) else None
            if msg_type in _NOT_A_RESPONSE_START:
                return  # the ASGI instrumentation calls us for every message it sends
            span = trace.get_current_span(context)
            span_ctx = span.get_span_context()
            if not span_ctx.is_valid:
                return
            span_id = span_ctx.span_id
            trace_hex = span_ctx.trace_id.to_bytes(16, "big").hex()  # valid: 128 bits
            state = LIVE.get(span_id)
            app_rid = None
            if type(carrier) is dict:  # an ASGI message: the scan inline (every response)
                message: dict[str, Any] = carrier  # type: ignore[assignment]
                for key, value in message.get("headers") or ():
                    if key[:1] in b"xX" and key.lower() == _RID_BYTES:
                        app_rid = value.decode("latin-1") if type(value) is bytes else str(value)
                        break
            else:
                app_rid = _app_request_id(carrier)
            if state is not None:
                if app_rid is not None:
                    adopt_app_request_id(state, app_rid)
                rid = state.request_id or trace_hex
                expose = state.cross_origin  # only browsers (cross-origin) need the list
            elif getattr(span, "kind", trace.SpanKind.SERVER) is not trace.SpanKind.SERVER:
                return  # a mounted app's nested middleware: the request's own layer answers
            else:
                rid, expose = trace_hex, True
            flags = span_ctx.trace_flags
            flags_hex = _FLAGS_HEX[flags] if 0 <= flags < 256 else f"{flags:02x}"
            trace_response = f"00-{trace_hex}-{span_id:016x}-{flags_hex}"
            if msg_type == "http.response.start" and isinstance(carrier, dict):
                # what the ASGI setter does, without three calls and re-encoding constants
                headers = carrier.get("headers")
                if not headers:
                    headers = carrier["headers"] = []
                if app_rid is None:
                    headers.append([_RID_BYTES, rid.encode()])
                headers.append([_TRACERESPONSE_BYTES, trace_response.encode()])
                if expose:
                    headers.append([b"access-control-expose-headers", _EXPOSED])
                return
            if app_rid is None:
                setter.set(carrier, _RID_NAME, rid)
            setter.set(carrier, _TRACERESPONSE_NAME, trace_response)
            if expose:
                setter.set(carrier, "Access-Control-Expose-Headers", _EXPOSED.decode())
        except Exception:
            from ..counters import STATS

            STATS.error("response_propagator.inject")


_FROM_HINT = threading.local()  # the last trace id this thread made came from a request id


class _Hints:
    """Whether any request so far gave a trace id hint (a UUID ``X-Request-ID`` without
    ``traceparent``). Until one does, the id generator hooks forward straight to the SDK's
    generator: no context lookup and no thread-local flag per trace. Never reset."""

    seen = False


_HINTS = _Hints()


def _trace_id_hint() -> int | None:
    state = otel_context.get_value(STATE_KEY)
    if isinstance(state, RequestState) and state.trace_id_hint:
        hint, state.trace_id_hint = state.trace_id_hint, None
        _FROM_HINT.value = True
        return hint
    return None


def _random_unless_hinted(inner_random: bool) -> bool:
    """The W3C random-trace-id flag: a client's request id is not known to be random."""
    if getattr(_FROM_HINT, "value", False):
        _FROM_HINT.value = False
        return False
    return inner_random


class RequestIdGenerator(IdGenerator):
    """Uses a UUID ``X-Request-ID`` as the trace id of the trace a request starts.

    Forwards every other method to the wrapped generator; ``is_trace_id_random`` (which
    the SDK reads right after ``generate_trace_id`` for the W3C random flag) is the
    wrapped generator's answer, and False for a trace id taken from a request id.
    """

    def __init__(self, inner: IdGenerator | None = None) -> None:
        self.inner = inner or RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self.inner.generate_span_id()

    def generate_trace_id(self) -> int:
        if not _HINTS.seen:
            return self.inner.generate_trace_id()
        _FROM_HINT.value = False
        return _trace_id_hint() or self.inner.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        if not _HINTS.seen:
            return self.inner.is_trace_id_random()
        return _random_unless_hinted(self.inner.is_trace_id_random())

    def __getattr__(self, name: str) -> Any:  # anything a newer IdGenerator adds
        return getattr(self.inner, name)


def _wrap_methods(
    original: Callable[[], int], original_random: Callable[[], bool]
) -> tuple[Callable[[], int], Callable[[], bool]]:
    hints = _HINTS

    def generate_trace_id() -> int:
        if not hints.seen:
            return original()
        _FROM_HINT.value = False
        return _trace_id_hint() or original()

    def is_trace_id_random() -> bool:
        if not hints.seen:
            return original_random()
        return _random_unless_hinted(original_random())

    return generate_trace_id, is_trace_id_random


def install_request_id_generator(provider: object) -> str:
    """Make ``provider``'s id generator honour a UUID ``X-Request-ID`` (idempotent).

    Where :mod:`otel_posthog.compat` can, the generator object is wrapped in place, so
    tracers created before this call (instrumentations often grab theirs early) use it
    too; otherwise the provider's ``id_generator`` becomes a :class:`RequestIdGenerator`
    around it, for tracers obtained afterwards. A provider built with
    ``id_generator=RequestIdGenerator(...)`` needs neither. Returns what was done.
    """
    return compat.wrap_id_generator(
        provider,
        lambda generator: isinstance(generator, RequestIdGenerator),
        RequestIdGenerator,
        _wrap_methods,
    )
