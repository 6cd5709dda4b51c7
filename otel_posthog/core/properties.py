"""Properties every event of one request shares, and the rules that make them.

The lower half of the pure core: request method and path, the person, session and request
id (:func:`_correlate`), route properties, sampling, event uuids, timestamps and size caps.
:mod:`otel_posthog.core.mapping` (request events) and :mod:`otel_posthog.core.genai` (LLM events)
both build on it. No I/O; the module state is caches only (the timestamp of the current
second, per-settings route properties) and the process's random sampling key.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .._version import __version__
from .headers import valid_uuid
from .routes import endpoint_template, match_key
from .settings import Settings
from .spanview import SpanView

Event = dict[str, Any]

API_REQUEST = "api_request"
API_ERROR = "api_error"
SLOW_REQUEST = "slow_request"
EXCEPTION = "$exception"
UNMATCHED = "(unmatched)"

# Namespace of the deterministic event uuids (uuid5 over trace id, span id, event name).
EVENT_NAMESPACE = uuid.UUID("6f1d3c0e-4b7a-5c2e-9a51-0d7e3f6a2b10")

# Attribute names, stable semconv first, then the default (old) generation.
_METHOD = ("http.request.method", "http.method")
_PERSON = ("enduser.id", "user.id", "posthogDistinctId")
_SESSION = ("session.id", "sessionId")
_CLIENT_IP = ("client.address", "http.client_ip", "net.peer.ip")  # new, old semconv, socket
_ENVIRONMENT = ("deployment.environment.name", "deployment.environment")
_MAX_PROPERTY_CHARS = 16_384
_MAX_TRACEBACK_CHARS = 100_000
_MAX_EVENT_NAME_CHARS = 200
# error text is scrubbed a little past where it is cut, so a secret across the cut is masked
_SCRUB_MARGIN = 2048
# PostHog rejects events over ~1 MB; properties are trimmed (largest first) below this.
MAX_EVENT_BYTES = 900_000
TRUNCATED = "[truncated: event too large]"
_RANDOM_BITS = (1 << 56) - 1
# On custom events these always come from the request; other properties are the app's.
_CORRELATION_KEYS = (
    "request_id",
    "$trace_id",
    "$span_id",
    "session_id",
    "$session_id",
    "$window_id",
    "client_request_id",
    "response_request_id",
    "$process_person_profile",
    "$ip",
    "$geoip_disable",
)


def _first(attrs: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def request_method(attrs: Mapping[str, Any]) -> str | None:
    method = _first(attrs, _METHOD)
    return str(method).upper() if method is not None else None


def request_path(attrs: Mapping[str, Any]) -> str:
    """The concrete path, never with a query string (it may hold secrets)."""
    path = attrs.get("url.path")
    if not path:
        target = attrs.get("http.target")
        if target:
            path = str(target)
        else:
            url = _first(attrs, ("url.full", "http.url"))
            if url:
                rest = str(url).split("://", 1)[-1]
                path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return str(path or "/").split("?", 1)[0].split("#", 1)[0]


# Unset OTEL_POSTHOG_SAMPLING_KEY: one random key per process (decisions agree within it).
_PROCESS_SAMPLING_KEY = secrets.token_bytes(32)
_SAMPLING_KEY = "_otel_posthog_sampling_key"
_TRACE_BITS = (1 << 128) - 1


def sampling_key(settings: Settings) -> bytes:
    """The key of the sampling hash: ``OTEL_POSTHOG_SAMPLING_KEY`` (hashed), else the
    process's random key."""
    key = settings.__dict__.get(_SAMPLING_KEY)
    if key is None:
        raw = settings.sampling_key
        key = hashlib.sha256(raw.encode()).digest() if raw else _PROCESS_SAMPLING_KEY
        object.__setattr__(settings, _SAMPLING_KEY, key)  # a frozen dataclass: not a field
    return key


