"""Requests without a network: the ASGI app called directly, one request after another."""

from __future__ import annotations

import asyncio
from typing import Any

SESSION_ID = "0190a2b4-7c3d-7e8f-9a0b-1c2d3e4f5a6b"
DISTINCT_ID = "user_12345"
HEADERS: list[tuple[bytes, bytes]] = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"bench/1.0"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"x-posthog-session-id", SESSION_ID.encode()),
    (b"x-posthog-distinct-id", DISTINCT_ID.encode()),
]


def scope_for(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": list(HEADERS),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _one(app: Any, path: str) -> int:
    status = 0
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # a disconnect never comes while the app answers
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_for(path), receive, send)
    return status


async def run_requests(app: Any, count: int, start: int = 0) -> None:
    """``count`` sequential GETs of ``/api/items/N``; raises on a non-200 answer."""
    for i in range(start, start + count):
        status = await _one(app, f"/api/items/{i}")
        if status != 200:
            raise RuntimeError(f"request {i} answered {status}")


def drive(app: Any, count: int, start: int = 0) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run_requests(app, count, start))
    finally:
        loop.close()
