"""Trace and span ids formatted from bytes give the format spec's text for every int."""

from __future__ import annotations

import random

from otel_posthog.core.properties import _correlate, event_uuid
from otel_posthog.core.settings import resolve_settings
from otel_posthog.core.spanview import SpanView

_EDGES = [0, 1, 2**56 - 1, 2**56, 2**64 - 1, 2**64, 2**128 - 1, 2**128, 2**200, -1, -(2**70)]


def _ids() -> list[tuple[int, int]]:
    rng = random.Random(14)
    pairs = [(t, s) for t in _EDGES for s in _EDGES]
    pairs += [(rng.getrandbits(128), rng.getrandbits(64)) for _ in range(2000)]
    return pairs


def _reference_uuid(trace_id: int, span_id: int, nibble: str) -> str:
    t = f"{trace_id & (2**56 - 1):014x}"
    sp = f"{span_id & (2**64 - 1):016x}"
    return f"{t[:8]}-{t[8:12]}-8{t[12:]}{sp[0]}-{nibble}{sp[1:4]}-{sp[4:]}"


def test_event_uuid_matches_the_format_spec_layout() -> None:
    nibble = event_uuid(1, 1, "api_request").split("-")[3][0]
    for trace_id, span_id in _ids():
        assert event_uuid(trace_id, span_id, "api_request") == _reference_uuid(
            trace_id, span_id, nibble
        )


def test_correlate_ids_match_the_format_spec() -> None:
    settings = resolve_settings(api_key="phc_test")
    for trace_id, span_id in _ids():
        view = SpanView(
            name="GET /",
            kind="server",
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=None,
            parent_is_remote=False,
            start_ns=1,
            end_ns=2,
            attributes={},
            resource={},
        )
        props: dict = {}
        _correlate(view, settings, props)
        assert props["$trace_id"] == f"{trace_id:032x}"
        assert props["$span_id"] == f"{span_id:016x}"
        assert props["request_id"] == f"{trace_id:032x}"
