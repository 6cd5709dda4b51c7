"""Flask and Django under gunicorn, zero code: ``opentelemetry-instrument`` with the
``posthog`` distro, real HTTP, events delivered by the flush when the worker exits on SIGTERM.

Each app sets its own ``X-Request-ID`` on ``/own-id`` (a Flask ``after_request`` hook, a
Django middleware); settings are written as the README says (from the event's endpoint,
or as the framework writes the route).
"""

from __future__ import annotations

from .apps.django_site.urls import APP_REQUEST_ID as DJANGO_REQUEST_ID
from .apps.flask_app import APP_REQUEST_ID as FLASK_REQUEST_ID
from .framework_support import (
    REQUEST_EVENTS,
    framework_env,
    get,
    one,
    request_ids,
    stop_and_collect,
    token,
    traceparent,
)
from .helpers import VENV_BIN, AppProcess
from .launcher_support import launcher_argv


def gunicorn_argv(app: str) -> list[str]:
    return launcher_argv(
        str(VENV_BIN / "gunicorn"), "-w", "1", "--no-control-socket", "-b", "127.0.0.1:{port}", app
    )


def _journey(app: AppProcess, user: str, paths: list[str]) -> dict[str, object]:
    """The same requests against either app."""
    auth = {"Authorization": f"Bearer {token(user)}"}
    out = {path: get(app, path, headers=auth) for path in paths}
    out["own-id"] = get(app, "/own-id")
    trace_id, tp = traceparent()
    out["own-id traced"] = get(app, "/own-id", headers={"traceparent": tp})
    out["trace_id"] = trace_id
    out["boom"] = get(app, "/boom", headers=auth)
    return out


def _common_asserts(events, responses, user: str, app_request_id: str) -> None:
    # one X-Request-ID, the app's own; without a traceparent it is the events' request_id
    assert request_ids(responses["own-id"]) == [app_request_id]
    assert request_ids(responses["own-id traced"]) == [app_request_id]
    one(events, "api_request", request_id=app_request_id, path="/own-id")
    traced = one(events, "api_request", request_id=responses["trace_id"])
    assert traced.properties["response_request_id"] == app_request_id

    # an exception: 500 with api_error, both with the X-Request-ID the response carries
    boom = responses["boom"]
    assert boom.status_code == 500
    assert len(request_ids(boom)) == 1 and boom.headers["traceresponse"]
    for name in ("api_request", "api_error"):
        event = one(events, name, path="/boom")
        assert event.properties["status_code"] == 500
        assert event.properties["request_id"] == request_ids(boom)[0]
        assert event.distinct_id == user  # the verified JWT
    assert one(events, "api_error", path="/boom").properties["error_type"] == "RuntimeError"
    for event in events:
        assert event.properties["endpoint"].startswith(("/", "(unmatched)")), event.properties


def test_flask_under_gunicorn(sink):
    env = framework_env(
        sink,
        OTEL_POSTHOG_SLOW_REQUEST_THRESHOLD_MS="600000",
        OTEL_POSTHOG_SLOW_REQUEST_THRESHOLDS="/users/<int:user_id>=0",
        OTEL_POSTHOG_EXCLUDED_ROUTES="/health,/internal/<name>",
    )
    app = AppProcess(env, argv=gunicorn_argv("tests.apps.flask_app:app")).start()
    try:
        responses = _journey(app, "user_flask", ["/users/3", "/internal/x", "/nope"])
    finally:
        events = stop_and_collect(app, sink)

    _common_asserts(events, responses, "user_flask", FLASK_REQUEST_ID)
    user = one(events, "api_request", path="/users/3")
    assert user.properties["endpoint"] == "/users/<int:user_id>"
    assert user.distinct_id == "user_flask"
    assert user.properties["request_id"] == request_ids(responses["/users/3"])[0]
    assert one(events, "slow_request", path="/users/3").properties["threshold_ms"] == 0
    assert not [e for e in events if e.properties["path"] in ("/internal/x", "/health")]
    assert one(events, "api_request", path="/nope").properties["endpoint"] == "(unmatched)"


def test_django_under_gunicorn(sink):
    env = framework_env(
        sink,
        DJANGO_SETTINGS_MODULE="tests.apps.django_site.settings",
        OTEL_POSTHOG_SLOW_REQUEST_THRESHOLD_MS="600000",
        # as the README says: the endpoint as events show it, or the route as Django writes it
        OTEL_POSTHOG_SLOW_REQUEST_THRESHOLDS="/users/<int:user_id>=0,api/items/<pk>/=0",
        OTEL_POSTHOG_EXCLUDED_ROUTES="/health,/articles/{year}/",
    )
    app = AppProcess(env, argv=gunicorn_argv("tests.apps.django_site.wsgi:application")).start()
    try:
        responses = _journey(
            app, "user_django", ["/users/3", "/articles/2024/", "/api/items/12/", "/nope"]
        )
    finally:
        events = stop_and_collect(app, sink)

    _common_asserts(events, responses, "user_django", DJANGO_REQUEST_ID)
    user = one(events, "api_request", path="/users/3")
    assert user.properties["endpoint"] == "/users/<int:user_id>"  # a leading "/"
    assert user.distinct_id == "user_django"
    assert one(events, "slow_request", path="/users/3").properties["threshold_ms"] == 0
    item = one(events, "api_request", path="/api/items/12/")  # re_path through include()
    assert item.properties["endpoint"] == "/api/items/{pk}/"
    assert one(events, "slow_request", path="/api/items/12/").properties["threshold_ms"] == 0
    assert not [e for e in events if e.properties["path"] in ("/articles/2024/", "/health")]
    assert {e.event for e in events if e.properties["path"] == "/nope"} <= set(REQUEST_EVENTS)