def sampled(trace_id: int, rate: float, key: bytes | None = None) -> bool:
    """Same decision for every event of one trace, and for every service with the same key.

    A keyed hash of the trace id: a client that chooses its trace id (``traceparent``,
    a UUID ``X-Request-ID``) cannot choose or predict the outcome.
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(
        (trace_id & _TRACE_BITS).to_bytes(16, "big"),
        digest_size=7,
        key=key if key is not None else _PROCESS_SAMPLING_KEY,
    ).digest()
    return int.from_bytes(digest, "big") < int(rate * (1 << 56))


_NAMESPACE_SHA1 = hashlib.sha1(EVENT_NAMESPACE.bytes, usedforsecurity=False)
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}
# The request events' kind, in the two free bits of the UUID variant nibble (10xx).
_KIND_NIBBLE = {API_REQUEST: "8", API_ERROR: "9", SLOW_REQUEST: "a", EXCEPTION: "b"}
_SPAN_BITS = (1 << 64) - 1


def event_uuid(trace_id: int, span_id: int, name: str, index: int | None = None) -> str:
    """The event's deterministic uuid: the same span always gives the same uuids.

    Request events (``api_request``, ``api_error``, ``slow_request``, ``$exception``) get
    a UUIDv8 (RFC 9562) laid out from the trace id's 56 random bits (the rightmost, as
    for sampling), the span id's 64 and the event kind: 120 random bits, as unique as a
    UUIDv4, with no hashing on the export path. ``capture()`` events (any name, an
    index) get ``uuid5(EVENT_NAMESPACE, "<trace>:<span>:<name>[:<index>]")``.
    """
    nibble = _KIND_NIBBLE.get(name) if index is None else None
    if nibble is not None:
        # bytes -> hex: a format spec on an int runs the general formatter
        t = (trace_id & _RANDOM_BITS).to_bytes(7, "big").hex()
        sp = (span_id & _SPAN_BITS).to_bytes(8, "big").hex()
        return f"{t[:8]}-{t[8:12]}-8{t[12:]}{sp[0]}-{nibble}{sp[1:4]}-{sp[4:]}"
    key = f"{trace_id:032x}:{span_id:016x}:{name}"
    if index is not None:
        key += f":{index}"
    sha = _NAMESPACE_SHA1.copy()
    sha.update(key.encode())
    h = sha.hexdigest()
    # version nibble 5, then the RFC 4122 variant bits in the next group's first nibble
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_LAST_SECOND: tuple[int, str] = (-1, "")


def iso_timestamp(ns: int) -> str:
    """``datetime.fromtimestamp(..., tz=timezone.utc).isoformat()`` of a nanosecond time,
    rounded to the nearest microsecond in integers, the date and time of day formatted
    once per second."""
    global _LAST_SECOND
    second, micros = divmod((ns + 500) // 1000, 1_000_000)
    last = _LAST_SECOND
    if last[0] == second:
        prefix = last[1]
    else:
        prefix = datetime.fromtimestamp(second, tz=timezone.utc).isoformat()[:-6]
        _LAST_SECOND = (second, prefix)
    return f"{prefix}.{micros:06d}+00:00" if micros else f"{prefix}+00:00"


def truncate_tail(text: str, limit: int) -> str:
    """Keep the end of a traceback: the innermost frames and the exception line."""
    if len(text) <= limit:
        return text
    if limit <= 4:
        return text[len(text) - limit :] if limit else ""
    return "...\n" + text[len(text) - (limit - 4) :]


def _cap(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_PROPERTY_CHARS:
        return value[:_MAX_PROPERTY_CHARS]
    return value


def safe_value(value: Any) -> Any:
    """An app-supplied property value made JSON-safe and bounded.

    Long strings are cut; non-finite floats and objects JSON cannot hold become text;
    containers whose JSON passes the cap (or nest too deep) become their cut JSON text.
    """
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _cap(value)
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError):
        try:
            text = str(value)
        except Exception:
            text = f"<{type(value).__name__}>"
        return _cap(text)
    if len(text) > _MAX_PROPERTY_CHARS:
        return text[:_MAX_PROPERTY_CHARS]
    return json.loads(text, parse_constant=str)


def _json_size(value: Any) -> int:
    if value is None or isinstance(value, (bool, int, float)):
        return 24
    if isinstance(value, str) and value.isascii():
        return len(value) + 2 + value.count('"') + value.count("\\")
    return len(json.dumps(value, default=str))


_PLAIN_TYPES = frozenset((str, int, float, bool, type(None)))


def fit_properties(props: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Trim the largest properties (never those in ``keep``) until the event fits the limit."""
    values = props.values()
    # runs for every event: the rough bound in C-level passes (other types: exact sizes)
    if all(map(_PLAIN_TYPES.__contains__, map(type, values))):
        rough = 64 * len(props) + 6 * sum(map(len, props))
        rough += 6 * sum(map(len, filter(str.__instancecheck__, values)))
        if rough < MAX_EVENT_BYTES:
            return props
    sizes = {k: len(json.dumps(k)) + _json_size(v) for k, v in props.items()}
    total = sum(sizes.values())
    if total <= MAX_EVENT_BYTES:
        return props
    trimmed = []
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if total <= MAX_EVENT_BYTES:
            break
        if key in keep:
            continue
        total -= sizes[key]
        del props[key]
        trimmed.append(key)
    props["$otel_posthog_truncated"] = _cap(",".join(trimmed))
    return props


def _to_int(status: Any) -> int | None:
    try:
        return int(status) if status is not None and status != "" else None
    except (TypeError, ValueError, OverflowError):
        return None


# Per settings: (route, method, service, environment) -> the properties every request to
# that route shares, and its slow threshold. Bounded: apps have a bounded set of routes
# (an unmatched path maps to one "(unmatched)" endpoint).
_ROUTES_KEY = "_otel_posthog_routes"
_MAX_ROUTES = 1024


