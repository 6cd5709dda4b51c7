"""Real framework apps under real servers, started with ``opentelemetry-instrument`` and the
``posthog`` distro (or as the app's own code says), asserted at the local sink.

Events are collected after a graceful stop (SIGTERM): the bridge's periodic flush is set
to a minute, so every event the sink holds was delivered by the flush on shutdown.
"""

from __future__ import annotations

import secrets
import signal
import time
from typing import Any

import jwt
import requests

from .helpers import AppProcess
from .launcher_support import launcher_env

JWT_SECRET = "demo-secret-change-me-before-any-real-use"  # launcher_env's
REQUEST_EVENTS = ("api_request", "api_error", "slow_request")


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def request_ids(response: requests.Response) -> list[str]:
    """Every ``X-Request-ID`` header of a response, as sent (not joined)."""
    return response.raw.headers.getlist("X-Request-ID")


def framework_env(sink: Any, **extra: str) -> dict[str, str]:
    """The zero-code environment, events leaving only at a flush (see the module doc)."""
    env = launcher_env(sink, OTEL_POSTHOG_FLUSH_INTERVAL_MS="60000")
    env.update(extra)
    return env


def get(app: AppProcess, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(app.url + path, timeout=10, **kwargs)


def stop_and_collect(app: AppProcess, sink: Any) -> list[Any]:
    """SIGTERM, wait for a clean exit, then every event the sink received."""
    app.signal(signal.SIGTERM)
    try:
        app.wait(30)
    finally:
        app.stop()
    return sink.events()


def one(events: list[Any], event: str, **props: Any) -> Any:
    """The single ``event`` whose properties hold ``props`` (fails on none or several)."""
    found = [
        e
        for e in events
        if e.event == event and all(e.properties.get(k) == v for k, v in props.items())
    ]
    assert len(found) == 1, (event, props, [(e.event, e.properties) for e in events])
    return found[0]
