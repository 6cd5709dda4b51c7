"""The sender: a bounded in-memory queue and one worker thread that batches what it holds.

The request path only appends to a deque (no lock, no I/O). The worker maps queued work to
events (via a callable the owner gives it), batches them and hands each batch to the
delivery policy (:mod:`otel_posthog.delivery.policy`: retries, backoff, the spool).
``flush()``/``shutdown()`` keep their deadline: what is still in memory then goes to the
spool, or is counted as dropped (the flush hand-off). The worker runs with OpenTelemetry
instrumentation suppressed, so the bridge's own HTTP calls never become spans or events.
After ``fork()`` the child gets a fresh queue, locks, session and thread (gunicorn
``--preload``); the parent's queued events stay with the parent.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..compat import suppressed_instrumentation
from ..core.settings import Settings
from ..counters import STATS
from .policy import DeliveryPolicy, InFlight
from .poster import Event

if TYPE_CHECKING:
    from .spool import Spool

Work = Any  # an item the owner's mapper turns into events
Mapper = Callable[[Work], list[Event]]

_OVERFLOW_CHUNK = 200
_SLICE = 32  # queued items mapped between GIL yields (see EventSender._take)


class EventSender:
    """Owns the queue and the worker thread of one pipeline or receiver; its batches go
    out by the :class:`~otel_posthog.delivery.policy.DeliveryPolicy` (with ``spool``, if
    given)."""

    def __init__(self, settings: Settings, mapper: Mapper, spool: Spool | None = None) -> None:
        self.settings = settings
        # read on every submit (settings are frozen)
        self._max_queue_size, self._batch_size = settings.max_queue_size, settings.batch_size
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
        self._lock = threading.Lock()  # starting the thread
        self._inflight = InFlight()
        self._hold = self._inflight.lock  # pending / in-flight events vs. the flush hand-off
        self._pending: list[Event] = []
        self._first_at = 0.0
        self._policy = DeliveryPolicy(self.settings, self.spool, self._inflight)
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
        if len(queue) >= self._max_queue_size:
            return self._overflow(kind, item)
        queue.append((kind, item))
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()  # once: set() takes a lock, and the worker may be busy a while
        return True

    def _overflow(self, kind: str, item: Any) -> bool:
        if not self._policy.spool_usable():
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
        self._policy.store(events)

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
        self._stopping = self._policy.stopping = True
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
            if self._inflight.batch is not None:
                # may still land too: same uuid, deduplicated
                leftovers.extend(self._inflight.batch)
                self._inflight.batch = None
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
                self._policy.store(leftovers)
        if self.spool is not None:
            self._spool_overflow()

    def gauges(self) -> dict[str, int]:
        """Current depths, for ``stats()``."""
        return {"queue_depth": len(self._queue), **self._policy.gauges()}

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
                    if self._policy.spool_usable() and self._policy.drain_spool():
                        self._wake.set()  # more may wait: continue after a look at the queue
                except Exception as exc:  # never let the worker die
                    STATS.error("sender.worker", exc)
                STATS.maybe_report()

    def _cycle(self, interval: float) -> None:
        bs = self.settings.batch_size
        flushes: list[tuple[threading.Event, float]] = []
        while not self._stopping:
            marker = self._take(bs)
            while (batch := self._next_batch(bs, False)) is not None:
                self._policy.send(batch, None)
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
                self._policy.send(batch, deadline)
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
            self._inflight.batch = batch
            return batch