def _route_properties(
    settings: Settings, resource: Mapping[str, Any], route: Any, method: str
) -> tuple[dict[str, Any], float, bool]:
    """endpoint, method, environment, service, source, $lib, $lib_version (a dict the
    caller copies), the endpoint's slow threshold and whether it is excluded: built once
    per route and service. The endpoint is the route in the one template form of
    :mod:`otel_posthog.core.routes`; thresholds and exclusions compare its match key."""
    service = resource.get("service.name")
    env = settings.environment or _first(resource, _ENVIRONMENT)
    cache: dict[tuple[Any, ...], tuple[dict[str, Any], float, bool]] | None
    cache = settings.__dict__.get(_ROUTES_KEY)
    if cache is None:
        cache = {}
        object.__setattr__(settings, _ROUTES_KEY, cache)  # a frozen dataclass: not a field
    # only plain strings are cached: 1 == 1.0 == True would share an entry
    cacheable = (
        (route is None or type(route) is str)
        and (service is None or type(service) is str)
        and (env is None or type(env) is str)
    )
    key = (route, method, service, env)
    found = cache.get(key) if cacheable else None
    if found is None:
        endpoint = _cap(endpoint_template(str(route))) if route else UNMATCHED
        props = {
            "endpoint": endpoint,
            "method": _cap(method),
            "environment": _cap(str(env) if env is not None else "development"),
            "service": safe_value(service),
            "source": "backend",
            "$lib": "otel-posthog",
            "$lib_version": __version__,
        }
        route_key = match_key(endpoint) if route else UNMATCHED
        found = (
            props,
            settings.slow_request_thresholds.get(route_key, settings.slow_request_threshold_ms),
            bool(route) and route_key in settings.excluded_routes,
        )
        if cacheable:
            if len(cache) >= _MAX_ROUTES:
                cache.clear()
            cache[key] = found
    return found


ANONYMOUS_PREFIX = "request:"


def anonymous_distinct_id(request_id: str) -> str:
    """The distinct_id of an anonymous request: ``request:<request_id>``. Namespaced, so a
    client's ``X-Request-ID: user_12345`` never lands on the person ``user_12345``."""
    return ANONYMOUS_PREFIX + request_id


def _correlate(view: SpanView, settings: Settings, props: dict[str, Any]) -> str:
    """Add the properties every event of one request shares; returns its distinct_id."""
    attrs = view.attributes
    trace_id, span_id = view.trace_id, view.span_id
    try:  # bytes -> hex: a format spec on an int runs the general formatter
        trace_hex, span_hex = trace_id.to_bytes(16, "big").hex(), span_id.to_bytes(8, "big").hex()
    except OverflowError:  # negative or too long: not a valid id, formatted as it is
        trace_hex, span_hex = f"{trace_id:032x}", f"{span_id:016x}"
    facts = view.facts
    rid = trace_hex
    person: Any = None
    identified = True
    session: Any = None
    client_ip: Any = None
    if facts is not None:
        if facts.request_id:
            rid = facts.request_id
        person = facts.identified_id or facts.jwt_distinct_id or facts.baggage_distinct_id
        if not person and facts.header_distinct_id:
            person, identified = facts.header_distinct_id, False
        session = facts.session_id
        client_ip = facts.client_ip
    if not person:
        found = _first(attrs, _PERSON)
        if found is not None:
            person = _cap(str(found))[:1000]
        else:
            person, identified = anonymous_distinct_id(rid), False
    props["request_id"] = rid
    props["$trace_id"] = trace_hex
    props["$span_id"] = span_hex
    if session is None:
        session = _first(attrs, _SESSION)
    if session is not None:
        session = str(session)
        if valid_uuid(session):
            props["session_id"] = session
            props["$session_id"] = session
    if facts is not None:
        if facts.window_id and valid_uuid(facts.window_id):
            props["$window_id"] = facts.window_id
        if facts.client_request_id and facts.client_request_id != rid:
            props["client_request_id"] = facts.client_request_id
        if facts.response_request_id and facts.response_request_id != rid:
            props["response_request_id"] = facts.response_request_id
    if not identified:
        props["$process_person_profile"] = False
    if settings.capture_ip:
        client_ip = client_ip or _first(attrs, _CLIENT_IP)
        if client_ip:
            props["$ip"] = _cap(str(client_ip))
        else:
            props["$geoip_disable"] = True
    else:
        props["$geoip_disable"] = True
    return str(person)


def _route(view: SpanView) -> Any:
    """The request's route template: the bridge's resolved one, else ``http.route``."""
    facts = view.facts
    if facts is not None and facts.route:
        return facts.route
    return view.attributes.get("http.route")


def _base(view: SpanView, settings: Settings) -> tuple[dict[str, Any], str]:
    """Properties every event of one request shares, and its distinct_id."""
    attrs = view.attributes
    method = request_method(attrs) or ""
    props = dict(_route_properties(settings, view.resource, _route(view), method)[0])
    props["path"] = _cap(request_path(attrs))
    return props, _correlate(view, settings, props)
