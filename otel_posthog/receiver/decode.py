"""OTLP trace requests (protobuf or JSON) become neutral :class:`SpanView` objects.

JSON is read by hand, per the OTLP/JSON rules: ``traceId``/``spanId`` are hex (protobuf's
``json_format`` would read them as base64 and corrupt them), 64-bit integers may be
strings or numbers, enums numbers (names accepted too), unknown fields are ignored. A span
that cannot be used is rejected and counted; the others still go through.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from ..core.genai import is_genai
from ..core.spanview import ExceptionInfo, GenAIFacts, SpanView
from .limits import (
    DecodeError,
    LimitExceeded,
    Limits,
    check_json,
    check_protobuf,
    too_deep,
    too_many_spans,
)
from .spans import (
    OTLP_KIND_NAMES,
    STATUS_NAMES,
    SpanRejected,
    build_view,
    exception_info,
    span_ids,
)

_HEX = re.compile(r"[0-9a-fA-F]*")


__all__ = ["DecodeError", "Decoded", "LimitExceeded", "decode_json", "decode_protobuf"]
DEFAULT_LIMITS = Limits()


@dataclass
class Decoded:
    views: list[SpanView] = field(default_factory=list)
    rejected: int = 0
    first_error: str = ""

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected += count
        self.first_error = self.first_error or reason


# -- protobuf ----------------------------------------------------------------------------


def _pb_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(_pb_value(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which)


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in kvs}


def decode_protobuf(body: bytes, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    """The spans of an ``ExportTraceServiceRequest``, counted on the wire before parsing."""
    check_protobuf(body, limits)
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (ProtobufDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    out = Decoded()
    for rs in request.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                try:
                    ids = span_ids(span.trace_id, span.span_id, span.parent_span_id)
                except SpanRejected as exc:
                    out.reject(str(exc))
                    continue
                exceptions = tuple(
                    exception_info(_pb_attrs(ev.attributes))
                    for ev in span.events
                    if ev.name == "exception"
                )
                view = build_view(
                    name=span.name,
                    kind_number=span.kind,
                    ids=ids,
                    flags=span.flags,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    attributes=_pb_attrs(span.attributes),
                    resource=resource,
                    exceptions=exceptions,
                    status_code=span.status.code,
                )
                if is_genai(view.attributes):
                    view.genai = GenAIFacts(
                        status_message=span.status.message,
                        events=tuple(
                            (ev.name, _pb_attrs(ev.attributes))
                            for ev in span.events
                            if ev.name.startswith("gen_ai.")
                        ),
                    )
                out.views.append(view)
    return out


# -- JSON --------------------------------------------------------------------------------


def _get(obj: Mapping[str, Any], camel: str, snake: str | None = None) -> Any:
    value = obj.get(camel)
    if value is None and snake is not None:
        value = obj.get(snake)
    return value


def _list(value: Any, what: str, error: Callable[[str], Exception]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise error(f"{what} must be an array")
    return value


def _int(value: Any, what: str) -> int:
    """A 64-bit integer: a JSON number or a decimal string."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise SpanRejected(f"{what} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise SpanRejected(f"{what} must be an integer")


def _enum(value: Any, names: Mapping[str, int], what: str) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    return _int(value, what)


def _hex(value: Any, what: str) -> bytes:
    if value is None or value == "":
        return b""
    if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) % 2:
        raise SpanRejected(f"{what} must be a hex string")
    return bytes.fromhex(value)


def _json_value(value: Any, depth: int, limits: Limits) -> Any:
    if not isinstance(value, dict):
        raise SpanRejected("attribute value must be an AnyValue object")
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return _int(value["intValue"], "intValue")
    if "doubleValue" in value:
        raw = value["doubleValue"]
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise SpanRejected("doubleValue must be a number") from None
    if "arrayValue" in value or "kvlistValue" in value:
        if depth >= limits.max_value_depth:
            raise too_deep(limits)
        if "arrayValue" in value:
            values = _container(value["arrayValue"], "arrayValue")
            items = _list(values, "arrayValue", SpanRejected)
            return tuple(_json_value(v, depth + 1, limits) for v in items)
        return _json_attrs(_container(value["kvlistValue"], "kvlistValue"), limits, depth + 1)
    if "bytesValue" in value:
        return str(value["bytesValue"])
    return None


