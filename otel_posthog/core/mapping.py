"""The pure core: a finished :class:`SpanView` becomes PostHog events.

Every rule about which span becomes which event lives here (request events) and in
:mod:`otel_posthog.core.genai` (LLM events), on the shared properties of
:mod:`otel_posthog.core.properties`. No I/O: the SDK span processor, the launcher exporter and
the OTLP receiver all call :func:`map_span`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from . import genai as _genai
from .properties import (
    _CORRELATION_KEYS,
    _MAX_EVENT_NAME_CHARS,
    _MAX_PROPERTY_CHARS,
    _MAX_TRACEBACK_CHARS,
    _SCRUB_MARGIN,
    API_ERROR,
    API_REQUEST,
    EVENT_NAMESPACE,
    EXCEPTION,
    MAX_EVENT_BYTES,
    SLOW_REQUEST,
    Event,
    _base,
    _cap,
    _correlate,
    _route_properties,
    _to_int,
    event_uuid,
    fit_properties,
    iso_timestamp,
    request_path,
    safe_value,
    sampled,
    sampling_key,
    truncate_tail,
)
from .scrub import scrubber
from .settings import Settings
from .spanview import SERVER, CustomEvent, ExceptionInfo, SpanView

__all__ = [
    "API_ERROR",
    "API_REQUEST",
    "EXCEPTION",
    "SLOW_REQUEST",
    "EVENT_NAMESPACE",
    "MAX_EVENT_BYTES",
    "Event",
    "event_uuid",
    "iso_timestamp",
    "sampled",
    "sampling_key",
    "truncate_tail",
    "map_span",
    "scrub_exception",
    "map_custom_events",
    "custom_event",
    "parse_python_frames",
    "exception_properties",
]


# below this many nanoseconds a duration's float is too close to its value to round
# differently from the integer: only an exact tie (500 ns past a microsecond) can
_EXACT_NS = 10**15


def map_span(view: SpanView, settings: Settings) -> list[Event]:
    """Map one finished span to its PostHog events (empty when it is not a request).

    Runs for every request; written for speed: attribute lookups once, per-route
    properties cached, dict copies instead of property-by-property building.
    """
    if view.kind != SERVER or not (view.parent_span_id is None or view.parent_is_remote):
        if view.genai is not None:  # a GenAI span (the adapters set genai): $ai_* events
            return _genai.map_genai_span(view, settings)
        return []  # one request, one event: local-root SERVER spans with an HTTP method
    attrs = view.attributes
    method = attrs.get("http.request.method") or attrs.get("http.method")
    if not method:
        # not an HTTP request (a WebSocket connection): no request events, but the
        # capture() events made during it are sent
        facts = view.facts
        return map_custom_events(view, settings) if facts and facts.custom_events else []
    method = method.upper() if type(method) is str else str(method).upper()
    if method == "OPTIONS":
        return []
    resource = view.resource
    if settings.services and resource.get("service.name") not in settings.services:
        return []
    facts = view.facts
    route = facts.route if facts is not None and facts.route else attrs.get("http.route")
    path = attrs.get("url.path")
    if not path or type(path) is not str or "?" in path or "#" in path:
        target = None if path else attrs.get("http.target")
        if target and type(target) is str and "?" not in target and "#" not in target:
            path = target  # what request_path gives for a plain http.target, without its splits
        else:
            path = request_path(attrs)
    shared, threshold, route_excluded = _route_properties(settings, resource, route, method)
    if route_excluded or path in settings.excluded_routes:
        return []
    props = dict(shared)
    props["path"] = _cap(path)
    person = _correlate(view, settings, props)
    status = attrs.get("http.response.status_code")
    if status is None or status == "":
        status = attrs.get("http.status_code")
    if type(status) is not int:
        status = _to_int(status)
    end_ns = view.end_ns
    elapsed = end_ns - view.start_ns
    micros, rest = divmod(elapsed, 1000) if type(elapsed) is int else (0, 500)
    if 0 <= elapsed < _EXACT_NS and rest != 500:
        # round(elapsed / 1e6, 3) without a float round (only a tie depends on the float)
        duration_ms = (micros + (rest > 500)) / 1000
    else:
        duration_ms = round(max(elapsed, 0) / 1e6, 3)
    exc = view.exceptions[-1] if view.exceptions else None
    if status is None and exc is not None:
        status = 500  # an exception escaped the instrumented layer: the server answers 500
    error = exc is not None or (status is not None and status >= 500)
    slow = duration_ms > threshold
    customs = facts.custom_events if facts is not None else ()
    base = dict(props) if error or customs else props  # without status and duration
    props["status_code"] = status
    props["response_time_ms"] = duration_ms
    request_props = props
    ts = iso_timestamp(end_ns)
    trace_id, span_id = view.trace_id, view.span_id
    events: list[Event] = []
    rate = settings.api_request_sample_rate
    if rate >= 1.0 or sampled(trace_id, rate, sampling_key(settings)):
        rollup = facts.rollup if facts is not None else None
        if rollup or rate < 1.0 or error or slow:
            props = dict(request_props)  # the others copy request_props: keep it clean
            if rollup:
                props.update(rollup)
            if rate < 1.0:
                props["sample_rate"] = rate
        # request events need no size check: every value is capped (see
        # test_request_events_fit_without_trimming_at_every_cap)
        events.append(
            {
                "event": API_REQUEST,
                "distinct_id": person,
                "properties": props,
                "timestamp": ts,
                "uuid": event_uuid(trace_id, span_id, API_REQUEST),
            }
        )

    if error:
        props = dict(request_props)
        if exc is not None and settings.scrub_secrets:
            exc = scrub_exception(exc, settings)
        if exc is not None:
            props["error_type"] = _cap(exc.type)
            props["error_message"] = _cap(exc.message)
            props["traceback"] = truncate_tail(
                exc.stacktrace, min(settings.traceback_max_chars, _MAX_TRACEBACK_CHARS)
            )
        else:
            props["error_type"] = f"HTTP {status}"
            props["error_message"] = _http_phrase(status)
        events.append(_event(API_ERROR, person, fit_properties(props, _CORRELATION_KEYS), ts, view))
        if settings.exception_events:
            exc_props = fit_properties(exception_properties(base, props, exc), _CORRELATION_KEYS)
            events.append(_event(EXCEPTION, person, exc_props, ts, view))

    if slow:
        props = dict(request_props)
        props["duration_ms"] = duration_ms
        props["threshold_ms"] = threshold
        events.append(_event(SLOW_REQUEST, person, props, ts, view))

    if customs:
        events.extend(custom_event(view, c, base, person) for c in customs)
    return events


def scrub_exception(exc: ExceptionInfo, settings: Settings) -> ExceptionInfo:
    """``exc`` with the secrets of its message and traceback masked (see ``scrub.py``).

    Only the parts that can be kept are scrubbed (the message's head, the traceback's
    tail), each with a margin past the cut.
    """
    scrub = scrubber(settings.scrub_patterns)
    message = exc.message
    if isinstance(message, str):
        message = scrub(message[: _MAX_PROPERTY_CHARS + _SCRUB_MARGIN])
    stack = exc.stacktrace
    if isinstance(stack, str) and stack:
        keep = _MAX_TRACEBACK_CHARS
        if not settings.exception_events:  # only the api_error's tail is kept
            keep = min(settings.traceback_max_chars, _MAX_TRACEBACK_CHARS)
        stack = scrub(stack[-(keep + _SCRUB_MARGIN) :])
    return ExceptionInfo(exc.type, message, stack)


def _event(name: str, person: str, props: dict[str, Any], ts: str, view: SpanView) -> Event:
    return {
        "event": name,
        "distinct_id": person,
        "properties": props,
        "timestamp": ts,
        "uuid": event_uuid(view.trace_id, view.span_id, name),
    }


def map_custom_events(view: SpanView, settings: Settings) -> list[Event]:
    """Only the ``capture()`` events of a request whose span already ended (late captures)."""
    if view.facts is None or not view.facts.custom_events:
        return []
    base, person = _base(view, settings)
    return [custom_event(view, c, base, person) for c in view.facts.custom_events]


def custom_event(
    view: SpanView, custom: CustomEvent, base: Mapping[str, Any], person: str
) -> Event:
    """An ``otel_posthog.capture()`` event: the app's properties plus the request's correlation."""
    props = dict(base)
    props.update(
        (str(k)[:_MAX_PROPERTY_CHARS], safe_value(v)) for k, v in custom.properties.items()
    )
    props.update((k, base[k]) for k in _CORRELATION_KEYS if k in base)
    if "$process_person_profile" not in base:
        props.pop("$process_person_profile", None)
    return {
        "event": str(custom.event)[:_MAX_EVENT_NAME_CHARS],
        "distinct_id": person,
        "properties": fit_properties(props, _CORRELATION_KEYS),
        "timestamp": iso_timestamp(custom.timestamp_ns),
        "uuid": event_uuid(view.trace_id, view.span_id, custom.event, custom.index),
    }


def _http_phrase(status: int | None) -> str:
    try:
        return HTTPStatus(status).phrase if status is not None else ""
    except ValueError:
        return ""


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')


def parse_python_frames(stacktrace: str) -> list[dict[str, Any]]:
    """Frames of a Python traceback text, outermost first, in PostHog's raw frame shape."""
    frames: list[dict[str, Any]] = []
    lines = stacktrace.splitlines()
    for i, line in enumerate(lines):
        match = _FRAME.match(line)
        if not match:
            continue
        filename = match.group("file")
        frame: dict[str, Any] = {
            "platform": "python",
            "filename": filename,
            "abs_path": filename,
            "function": (match.group("func") or "<unknown>").strip(),
            "lineno": int(match.group("line")),
            "in_app": "site-packages" not in filename and not filename.startswith("<"),
        }
        if i + 1 < len(lines) and not _FRAME.match(lines[i + 1]):
            context = lines[i + 1].strip()
            if context and not context.startswith(("Traceback", "During handling")):
                frame["context_line"] = context
        frames.append(frame)
    return frames


def exception_properties(
    base: Mapping[str, Any], error_props: Mapping[str, Any], exc: Any
) -> dict[str, Any]:
    """Properties of a PostHog ``$exception`` event for Error Tracking."""
    entry: dict[str, Any] = {
        "type": error_props["error_type"],
        "value": error_props.get("error_message", ""),
        "mechanism": {"type": "generic", "handled": False, "synthetic": exc is None},
    }
    if exc is not None and exc.stacktrace:
        entry["stacktrace"] = {"type": "raw", "frames": parse_python_frames(exc.stacktrace)}
    props = dict(base)
    props.update(
        {
            "$exception_list": [entry],
            "$exception_level": "error",
            "endpoint": error_props.get("endpoint"),
            "status_code": error_props.get("status_code"),
        }
    )
    return props
