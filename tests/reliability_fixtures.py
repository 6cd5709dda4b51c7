"""Helpers of the fault-injection tests: real SDK spans in volume, a sink that goes away.

:class:`SpanDriver` drives a real :class:`PostHogSpanProcessor` on its own real
``TracerProvider`` with request-shaped SERVER spans (one ``api_request`` each) and knows
the uuid every span's event must arrive with. :class:`Outage` stops the local sink (the
port then refuses connections) and brings it back on the same port and database.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_posthog.core.mapping import event_uuid
from otel_posthog.counters import STATS
from otel_posthog.delivery.spool import Spool
from otel_posthog.sdk.processor import PostHogSpanProcessor
from otel_posthog.sink.server import LocalSink


def make_events(n: int, tag: str = "t", pad: int = 0, age_s: float = 0) -> list[dict[str, Any]]:
    """``n`` PostHog events with fresh uuids and increasing timestamps (``age_s`` ago)."""
    now = time.time() - age_s
    return [
        {
            "event": "api_request",
            "distinct_id": f"user-{tag}",
            "uuid": str(uuid.uuid4()),
            "timestamp": datetime.fromtimestamp(now + i / 1000, tz=timezone.utc).isoformat(),
            "properties": {"request_id": f"{tag}-{i}", "seq": i, "pad": "x" * pad},
        }
        for i in range(n)
    ]


class SpanDriver:
    """A real provider + PostHog processor; ``requests(n)`` ends ``n`` request spans."""

    def __init__(self, host: str, api_key: str, **settings: Any) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": "rel-api"}))
        defaults: dict[str, Any] = {"api_key": api_key, "host": host, "flush_interval_ms": 50}
        defaults.update(settings)
        self.processor = PostHogSpanProcessor(**defaults)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("reliability")
        self.expected: set[str] = set()

    def requests(self, n: int, route: str = "/items/{id}") -> None:
        for i in range(n):
            with self.tracer.start_as_current_span(
                f"GET {route}",
                kind=trace.SpanKind.SERVER,
                attributes={
                    "http.request.method": "GET",
                    "http.route": route,
                    "url.path": route.replace("{id}", str(i)),
                    "http.response.status_code": 200,
                },
            ) as span:
                ctx = span.get_span_context()
            self.expected.add(event_uuid(ctx.trace_id, ctx.span_id, "api_request"))

    def shutdown(self) -> None:
        self.processor.shutdown()


class Outage:
    """The sink goes down (connections refused) and comes back on the same port and store."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.sink = LocalSink(db_path=db_path).start()
        self.port = self.sink.port
        self.api_key = self.sink.api_key
        self.received_before = 0  # events received by earlier sink lifetimes

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def down(self) -> None:
        self.received_before += self.sink.app.state.stats["received"]
        self.sink.stop()

    def up(self) -> LocalSink:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sink = LocalSink(db_path=self.db_path, api_key=self.api_key, port=self.port)
                return self.sink.start()
            except (OSError, RuntimeError, SystemExit):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @property
    def received(self) -> int:
        """Events received over all lifetimes, duplicates included."""
        return self.received_before + self.sink.app.state.stats["received"]

    def uuids(self) -> set[str]:
        return {e.uuid for e in self.sink.events()}

    def wait_for_uuids(self, expected: set[str], timeout_s: float) -> set[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            got = self.uuids()
            if expected <= got or time.monotonic() > deadline:
                return got
            time.sleep(0.2)

    def stop(self) -> None:
        try:
            self.sink.stop()
        except Exception:
            pass


def stats_delta(before: dict[str, Any]) -> dict[str, int]:
    now = STATS.snapshot(gauges=False)
    return {k: v - before.get(k, 0) for k, v in now.items() if isinstance(v, int)}


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class InsideTransaction:
    """Holds the next thread that runs SQL on ``conn`` inside its open transaction.

    A SQLite progress handler on the spool's own connection: the thread is then provably
    in the middle of a spool operation (spool lock held, WAL write lock taken) until
    :meth:`release` or ``hold_s`` (so a fork that waits for it is not stuck forever).
    """

    def __init__(self, spool: Spool, hold_s: float = 3.0) -> None:
        with spool._lock:
            self.conn = spool._connection()
        self.entered = threading.Event()
        self._release = threading.Event()
        self._hold_s = hold_s
        self._fired = False
        self.conn.set_progress_handler(self._progress, 1)

    def _progress(self) -> int:
        if self.conn.in_transaction and not self._fired:
            self._fired = True
            self.entered.set()
            self._release.wait(self._hold_s)
        return 0

    def release(self) -> None:
        self._release.set()


def wait_child(pid: int, timeout_s: float) -> int | None:
    """The child's exit code, or None (and the child killed) when it is still running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None
