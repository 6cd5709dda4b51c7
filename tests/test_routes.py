"""One route-template form for every framework (otel_posthog.core.routes), and the mapping rules
that use it: settings match what events show; an escaped exception is a 500."""

from __future__ import annotations

import pytest

from otel_posthog.core.mapping import map_span
from otel_posthog.core.routes import endpoint_template, match_key
from otel_posthog.core.settings import Settings, resolve_settings
from otel_posthog.core.spanview import ExceptionInfo

from .test_mapping import view


@pytest.mark.parametrize(
    ("route", "endpoint"),
    [
        ("/api/chat/{chat_id}", "/api/chat/{chat_id}"),  # FastAPI / Starlette: unchanged
        ("/items/{id:int}", "/items/{id:int}"),
        ("/users/<int:user_id>", "/users/<int:user_id>"),  # Flask: unchanged
        ("users/<int:user_id>", "/users/<int:user_id>"),  # Django path(): a leading "/"
        ("", ""),
        (r"^articles/(?P<year>[0-9]{4})/$", "/articles/{year}/"),  # Django re_path
        (r"api/items/(?P<pk>\d+)/$", "/api/items/{pk}/"),  # include() drops the inner "^"
        (r"^blog/(?P<slug>[\w-]+)/(?P<n>\d+)\.html$", "/blog/{slug}/{n}.html"),
        (r"^page/(\d+)/(\d+)/$", "/page/{0}/{1}/"),  # unnamed groups: positional
        (r"^files/(?:(?P<name>[^/]+)/)?$", "/files/{name}/"),
        (r"^static/.*$", "/static/*"),
        (r"^v\d+/status/?$", "/v*/status/"),
        (r"^api/", "/api/"),
        (r"^api/<int:pk>/$", "/api/<int:pk>/"),  # path() inside a regex include
        (r"^broken/(?P<x>\d+$", r"/^broken/(?P<x>\d+$"),  # malformed: as written, with a "/"
    ],
)
def test_endpoint_template(route, endpoint):
    assert endpoint_template(route) == endpoint


@pytest.mark.parametrize(
    "written",
    ["/users/<int:user_id>", "users/<int:user_id>", "/users/<user_id>", "/users/{user_id}"]
    + ["/users/{user_id:int}", r"^users/(?P<user_id>\d+)$", " /users/<int:user_id> "],
)
def test_every_way_of_writing_a_route_has_one_match_key(written):
    assert match_key(written) == "/users/{user_id}"


def test_settings_are_normalised_at_resolve_time():
    s = resolve_settings(
        env={
            "OTEL_POSTHOG_SLOW_REQUEST_THRESHOLDS": "users/<int:user_id>=50,/x=1",
            "OTEL_POSTHOG_EXCLUDED_ROUTES": "health,^internal/(?P<name>\\w+)$",
        }
    )
    assert s.slow_request_thresholds == {"/users/{user_id}": 50, "/x": 1}
    assert s.excluded_routes == ("/health", "/internal/{name}")
    assert s.threshold_for("/users/<int:user_id>") == 50
    assert Settings(excluded_routes=("metrics",)).excluded_routes == ("/metrics",)


def test_django_route_settings_written_from_the_event_match():
    """Before: ``endpoint`` was ``users/<int:user_id>``; documented settings never matched."""
    django = {"http.request.method": "GET", "http.response.status_code": 200}
    span = view({**django, "url.path": "/users/7", "http.route": "users/<int:user_id>"}, 80.0)
    s = resolve_settings(env={"OTEL_POSTHOG_SLOW_REQUEST_THRESHOLDS": "/users/<int:user_id>=50"})
    events = map_span(span, s)
    assert [e["event"] for e in events] == ["api_request", "slow_request"]
    assert events[0]["properties"]["endpoint"] == "/users/<int:user_id>"
    assert events[1]["properties"]["threshold_ms"] == 50
    excluded = resolve_settings(env={"OTEL_POSTHOG_EXCLUDED_ROUTES": "/users/{user_id}"})
    assert map_span(span, excluded) == []
    regex = view({**django, "url.path": "/a/2024/", "http.route": r"^a/(?P<year>[0-9]{4})/$"})
    assert map_span(regex, s)[0]["properties"]["endpoint"] == "/a/{year}/"


def test_an_escaped_exception_is_a_500_never_null():
    """The span of an exception that escaped the instrumented layer has no status."""
    exc = ExceptionInfo("RuntimeError", "boom", "Traceback ...\nRuntimeError: boom")
    events = map_span(view({"http.request.method": "GET"}, exceptions=(exc,)), Settings())
    assert [e["event"] for e in events] == ["api_request", "api_error"]
    assert [e["properties"]["status_code"] for e in events] == [500, 500]
    assert events[1]["properties"]["error_type"] == "RuntimeError"


def test_a_request_with_neither_status_nor_exception_keeps_status_null():
    """The client went away before any response: documented as status_code null, no error."""
    events = map_span(view({"http.request.method": "GET"}), Settings())
    assert [e["event"] for e in events] == ["api_request"]
    assert events[0]["properties"]["status_code"] is None
