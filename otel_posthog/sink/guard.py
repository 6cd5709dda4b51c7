"""The sink's edges: ``Host`` against the bind address, capped bodies, CORS without credentials.

The sink listens on loopback for a developer's browser and apps. A web page the developer
visits may point a DNS name of its own at 127.0.0.1 (DNS rebinding) and then read the
sink's events as same-origin; the ``Host`` it sends is its own name, so only the loopback
names and the bind address are served. Capture calls from any origin are allowed, but
without credentials: no cookie or auth header ever rides along.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _split_host(value: str) -> tuple[str, int | None]:
    """``name[:port]`` or ``[v6][:port]`` as (lower-case name, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if port and not port.isdigit():
        return name, -1
    return name, int(port) if port else None


class HostGuard:
    """ASGI middleware: 403 unless ``Host`` names a loopback address or the bind host."""

    def __init__(self, app: ASGIApp, bind_host: str | None = None) -> None:
        self.app = app
        self.names = set(LOOPBACK_NAMES)
        if bind_host:
            self.names.add(bind_host.strip("[]").lower())

    def allowed(self, scope: Scope) -> bool:
        server = scope.get("server")
        if not server:  # a unix socket or an in-process client: no network name to rebind
            return True
        given = next((v for k, v in scope.get("headers", ()) if k == b"host"), None)
        if given is None:
            return True
        name, port = _split_host(given.decode("latin-1"))
        server_host, server_port = str(server[0]).lower(), server[1]
        if (port if port is not None else 80) != server_port:
            return False
        return name in self.names or name == server_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allowed(scope):
            response = PlainTextResponse(
                "Host not allowed: use 127.0.0.1, localhost or the address the sink listens on",
                403,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def cors(request: Request, response: Response) -> Response:
    """Any origin may send events; no credentials, so no origin needs reflecting."""
    if request.headers.get("origin"):
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


class TooLarge(Exception):
    """The body is over the cap (413)."""


async def read_capped(request: Request, max_bytes: int) -> bytes:
    """The body, refused by ``Content-Length`` before reading and by its size while streaming."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge
            chunks.append(chunk)
    except ClientDisconnect:
        return b""
    return b"".join(chunks)


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value
