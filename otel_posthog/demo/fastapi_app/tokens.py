"""The example's demo logins: a JWT minted for any user id, so only where that is safe.

With the public demo secret anyone can sign a token for any user, so tokens are minted only
for a client on loopback talking to a server on loopback (the demo and the tests), or when
``OTEL_POSTHOG_JWT_SECRET`` is a secret of your own. A client behind a proxy on the same
host is the proxy's client (uvicorn's ``--proxy-headers``), so it is not on loopback.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time

import jwt
from fastapi import HTTPException, Request

PUBLIC_DEMO_SECRET = "demo-secret-change-me-before-any-real-use"
REFUSAL = (
    "demo logins mint tokens with the public demo secret only on loopback; "
    "set OTEL_POSTHOG_JWT_SECRET to a secret of your own to log in from elsewhere"
)

log = logging.getLogger("otel_posthog.demo.fastapi_app")


def secret() -> str:
    return os.environ.get("OTEL_POSTHOG_JWT_SECRET") or PUBLIC_DEMO_SECRET


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_may_mint(request: Request) -> None:
    """Raise a 403 (and log why) unless this request may get a demo token."""
    if secret() != PUBLIC_DEMO_SECRET:
        return
    server = request.scope.get("server")
    client = request.client.host if request.client else None
    if server and is_loopback(str(server[0])) and is_loopback(client):
        return
    log.warning("refused a demo login from %s: %s", client, REFUSAL)
    raise HTTPException(status_code=403, detail=REFUSAL)


def issue_token(user_id: str, ttl_s: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "aud": "authenticated", "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret(), algorithm="HS256")
