"""Reading a request body within limits: streamed (chunked bodies too), gzip decoded."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from ..core.bounded_gzip import GzipError, gunzip


class BodyError(Exception):
    """The body cannot be taken; ``status`` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, at most ``max_bytes`` on the wire (with or without Content-Length)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyError(413, f"body larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise BodyError(413, f"body larger than {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyError(400, "client disconnected before the body was complete") from None
    return b"".join(chunks)


def decode_content(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip), never inflating past ``max_bytes``."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding not in ("gzip", "x-gzip"):
            raise BodyError(415, f"unsupported Content-Encoding {coding!r} (use gzip or none)")
        body = _gunzip(body, max_bytes)
    return body


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    try:
        return gunzip(data, max_bytes)
    except GzipError as exc:
        if exc.kind == "too_large":
            raise BodyError(413, f"decompressed body larger than {max_bytes} bytes") from None
        if exc.kind == "truncated":
            raise BodyError(400, "truncated gzip body") from None
        raise BodyError(400, f"invalid gzip body: {exc}") from None
