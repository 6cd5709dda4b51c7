"""Transport to PostHog: a bounded in-memory queue, one worker thread, ``/batch/`` posts.

The request path only appends to a deque (no lock, no I/O). The worker maps queued spans
to events (via a callable the owner gives it), batches them, and posts each batch with
posthog-python's request layer (same wire format: ``api_key``, ``batch``, ``sent_at``,
gzip), retrying network errors, 408, 429 and 5xx with exponential backoff that honours
``Retry-After``; with a spool (:mod:`otel_posthog.delivery.spool`) failed batches go to disk and
are re-sent from there. ``flush()``/``shutdown()`` keep their deadline: what is still in
memory then goes to the spool. The worker runs with OpenTelemetry instrumentation
suppressed, so the bridge's own HTTP calls never become spans or events. After
``fork()`` the child gets a fresh queue, locks, session and thread (gunicorn
``--preload``); the parent's queued events stay with the parent.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import requests
from posthog import request as posthog_request

try:  # a dependency; the standard library is the fallback where no wheel installs
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

from ..compat import suppressed_instrumentation
from ..runtime import STATS
from ..settings import Settings

log = logging.getLogger("otel_posthog")

Event = dict[str, Any]
Work = Any  # an item the owner's mapper turns into events
Mapper = Callable[[Work], list[Event]]

_MAX_BACKOFF_S = 30.0
_MAX_RETRY_AFTER_S = 600.0
_SPOOL_CHECK_S = 5.0
_SPOOL_RETRY_S = 60.0  # a spool that failed (read-only, full disk) is tried again after this
_OVERFLOW_CHUNK = 200
_SLICE = 32  # queued items mapped between GIL yields (see EventSender._take)
_RETRYABLE = {408, 429}
USER_AGENT = "otel-posthog"


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
    """Posts one batch to ``/batch/``; raises :class:`DeliveryError` when it did not land.

    The wire format is posthog-python's request layer's (``posthog.request.post``): the
    same URL, headers and body (``batch``, ``sent_at``, ``api_key``), gzip-compressed.
    Our events are plain JSON already, so the body is encoded in one ``orjson.dumps``
    call (the standard library's encoder where orjson is missing) and compressed at
    level 1 instead of the request layer's walk over every value and level-9 gzip
    (docs/performance.md); a batch that is not plain JSON (e.g. changed by
    ``before_send``) goes through the request layer itself.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=2)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        host = posthog_request.normalize_host(settings.host)
        self.url = (host[:-1] if host.endswith("/") else host) + "/batch/"
        self.headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Content-Encoding": "gzip",
        }

    def encode(self, events: list[Event]) -> bytes | None:
        """The gzip body of a batch, or None when it is not plain JSON."""
        body = {
            "batch": events,
            "sent_at": datetime.now(tz=timezone.utc).isoformat(),
            "api_key": self.settings.api_key or "",
        }
        try:
            data = _dumps(body)
        except (TypeError, ValueError):
            return None
        return gzip.compress(data, compresslevel=1, mtime=0)

    def post(self, events: list[Event], timeout_s: float | None = None) -> None:
        s = self.settings
        timeout = timeout_s if timeout_s is not None else s.request_timeout_ms / 1000
        timeout = max(timeout, 0.05)
        try:
            with suppressed_instrumentation():
                data = self.encode(events)
                if data is not None:
                    response = self.session.post(
                        self.url, data=data, headers=self.headers, timeout=timeout
                    )
                else:
                    response = posthog_request.post(
                        s.api_key or "",
                        host=s.host,
                        path="/batch/",
                        gzip=True,
                        timeout=timeout,
                        session=self.session,
                        batch=events,
                        _user_agent=USER_AGENT,
                    )
        except requests.RequestException as exc:
            raise DeliveryError(f"network error: {exc.__class__.__name__}", True) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status in _RETRYABLE or status >= 500
        raise DeliveryError(f"HTTP {status}", retryable, _retry_after(response))


