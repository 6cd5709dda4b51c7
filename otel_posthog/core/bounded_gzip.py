"""Gunzip a request body without ever inflating past a limit (the receiver's and the sink's)."""

from __future__ import annotations

import zlib


class GzipError(ValueError):
    """``kind`` is ``"invalid"``, ``"too_large"`` or ``"truncated"``; the message zlib's."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(detail or kind)
        self.kind = kind


def gunzip(data: bytes, max_bytes: int) -> bytes:
    """The decompressed ``data``; at most ``max_bytes`` are ever produced."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise GzipError("invalid", str(exc)) from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise GzipError("too_large")
    if not inflater.eof:
        raise GzipError("truncated")
    return out
