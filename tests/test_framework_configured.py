"""The other way in: ``otel_posthog.configure()`` plus the framework's instrumentor, on the
framework's own development servers (``flask run --debug``, ``manage.py runserver
--noreload``) and, for Starlette, in process. Real HTTP, events at the local sink."""

from __future__ import annotations

import sys

import requests
from opentelemetry.instrumentation.starlette import StarletteInstrumentor
from opentelemetry.sdk.trace import TracerProvider

import otel_posthog
from otel_posthog.sink.server import ThreadedServer

from .framework_support import get, one, request_ids, token
from .helpers import VENV_BIN, AppProcess, bridge_env

EXPECT = {"api_request", "api_error"}


def _wait(sink, paths: set[str]) -> list:
    """Every event, once each path has its api_request (and /boom its api_error)."""

    def done(events) -> bool:
        seen = {(e.event, e.properties.get("path")) for e in events}
        return all(("api_request", p) in seen for p in paths) and ("api_error", "/boom") in seen

    return sink.wait_for(done, timeout_s=20)


def _assert_app(sink, app: AppProcess, user: str, user_path: str, endpoint: str) -> None:
    auth = {"Authorization": f"Bearer {token(user)}"}
    ok = get(app, user_path, headers=auth)
    own = get(app, "/own-id")
    boom = get(app, "/boom", headers=auth)
    events = _wait(sink, {user_path, "/own-id", "/boom"})
    request = one(events, "api_request", path=user_path)
    assert request.properties["endpoint"] == endpoint and request.distinct_id == user
    assert request.properties["request_id"] == request_ids(ok)[0]
    assert len(request_ids(own)) == 1
    one(events, "api_request", path="/own-id", request_id=request_ids(own)[0])
    assert boom.status_code == 500
    for name in EXPECT:
        event = one(events, name, path="/boom")
        assert event.properties["status_code"] == 500 and event.distinct_id == user


def test_flask_run_debug_with_configure(sink):
    """``flask run --debug``: the exception escapes Flask (its debugger answers): still a 500."""
    argv = [str(VENV_BIN / "flask"), "--app", "tests.apps.flask_configured:app", "run"]
    argv += ["--debug", "--no-reload", "--host", "127.0.0.1", "--port", "{port}"]
    with AppProcess(bridge_env(sink), argv=argv) as app:
        _assert_app(sink, app, "user_flask_dev", "/users/5", "/users/<int:user_id>")


def test_django_runserver_with_configure(sink):
    argv = [sys.executable, "-m", "django", "runserver", "--noreload", "127.0.0.1:{port}"]
    env = bridge_env(sink, DJANGO_SETTINGS_MODULE="tests.apps.django_site.settings")
    with AppProcess(env, argv=argv) as app:
        _assert_app(sink, app, "user_django_dev", "/users/5", "/users/<int:user_id>")


def test_starlette_with_configure_and_its_instrumentor(sink):
    from .apps.starlette_app import app

    provider = TracerProvider()
    processor = otel_posthog.configure(
        provider,
        api_key=sink.api_key,
        host=sink.url,
        flush_interval_ms=50,
        jwt_secret="demo-secret-change-me-before-any-real-use",
    )
    StarletteInstrumentor.instrument_app(app, tracer_provider=provider)
    server = ThreadedServer(app).start()
    try:
        auth = {"Authorization": f"Bearer {token('user_starlette_code')}"}
        nested = requests.get(server.url + "/outer/acme/inner/leaf/7", headers=auth, timeout=10)
        boom = requests.get(server.url + "/boom", headers=auth, timeout=10)
        events = sink.wait_for(lambda evs: {"api_request", "api_error"} <= {e.event for e in evs})
    finally:
        server.stop()
        StarletteInstrumentor.uninstrument_app(app)
        processor.shutdown()
        provider.shutdown()
    request = one(events, "api_request", path="/outer/acme/inner/leaf/7")
    assert request.properties["endpoint"] == "/outer/{org}/inner/leaf/{leaf_id}"
    assert request.distinct_id == "user_starlette_code"
    assert request_ids(nested) == [request.properties["request_id"]]
    assert boom.status_code == 500 and len(request_ids(boom)) == 1
    error = one(events, "api_error", path="/boom")
    assert error.properties["status_code"] == 500
    assert error.properties["request_id"] == request_ids(boom)[0]