class EventSender:
    """Owns the queue and the worker thread of one processor or exporter.

    Without a spool a failed batch is retried in memory (``max_retries``, backoff honouring
    ``Retry-After``) and then counted as dropped. With a spool a batch that fails with a
    retryable error goes to disk at once, the sender backs off (at least ``Retry-After``)
    and re-sends from the spool, oldest first; while PostHog is down or the spool holds a
    backlog, new batches join the spool so the order holds.
    """

    def __init__(self, settings: Settings, mapper: Mapper, spool: Any = None) -> None:
        self.settings = settings
        self.mapper = mapper
        self.spool = spool
        self._init_process_state()
        STATS.track(self)
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_fork_in_child() -> None:
                sender = ref()
                if sender is not None:
                    sender._init_process_state()

            os.register_at_fork(after_in_child=after_fork_in_child)
        if spool is not None:
            self._start()  # re-send what a previous run left, even before any traffic

    def _init_process_state(self) -> None:
        """Fresh queue, locks, HTTP session and (lazily) thread: at start and after fork."""
        self._pid = os.getpid()
        self._queue: deque[tuple[str, Any]] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._poster = BatchPoster(self.settings)
        self._lock = threading.Lock()  # starting the thread
        self._hold = threading.Lock()  # pending / in-flight events vs. the flush hand-off
        self._pending: list[Event] = []
        self._first_at = 0.0
        self._inflight: list[Event] | None = None
        self._down_until = 0.0
        self._backoff = 0.0
        self._spool_backlog = self.spool is not None  # a previous run may have left events
        self._spool_down_until = 0.0  # the spool failed: deliver from memory until then
        self._next_spool_check = 0.0
        self._overflowed: list[tuple[str, Any]] = []  # full queue, spool on: written in chunks
        self._overflow_lock = threading.Lock()
        # set while a flush or shutdown deadline has passed: the mapper stops waiting
        self.deadline_passed = threading.Event()

    def on_worker_thread(self) -> bool:
        """True on this sender's worker thread: the only place mapping may wait (JWKS)."""
        return self._thread is threading.current_thread()

    # -- request path -------------------------------------------------------------
    def submit(self, kind: str, item: Any) -> bool:
        """Queue ``("work", item)`` or ``("events", [event, ...])``. Never blocks.

        When the queue is full (or the sender stopped) the item goes to the spool if
        there is one (mapped here, never waiting on I/O: overload only), else it is
        counted as dropped.
        """
        if self._stopped:
            return self._overflow(kind, item)
        if self._thread is None:  # a fork resets it (register_at_fork)
            self._start()
        queue = self._queue
        if len(queue) >= self.settings.max_queue_size:
            return self._overflow(kind, item)
        queue.append((kind, item))
        if len(queue) >= self.settings.batch_size and not self._wake.is_set():
            self._wake.set()  # once: set() takes a lock, and the worker may be busy a while
        return True

    def _spool_usable(self) -> bool:
        return self.spool is not None and time.monotonic() >= self._spool_down_until

    def _spool_failed(self, where: str, exc: BaseException) -> None:
        """The spool cannot be used (read-only or full disk, ...): deliver from memory for a
        while; the log names SQLite's own error."""
        if time.monotonic() >= self._spool_down_until:
            log.warning(
                "otel_posthog: the spool failed (%s: %s: %s); delivering from memory, "
                "the spool is tried again in %d s",
                where,
                exc.__class__.__name__,
                exc,
                _SPOOL_RETRY_S,
            )
        STATS.error(f"spool.{where}", exc)
        self._spool_down_until = time.monotonic() + _SPOOL_RETRY_S
        self._spool_backlog = False

    def _overflow(self, kind: str, item: Any) -> bool:
        if not self._spool_usable():
            STATS.add("dropped", len(item) if kind == "events" else 1)
            return False
        with self._overflow_lock:
            self._overflowed.append((kind, item))
            full = len(self._overflowed) >= _OVERFLOW_CHUNK or self._stopped
        if full:
            self._spool_overflow()
        return True

    def _spool_overflow(self) -> None:
        """Map and spool what overflowed the queue, as one spool write."""
        with self._overflow_lock:
            items, self._overflowed = self._overflowed, []
        if not items:
            return
        events: list[Event] = []
        for kind, item in items:
            try:
                events.extend(item if kind == "events" else self.mapper(item))
            except Exception as exc:
                STATS.error("sender.map", exc)
        if not events:
            return
        STATS.add("queued", len(events))
        self._store(events)

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
        """Deliver everything queued so far, within ``timeout_s``. True when all was sent.

        With a spool, "sent" includes "written to the spool"; when the deadline passes,
        whatever is still in memory is written to the spool (or counted as dropped).
        """
        if self._thread is None or self._pid != os.getpid():
            return True
        done = threading.Event()
        deadline = time.monotonic() + timeout_s
        self._queue.append(("flush", (done, deadline)))
        self._wake.set()
        if done.wait(max(timeout_s, 0)):
            return True
        self.deadline_passed.set()  # a worker waiting on the IdP lets go of the queue
        try:
            self._hand_off()
        finally:
            if not self._stopping:
                self.deadline_passed.clear()
        return False

    def shutdown(self, timeout_s: float) -> None:
        """Flush within ``timeout_s``, stop the worker; leftovers go to the spool. Never hangs."""
        if self._stopped:
            return
        start = time.monotonic()
        self.flush(timeout_s)
        self._stopping = True
        self._stopped = True
        self.deadline_passed.set()
        self._wake.set()
        self._hand_off()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(min(timeout_s - (time.monotonic() - start), 1.0), 0.0))

    def _hand_off(self) -> None:
        """Everything still in memory (queue, pending, in flight) to the spool, else dropped."""
        with self._hold:
            leftovers: list[Event] = []
            if self._inflight is not None:
                leftovers.extend(self._inflight)  # may still land too: same uuid, deduplicated
                self._inflight = None
            leftovers.extend(self._pending)
            self._pending = []
            while self._queue:
                try:
                    kind, item = self._queue.popleft()
                except IndexError:
                    break
                if kind == "flush":
                    item[0].set()
                    continue
                try:
                    events = item if kind == "events" else self.mapper(item)
                except Exception as exc:
                    STATS.error("sender.map", exc)
                    continue
                STATS.add("queued", len(events))
                leftovers.extend(events)
            if leftovers:
                self._store(leftovers)
        if self.spool is not None:
            self._spool_overflow()

    def _store(self, events: list[Event], drop_on_failure: bool = True) -> bool:
        """To the spool (True), else counted as dropped (needs no lock of its own).

        With ``drop_on_failure=False`` a failed write drops nothing: the caller keeps them.
        """
        if self._spool_usable():
            try:
                self.spool.write(events)
                STATS.add("spooled", len(events))
                self._spool_backlog = True
                return True
            except Exception as exc:
                self._spool_failed("write", exc)
        if drop_on_failure:
            STATS.add("dropped", len(events))
        return False

    def gauges(self) -> dict[str, int]:
        """Current depths, for ``stats()``."""
        out = {"queue_depth": len(self._queue)}
        if self._spool_usable():
            try:
                out["spool_depth"] = self.spool.depth()
            except Exception as exc:
                STATS.error("spool.depth", exc)
        return out

    # -- worker ------------------------------------------------------------------------
    def _run(self) -> None:
        interval = self.settings.flush_interval_ms / 1000
        with suppressed_instrumentation():
            while not self._stopping:
                timeout = interval
                if self._pending:
                    timeout = max(self._first_at + interval - time.monotonic(), 0)
                self._wake.wait(timeout)
                self._wake.clear()
                if self._stopping:
                    break
                try:
                    self._cycle(interval)
                    if self._overflowed:
                        self._spool_overflow()
                    if self._spool_usable():
                        self._drain_spool()
                except Exception as exc:  # never let the worker die
                    STATS.error("sender.worker", exc)
                STATS.maybe_report()

    def _cycle(self, interval: float) -> None:
        bs = self.settings.batch_size
        flushes: list[tuple[threading.Event, float]] = []
        while not self._stopping:
            marker = self._take(bs)
            while (batch := self._next_batch(bs, False)) is not None:
                self._send(batch, None)
            if marker is not None:
                flushes.append(marker)
                break
            if not self._queue:
                break
        force = bool(flushes) or (
            bool(self._pending) and time.monotonic() - self._first_at >= interval
        )
        if force:
            deadline = min((d for _, d in flushes), default=None)
            while (batch := self._next_batch(bs, True)) is not None:
                self._send(batch, deadline)
        for done, _ in flushes:
            done.set()
        if flushes and self._queue:
            self._wake.set()

    def _take(self, limit: int) -> tuple[threading.Event, float] | None:
        """Map up to ``limit`` queued items into pending; returns a flush marker if met.

        Maps in slices of ``_SLICE`` items and yields the GIL between slices: mapping holds
        the GIL, and a request thread waiting for it would otherwise wait out the
        interpreter's whole switch interval (5 ms) each time, which shows in p99 latency.
        """
        queued = 0
        marker = None
        left = limit
        drained = False
        while left > 0 and marker is None and not drained:
            with self._hold:
                popleft, mapper, pending = self._queue.popleft, self.mapper, self._pending
                for _ in range(min(_SLICE, left)):
                    left -= 1
                    try:
                        kind, item = popleft()
                    except IndexError:
                        drained = True
                        break
                    if kind == "flush":
                        marker = item
                        break
                    try:
                        events = mapper(item) if kind == "work" else item
                    except Exception as exc:
                        STATS.error("sender.map", exc)
                        continue
                    if events:
                        queued += len(events)
                        if not pending:
                            self._first_at = time.monotonic()
                        pending.extend(events)
            if left > 0 and marker is None and not drained:
                time.sleep(0)  # let request threads take the GIL
        if queued:
            STATS.add("queued", queued)
        return marker

    def _next_batch(self, size: int, force: bool) -> list[Event] | None:
        with self._hold:
            pending = self._pending
            if len(pending) >= size:
                batch = pending[:size]
                del pending[:size]
            elif pending and force:
                batch, self._pending = pending, []
            else:
                return None
            self._inflight = batch
            return batch

    def _release(self, batch: list[Event]) -> bool:
        """Caller holds ``_hold``; False when a flush hand-off already took the batch."""
        if self._inflight is not batch:
            return False
        self._inflight = None
        return True

    def _send(self, batch: list[Event], deadline: float | None) -> None:
        if not self._spool_usable():
            self._deliver(batch, deadline)
            return
        if time.monotonic() < self._down_until or self._spool_backlog:
            with self._hold:  # PostHog is down or older events wait: keep the order
                if not self._release(batch) or self._store(batch, drop_on_failure=False):
                    return
                self._inflight = batch  # the spool failed: deliver this batch from memory
            self._deliver(batch, deadline)
            return
        err = self._post_once(batch, deadline)
        with self._hold:
            if not self._release(batch):
                return
            if err is None:
                self._recovered()
                return
            if not err.retryable:
                self._rejected(err, len(batch))
                return
            self._trip(err)
            if self._store(batch, drop_on_failure=False):
                return
            self._inflight = batch  # the spool failed: retry this batch from memory
        self._deliver(batch, deadline)

    def _post_once(self, batch: list[Event], deadline: float | None) -> DeliveryError | None:
        timeout = self.settings.request_timeout_ms / 1000
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                return DeliveryError("flush deadline passed", True)
        try:
            try:
                self._poster.post(batch, timeout)
            except (TypeError, ValueError, RecursionError):
                _make_serialisable(batch)  # e.g. a before_send hook added an odd value
                self._poster.post(batch, timeout)
        except DeliveryError as err:
            log.debug("otel_posthog: batch failed: %s", err)
            return err
        except Exception as exc:
            STATS.error("sender.post", exc)
            return DeliveryError(f"{exc.__class__.__name__}", True)
        STATS.add("sent", len(batch))
        STATS.add("batches_sent")
        return None

    def _recovered(self) -> None:
        self._backoff = 0.0
        self._down_until = 0.0

    def _trip(self, err: DeliveryError) -> None:
        """PostHog is unavailable: wait (at least ``Retry-After``) before the next post."""
        STATS.add("batches_failed")
        self._backoff = min(max(self._backoff * 2, 0.5), _MAX_BACKOFF_S)
        delay = self._backoff
        if err.retry_after:
            delay = max(delay, min(err.retry_after, _MAX_RETRY_AFTER_S))
        self._down_until = time.monotonic() + delay

    def _rejected(self, err: DeliveryError, n: int) -> None:
        STATS.add("batches_failed")
        STATS.add("dropped", n)
        STATS.error(f"sender.rejected.{err}", err)

    def _drain_spool(self) -> None:
        """Re-send spooled events, oldest first, for a bounded time per worker cycle."""
        try:
            self._drain_spool_once()
        except Exception as exc:  # e.g. a full disk refuses the claim: new batches go
            STATS.error("spool.read", exc)  # straight to PostHog, the spool is tried later
            self._spool_backlog = False
            self._next_spool_check = time.monotonic() + _SPOOL_CHECK_S

    def _drain_spool_once(self) -> None:
        spool = self.spool
        budget_end = time.monotonic() + 0.25
        while not self._stopping and time.monotonic() < budget_end:
            now = time.monotonic()
            if now < self._down_until:
                return
            if not self._spool_backlog and now < self._next_spool_check:
                return
            claim = spool.claim(self.settings.batch_size)
            if claim is None:
                self._spool_backlog = False
                self._next_spool_check = now + _SPOOL_CHECK_S  # other processes' leftovers
                return
            self._spool_backlog = True
            STATS.add("retried", len(claim.events))
            err = self._post_once(claim.events, None) if claim.events else None
            if err is None:
                spool.ack(claim)
                self._recovered()
            elif err.retryable:
                spool.release(claim)
                self._trip(err)
                return
            else:
                spool.ack(claim)
                self._rejected(err, len(claim.events))
        self._wake.set()  # more may wait: continue after a look at the queue

    def _deliver(self, batch: list[Event], deadline: float | None) -> None:
        """No spool: post with in-memory retries; what cannot be delivered is counted dropped."""
        attempt = 0
        while True:
            err = self._post_once(batch, deadline)
            if err is None:
                with self._hold:
                    self._release(batch)
                return
            if not err.retryable or attempt >= self.settings.max_retries or self._stopping:
                break
            delay = min(2.0**attempt * 0.5, _MAX_BACKOFF_S)
            if err.retry_after:
                delay = max(delay, min(err.retry_after, _MAX_BACKOFF_S))
            attempt += 1
            STATS.add("retried", len(batch))
            if deadline is not None and time.monotonic() + delay >= deadline:
                break
            time.sleep(delay)
        with self._hold:
            if self._release(batch):
                STATS.add("batches_failed")
                STATS.add("dropped", len(batch))


def _dumps(body: Any) -> bytes:
    """Compact UTF-8 JSON; raises TypeError/ValueError for what is not plain JSON."""
    if orjson is not None:
        return orjson.dumps(body)  # NaN/Infinity become null
    return json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def _make_serialisable(batch: list[Event]) -> None:
    """Replace each event by a JSON-safe copy (odd values as strings); drop what cannot be."""
    kept: list[Event] = []
    for event in batch:
        try:
            kept.append(json.loads(json.dumps(event, default=str)))
        except (TypeError, ValueError, RecursionError) as exc:
            STATS.error("sender.serialise", exc)
            STATS.add("dropped")
    batch[:] = kept
