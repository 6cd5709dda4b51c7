"""map_span's plain ``http.target`` shortcut gives request_path's path for every input."""

from __future__ import annotations

import itertools

from otel_posthog.core.mapping import map_span
from otel_posthog.core.properties import _cap, request_path
from otel_posthog.core.settings import resolve_settings
from otel_posthog.core.spanview import SpanView

_PATHS = (None, "", "/p", "/p?q=1", "/p#f", 5)
_TARGETS = (None, "", "/t", "/t?token=s", "/t#f", "/t?a#b", 7)
_URLS = (None, "http://h/u?token=s", "http://h")


def test_path_property_is_request_path() -> None:
    settings = resolve_settings(env={}, api_key="phc_test")
    for path, target, url in itertools.product(_PATHS, _TARGETS, _URLS):
        attrs = {"http.method": "GET", "http.status_code": 200}
        for key, value in (("url.path", path), ("http.target", target), ("url.full", url)):
            if value is not None:
                attrs[key] = value
        view = SpanView(
            name="GET",
            kind="server",
            trace_id=1,
            span_id=2,
            parent_span_id=None,
            parent_is_remote=False,
            start_ns=1,
            end_ns=2,
            attributes=attrs,
            resource={"service.name": "api"},
        )
        (event,) = map_span(view, settings)
        assert event["properties"]["path"] == _cap(request_path(attrs)), attrs
