"""Bounded work before objects: count an OTLP body's spans, items and nesting on the wire.

A few bytes of protobuf or JSON can become hundreds of bytes of Python objects each (an
empty span is two bytes on the wire), and protobuf's parser has no count limits. So a body
is counted before it is parsed: :func:`check_protobuf` walks the protobuf wire format over
the OTLP trace message tree (field numbers from ``opentelemetry/proto``), :func:`check_json`
counts JSON values in the bytes, outside strings. Both stop at the first limit passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SPANS = 10_000
MAX_ITEMS = 1_000_000
MAX_VALUE_DEPTH = 8
MAX_CONCURRENT_DECODES = 2
DECODE_WAIT_S = 5.0


@dataclass(frozen=True)
class Limits:
    """Per-request limits of the receiver (see docs/collector.md)."""

    max_spans: int = MAX_SPANS  # spans per request (413)
    max_items: int = MAX_ITEMS  # protobuf fields / JSON values per request (413)
    max_value_depth: int = MAX_VALUE_DEPTH  # arrays/kvlists nested in an attribute value (400)
    concurrent_decodes: int = MAX_CONCURRENT_DECODES  # at once; others wait, then 429
    decode_wait_s: float = DECODE_WAIT_S  # how long a request waits for a decode slot


class DecodeError(ValueError):
    """The body is not an OTLP trace request at all (answered with 400)."""

    status = 400


class LimitExceeded(DecodeError):
    """The body passes a limit; ``status`` is 413 (too many) or 400 (too deep, malformed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def too_deep(limits: Limits) -> LimitExceeded:
    return LimitExceeded(400, f"attribute values nested deeper than {limits.max_value_depth}")


def too_many_spans(limits: Limits) -> LimitExceeded:
    return LimitExceeded(413, f"more than {limits.max_spans} spans in one request")


# -- protobuf ---------------------------------------------------------------------------------

# Message kinds of the OTLP trace tree, and for each the fields holding messages we descend
# into (length-delimited). Other fields are skipped by their wire type, but counted.
_REQUEST, _RESOURCE_SPANS, _RESOURCE, _SCOPE_SPANS, _SCOPE, _SPAN = range(6)
_EVENT, _LINK, _KEY_VALUE, _ANY_VALUE, _ARRAY, _KVLIST = range(6, 12)
_CHILDREN: dict[int, dict[int, int]] = {
    _REQUEST: {1: _RESOURCE_SPANS},  # ExportTraceServiceRequest.resource_spans
    _RESOURCE_SPANS: {1: _RESOURCE, 2: _SCOPE_SPANS},
    _RESOURCE: {1: _KEY_VALUE},  # attributes
    _SCOPE_SPANS: {1: _SCOPE, 2: _SPAN},
    _SCOPE: {3: _KEY_VALUE},  # InstrumentationScope.attributes
    _SPAN: {9: _KEY_VALUE, 11: _EVENT, 13: _LINK},
    _EVENT: {3: _KEY_VALUE},
    _LINK: {4: _KEY_VALUE},
    _KEY_VALUE: {2: _ANY_VALUE},
    _ANY_VALUE: {5: _ARRAY, 6: _KVLIST},
    _ARRAY: {1: _ANY_VALUE},
    _KVLIST: {1: _KEY_VALUE},
}


def _malformed(what: str) -> LimitExceeded:
    return LimitExceeded(400, f"not an OTLP ExportTraceServiceRequest: {what}")


class _Walker:
    def __init__(self, data: bytes, limits: Limits) -> None:
        self.data = data
        self.limits = limits
        self.items = 0
        self.spans = 0

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        data, result, shift = self.data, 0, 0
        while True:
            if pos >= end or shift > 63:
                raise _malformed("bad varint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos
            shift += 7

    def walk(self, pos: int, end: int, kind: int, value_depth: int) -> None:
        children, data, max_items = _CHILDREN[kind], self.data, self.limits.max_items
        while pos < end:
            byte = data[pos]
            if byte < 0x80:
                tag, pos = byte, pos + 1
            else:
                tag, pos = self.varint(pos, end)
            self.items += 1
            if self.items > max_items:
                raise LimitExceeded(413, f"more than {max_items} protobuf fields in one request")
            wire = tag & 7
            if wire == 2:
                length, pos = self.varint(pos, end)
                sub_end = pos + length
                if sub_end > end:
                    raise _malformed("truncated field")
                child = children.get(tag >> 3)
                if child is not None:
                    self.enter(pos, sub_end, child, value_depth)
                pos = sub_end
            elif wire == 0:
                _, pos = self.varint(pos, end)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                raise _malformed(f"unsupported wire type {wire}")
        if pos != end:
            raise _malformed("truncated field")

    def enter(self, pos: int, end: int, kind: int, value_depth: int) -> None:
        if kind == _SPAN:
            self.spans += 1
            if self.spans > self.limits.max_spans:
                raise too_many_spans(self.limits)
        elif kind == _ARRAY or kind == _KVLIST:
            value_depth += 1
            if value_depth > self.limits.max_value_depth:
                raise too_deep(self.limits)
        self.walk(pos, end, kind, value_depth)


def check_protobuf(body: bytes, limits: Limits) -> None:
    """Raise :class:`LimitExceeded` when an ``ExportTraceServiceRequest`` passes a limit."""
    _Walker(body, limits).walk(0, len(body), _REQUEST, 0)


# -- JSON -------------------------------------------------------------------------------------

# A string (unterminated ones run to the end, so a failed match never rescans), or a run
# of bytes outside strings.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.?[^"\\]*)*(?:"|\Z)|[^"]+', re.DOTALL)
_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


def check_json(body: bytes, limits: Limits) -> None:
    """Raise :class:`LimitExceeded` when a JSON body is not an object or has too many values.

    Values are counted without parsing: outside strings, every value but the first of a
    container follows a comma, and every container opens with a bracket. The count over
    the whole body (strings too) bounds it from above; only a body over the limit is
    scanned string by string. Nesting is bounded by ``json``'s own recursion limit and, in
    attribute values, by the decoder.
    """
    text = body[3:] if body.startswith(_BOM) else body
    if text.lstrip(_WHITESPACE)[:1] != b"{":
        raise LimitExceeded(400, "an ExportTraceServiceRequest must be a JSON object")
    limit = limits.max_items
    if body.count(b",") + body.count(b"[") + body.count(b"{") <= limit:
        return
    items = tokens = 0
    for n, match in enumerate(_TOKENS.finditer(body)):
        start, end = match.span()
        if body[start] != 0x22:  # outside strings
            counted = body.count(b",", start, end) + body.count(b"[", start, end)
            counted += body.count(b"{", start, end)
            items += counted
            tokens += counted + body.count(b":", start, end)
            if items > limit:
                raise LimitExceeded(413, f"more than {limit} JSON values in one request")
        # In JSON, consecutive strings are separated by a comma or colon.
        if n > 2 * tokens + 4:
            raise LimitExceeded(400, "not valid JSON: strings without separators")
