"""Transport to PostHog: a bounded in-memory queue, one worker thread, ``/batch/`` posts.

The request path only appends to a deque (no lock, no I/O). The worker maps queued spans
to events (via a callable the owner gives it), batches them, and posts each batch with
posthog-python's request layer (same wire format: ``api_key``, ``batch``, ``sent_at``,
gzip), retrying network errors, 408, 429 and 5xx with exponential backoff that honours
``Retry-After``. The worker runs with OpenTelemetry instrumentation suppressed, so the
bridge's own HTTP calls never become spans or events. After ``fork()`` the child gets a
fresh queue, session and thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import requests
from posthog import request as posthog_request

from .runtime import STATS, suppressed_instrumentation
from .settings import Settings

log = logging.getLogger("otel_posthog")

Event = dict[str, Any]
Work = Any  # an item the owner's mapper turns into events
Mapper = Callable[[Work], list[Event]]

_MAX_BACKOFF_S = 30.0
_RETRYABLE = {408, 429}


class DeliveryError(Exception):
    def __init__(self, message: str, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


class BatchPoster:
    """Posts one batch to ``/batch/``; raises :class:`DeliveryError` when it did not land."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=2)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def post(self, events: list[Event], timeout_s: float | None = None) -> None:
        s = self.settings
        timeout = timeout_s if timeout_s is not None else s.request_timeout_ms / 1000
        try:
            with suppressed_instrumentation():
                response = posthog_request.post(
                    s.api_key or "",
                    host=s.host,
                    path="/batch/",
                    gzip=True,
                    timeout=max(timeout, 0.05),
                    session=self.session,
                    batch=events,
                    _user_agent="otel-posthog",
                )
        except requests.RequestException as exc:
            raise DeliveryError(f"network error: {exc.__class__.__name__}", True) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status in _RETRYABLE or status >= 500
        raise DeliveryError(f"HTTP {status}", retryable, _retry_after(response))


class EventSender:
    """Owns the queue and the worker thread of one processor or exporter."""

    def __init__(self, settings: Settings, mapper: Mapper, spool: Any = None) -> None:
        self.settings = settings
        self.mapper = mapper
        self.spool = spool
        self._init_process_state()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._init_process_state)

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._queue: deque[tuple[str, Any]] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._stopping = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._poster = BatchPoster(self.settings)
        self._lock = threading.Lock()

    # -- request path -------------------------------------------------------------
    def submit(self, kind: str, item: Any) -> bool:
        """Queue ``("work", item)`` or ``("events", [event, ...])``. Never blocks."""
        if self._stopped:
            STATS.add("dropped")
            return False
        if self._thread is None or self._pid != os.getpid():
            self._start()
        queue = self._queue
        if len(queue) >= self.settings.max_queue_size:
            if kind == "events" and self.spool is not None:
                self.spool.write(item)
                STATS.add("spooled", len(item))
                return True
            STATS.add("dropped", len(item) if kind == "events" else 1)
            from .runtime import log as _log

            if STATS.snapshot()["dropped"] == 1:
                _log.warning("otel_posthog: queue full, events dropped (counted in stats())")
            return False
        queue.append((kind, item))
        if len(queue) >= self.settings.batch_size:
            self._wake.set()
        return True

    # -- control ---------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            if self._pid != os.getpid():
                self._init_process_state()
            self._thread = threading.Thread(
                target=self._run, name="otel-posthog-sender", daemon=True
            )
            self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Deliver everything queued so far, within ``timeout_s``. True when all was sent."""
        if self._thread is None:
            return True
        done = threading.Event()
        deadline = time.monotonic() + timeout_s
        self._queue.append(("flush", (done, deadline)))
        self._wake.set()
        return done.wait(max(timeout_s, 0))

    def shutdown(self, timeout_s: float) -> None:
        if self._stopped:
            return
        ok = self.flush(timeout_s)
        self._stopping = True
        self._stopped = True
        self._wake.set()
        if not ok:
            self._spool_leftovers()

    def _spool_leftovers(self) -> None:
        leftovers: list[Event] = []
        while self._queue:
            try:
                kind, item = self._queue.popleft()
            except IndexError:
                break
            if kind == "events":
                leftovers.extend(item)
            elif kind == "work":
                try:
                    leftovers.extend(self.mapper(item))
                except Exception as exc:
                    STATS.error("sender.map", exc)
        if not leftovers:
            return
        if self.spool is not None:
            self.spool.write(leftovers)
            STATS.add("spooled", len(leftovers))
        else:
            STATS.add("dropped", len(leftovers))

    # -- worker ------------------------------------------------------------------------
    def _run(self) -> None:
        with suppressed_instrumentation():
            pending: list[Event] = []
            first_at = 0.0
            interval = self.settings.flush_interval_ms / 1000
            while not (self._stopping and not self._queue):
                timeout = (
                    interval if not pending else max(first_at + interval - time.monotonic(), 0)
                )
                self._wake.wait(timeout)
                self._wake.clear()
                flushes: list[tuple[threading.Event, float]] = []
                while self._queue:
                    try:
                        kind, item = self._queue.popleft()
                    except IndexError:
                        break
                    if kind == "flush":
                        flushes.append(item)
                        break
                    if not pending:
                        first_at = time.monotonic()
                    try:
                        events = self.mapper(item) if kind == "work" else item
                    except Exception as exc:
                        STATS.error("sender.map", exc)
                        continue
                    if events:
                        STATS.add("queued", len(events))
                        pending.extend(events)
                    while len(pending) >= self.settings.batch_size:
                        self._deliver(pending[: self.settings.batch_size], None)
                        del pending[: self.settings.batch_size]
                if pending and (flushes or time.monotonic() - first_at >= interval):
                    deadline = min((d for _, d in flushes), default=None)
                    self._deliver(pending, deadline)
                    pending = []
                for done, _ in flushes:
                    done.set()
                if flushes and self._queue:
                    self._wake.set()

    def _deliver(self, batch: list[Event], deadline: float | None) -> None:
        """Post with retries; what cannot be delivered goes to the spool or is counted dropped."""
        attempt = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                timeout = self.settings.request_timeout_ms / 1000
                if remaining is not None:
                    timeout = min(timeout, remaining)
                self._poster.post(batch, timeout)
                STATS.add("sent", len(batch))
                STATS.add("batches_sent")
                return
            except DeliveryError as err:
                if not err.retryable or attempt >= self.settings.max_retries:
                    log.debug("otel_posthog: batch failed: %s", err)
                    break
                delay = min(2.0**attempt * 0.5, _MAX_BACKOFF_S)
                if err.retry_after:
                    delay = max(delay, min(err.retry_after, _MAX_BACKOFF_S))
                attempt += 1
                STATS.add("retried", len(batch))
                if remaining is not None and delay >= remaining:
                    break
                if self._stopping:
                    break
                time.sleep(delay)
            except Exception as exc:  # never let the worker die
                STATS.error("sender.post", exc)
                break
        STATS.add("batches_failed")
        if self.spool is not None:
            self.spool.write(batch)
            STATS.add("spooled", len(batch))
        else:
            STATS.add("dropped", len(batch))
