"""A small closed-loop HTTP/1.1 load generator for loopback (keep-alive, no dependencies).

``connections`` clients each send a GET, read the whole answer, and send the next, until
``max_requests`` were answered or ``max_seconds`` passed: bounded in count and in time.
Latency is taken per request (send to last byte).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value)
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _client(
    host: str,
    port: int,
    paths: list[str],
    headers: bytes,
    state: dict[str, int],
    deadline: float,
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while state["left"] > 0 and time.perf_counter() < deadline:
            state["left"] -= 1
            path = paths[state["left"] % len(paths)]
            request = f"GET {path} HTTP/1.1\r\n".encode() + headers
            start = time.perf_counter()
            writer.write(request)
            try:
                status = await asyncio.wait_for(_read_response(reader), timeout=30)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                result.errors += 1
                return
            result.latencies_ms.append((time.perf_counter() - start) * 1000)
            if status == 200:
                result.requests += 1
            else:
                result.errors += 1
    finally:
        writer.close()


async def run_load(
    url: str,
    paths: list[str],
    extra_headers: list[tuple[bytes, bytes]],
    connections: int = 8,
    max_requests: int = 5000,
    max_seconds: float = 10.0,
) -> LoadResult:
    host, _, port = url.split("://", 1)[1].rpartition(":")
    header_lines = b"".join(
        k + b": " + v + b"\r\n" for k, v in extra_headers if k.lower() != b"host"
    )
    headers = f"Host: {host}:{port}\r\n".encode() + header_lines + b"\r\n"
    result = LoadResult()
    state = {"left": max_requests}
    start = time.perf_counter()
    deadline = start + max_seconds
    await asyncio.gather(
        *(
            _client(host, int(port), paths, headers, state, deadline, result)
            for _ in range(connections)
        )
    )
    result.seconds = time.perf_counter() - start
    return result


def load(url: str, **kwargs: object) -> LoadResult:
    from .driver import HEADERS

    paths = [f"/api/items/{i}" for i in range(100)]
    return asyncio.run(run_load(url, paths, HEADERS, **kwargs))  # type: ignore[arg-type]