def _container(value: Any, what: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpanRejected(f"{what} must be an object")
    return value.get("values")


def _json_attrs(raw: Any, limits: Limits, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in _list(raw, "attributes", SpanRejected):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise SpanRejected("attribute must be an object with a string key")
        out[kv["key"]] = _json_value(kv.get("value") or {}, depth, limits)
    return out


def _json_span(span: Any, resource: Mapping[str, Any], limits: Limits) -> SpanView:
    if not isinstance(span, dict):
        raise SpanRejected("span must be an object")
    ids = span_ids(
        _hex(_get(span, "traceId", "trace_id"), "traceId"),
        _hex(_get(span, "spanId", "span_id"), "spanId"),
        _hex(_get(span, "parentSpanId", "parent_span_id"), "parentSpanId"),
    )
    exceptions: list[ExceptionInfo] = []
    for ev in _list(span.get("events"), "events", SpanRejected):
        if isinstance(ev, dict) and ev.get("name") == "exception":
            exceptions.append(exception_info(_json_attrs(ev.get("attributes"), limits)))
    status = span.get("status") or {}
    if not isinstance(status, dict):
        raise SpanRejected("status must be an object")
    name = span.get("name", "")
    view = build_view(
        name=name if isinstance(name, str) else str(name),
        kind_number=_enum(span.get("kind"), OTLP_KIND_NAMES, "kind"),
        ids=ids,
        flags=_int(span.get("flags"), "flags"),
        start_ns=_int(_get(span, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"),
        end_ns=_int(_get(span, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"),
        attributes=_json_attrs(span.get("attributes"), limits),
        resource=resource,
        exceptions=tuple(exceptions),
        status_code=_enum(status.get("code"), STATUS_NAMES, "status.code"),
    )
    if is_genai(view.attributes):
        events = []
        for ev in _list(span.get("events"), "events", SpanRejected):
            if isinstance(ev, dict) and str(ev.get("name", "")).startswith("gen_ai."):
                events.append((str(ev["name"]), _json_attrs(ev.get("attributes"), limits)))
        message = status.get("message")
        view.genai = GenAIFacts(
            status_message=message if isinstance(message, str) else "", events=tuple(events)
        )
    return view


def _count_spans(scope_spans: list[Any]) -> int:
    return sum(
        len(ss["spans"])
        for ss in scope_spans
        if isinstance(ss, dict) and isinstance(ss.get("spans"), list)
    )


def decode_json(body: bytes, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    """The spans of an OTLP/JSON request, its values counted in the bytes before parsing."""
    check_json(body, limits)
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise DecodeError("an ExportTraceServiceRequest must be a JSON object")
    return _json_request(request, limits)


def _json_request(request: dict[str, Any], limits: Limits) -> Decoded:
    out = Decoded()
    resource_spans = _list(
        _get(request, "resourceSpans", "resource_spans"), "resourceSpans", DecodeError
    )
    spans = 0
    for rs in resource_spans:
        if not isinstance(rs, dict):
            raise DecodeError("resourceSpans entries must be objects")
        spans += _count_spans(
            _list(_get(rs, "scopeSpans", "scope_spans"), "scopeSpans", DecodeError)
        )
    if spans > limits.max_spans:
        raise too_many_spans(limits)
    for rs in resource_spans:
        scope_spans = _list(_get(rs, "scopeSpans", "scope_spans"), "scopeSpans", DecodeError)
        try:
            res = rs.get("resource") or {}
            resource = _json_attrs(res.get("attributes") if isinstance(res, dict) else None, limits)
        except SpanRejected as exc:
            out.reject(f"resource: {exc}", _count_spans(scope_spans))
            continue
        for ss in scope_spans:
            if not isinstance(ss, dict):
                raise DecodeError("scopeSpans entries must be objects")
            for span in _list(ss.get("spans"), "spans", DecodeError):
                try:
                    out.views.append(_json_span(span, resource, limits))
                except SpanRejected as exc:
                    out.reject(str(exc))
    return out
