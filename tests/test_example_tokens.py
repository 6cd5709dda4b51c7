"""The example app mints demo tokens (public secret) only on loopback or with its own secret.

The example app runs under a real uvicorn on 127.0.0.1. A client that is not on loopback is
made the way a reverse proxy on the same host makes one: uvicorn trusts ``X-Forwarded-For``
from 127.0.0.1 (its default ``--proxy-headers``), so the app sees the forwarded client.
"""

from __future__ import annotations

import jwt
import pytest
import requests

from .helpers import AppProcess, bridge_env

REMOTE = {"X-Forwarded-For": "203.0.113.9"}
LOGIN = {"user_id": "user_12345"}


@pytest.mark.parametrize(
    "app", ["otel_posthog.demo.fastapi_app.app:app", "otel_posthog.demo.fastapi_app.plain_app:app"]
)
def test_public_secret_mints_only_on_loopback(sink, app: str) -> None:
    with AppProcess(bridge_env(sink), app=app) as proc:
        local = requests.post(proc.url + "/api/auth/login", json=LOGIN, timeout=10)
        assert local.status_code == 200
        claims = jwt.decode(
            local.json()["token"],
            "demo-secret-change-me-before-any-real-use",
            algorithms=["HS256"],
            audience="authenticated",
        )
        assert claims["sub"] == "user_12345"
        remote = requests.post(proc.url + "/api/auth/login", json=LOGIN, headers=REMOTE, timeout=10)
        assert remote.status_code == 403
        assert "OTEL_POSTHOG_JWT_SECRET" in remote.json()["detail"]
        assert "token" not in remote.json()
        assert "refused a demo login from 203.0.113.9" in proc.output()


def test_own_secret_mints_for_any_client(sink) -> None:
    env = bridge_env(sink, OTEL_POSTHOG_JWT_SECRET="my-own-secret-of-at-least-32-bytes!!")
    with AppProcess(env) as proc:
        remote = requests.post(proc.url + "/api/auth/login", json=LOGIN, headers=REMOTE, timeout=10)
        assert remote.status_code == 200
        token = remote.json()["token"]
        claims = jwt.decode(
            token,
            "my-own-secret-of-at-least-32-bytes!!",
            algorithms=["HS256"],
            audience="authenticated",
        )
        assert claims["sub"] == "user_12345"
