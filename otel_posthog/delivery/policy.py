"""The delivery policy: what becomes of a batch when PostHog takes it, refuses it or is away.

Two strategies. Without a spool (or while it cannot be used) a failed batch is retried in
memory (``max_retries``, exponential backoff honouring ``Retry-After``) and then counted as
dropped. With a spool (:mod:`otel_posthog.delivery.spool`) a batch that fails with a
retryable error goes to disk at once, the sender backs off (at least ``Retry-After``) and
re-sends from the spool, oldest first; while PostHog is down or the spool holds a backlog,
new batches join the spool so the order holds. A batch PostHog rejects (4xx other than 408
and 429) is counted as dropped either way. A spool that fails (read-only or full disk) is
left alone for a while and batches are delivered from memory meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..core.settings import Settings
from ..counters import STATS
from .poster import BatchPoster, DeliveryError, Event, make_serialisable

if TYPE_CHECKING:
    from .spool import Spool

log = logging.getLogger("otel_posthog")

_MAX_BACKOFF_S = 30.0
_MAX_RETRY_AFTER_S = 600.0
_SPOOL_CHECK_S = 5.0
_SPOOL_RETRY_S = 60.0  # a spool that failed (read-only, full disk) is tried again after this
_DRAIN_BUDGET_S = 0.25  # spool re-sends per worker cycle, before the queue is looked at again


class InFlight:
    """The batch being posted, and the lock under which it changes hands.

    A batch is accounted for (sent, spooled or dropped) by whoever takes it from here
    first: the delivery that posted it, or the sender's flush hand-off at a deadline.
    """

    __slots__ = ("lock", "batch")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batch: list[Event] | None = None

    def release(self, batch: list[Event]) -> bool:
        """Caller holds ``lock``; False when a flush hand-off already took the batch."""
        if self.batch is not batch:
            return False
        self.batch = None
        return True


class DeliveryPolicy:
    """Delivers the batches of one sender in one process (see the module docstring).

    ``stopping`` is set by the sender's shutdown: in-memory retries and spool re-sends stop.
    """

    def __init__(self, settings: Settings, spool: Spool | None, inflight: InFlight) -> None:
        self.settings = settings
        self.spool = spool
        self.inflight = inflight
        self.poster = BatchPoster(settings)
        self.stopping = False
        self._down_until = 0.0  # PostHog is unavailable until then (backoff, Retry-After)
        self._backoff = 0.0
        self._spool_backlog = spool is not None  # a previous run may have left events
        self._spool_down_until = 0.0  # the spool failed: deliver from memory until then
        self._next_spool_check = 0.0

    # -- the spool ---------------------------------------------------------------------
    def spool_usable(self) -> bool:
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

    def store(self, events: list[Event], drop_on_failure: bool = True) -> bool:
        """To the spool (True), else counted as dropped (needs no lock of its own).

        With ``drop_on_failure=False`` a failed write drops nothing: the caller keeps them.
        """
        if self.spool is not None and self.spool_usable():
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
        """The spool's depth, for ``stats()`` (nothing without a usable spool)."""
        if self.spool is None or not self.spool_usable():
            return {}
        try:
            return {"spool_depth": self.spool.depth()}
        except Exception as exc:
            STATS.error("spool.depth", exc)
            return {}

    # -- one batch -----------------------------------------------------------------------
    def send(self, batch: list[Event], deadline: float | None) -> None:
        """Deliver ``batch`` (the in-flight one) by the strategy that applies now."""
        if self.spool_usable():
            self._send_via_spool(batch, deadline)
        else:
            self._send_from_memory(batch, deadline)

    def _send_via_spool(self, batch: list[Event], deadline: float | None) -> None:
        """One post; a retryable failure puts the batch in the spool and PostHog on backoff."""
        inflight = self.inflight
        if time.monotonic() < self._down_until or self._spool_backlog:
            with inflight.lock:  # PostHog is down or older events wait: keep the order
                if not inflight.release(batch) or self.store(batch, drop_on_failure=False):
                    return
                inflight.batch = batch  # the spool failed: deliver this batch from memory
            self._send_from_memory(batch, deadline)
            return
        err = self._post_once(batch, deadline)
        with inflight.lock:
            if not inflight.release(batch):
                return
            if err is None:
                self._recovered()
                return
            if not err.retryable:
                self._rejected(err, len(batch))
                return
            self._trip(err)
            if self.store(batch, drop_on_failure=False):
                return
            inflight.batch = batch  # the spool failed: retry this batch from memory
        self._send_from_memory(batch, deadline)

    def _post_once(self, batch: list[Event], deadline: float | None) -> DeliveryError | None:
        timeout = self.settings.request_timeout_ms / 1000
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                return DeliveryError("flush deadline passed", True)
        try:
            try:
                self.poster.post(batch, timeout)
            except (TypeError, ValueError, RecursionError):
                make_serialisable(batch)  # e.g. a before_send hook added an odd value
                self.poster.post(batch, timeout)
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

    def _send_from_memory(self, batch: list[Event], deadline: float | None) -> None:
        """Post with in-memory retries (no usable spool); what is not delivered is dropped."""
        attempt = 0
        while True:
            err = self._post_once(batch, deadline)
            if err is None:
                with self.inflight.lock:
                    self.inflight.release(batch)
                return
            if not err.retryable or attempt >= self.settings.max_retries or self.stopping:
                break
            delay = min(2.0**attempt * 0.5, _MAX_BACKOFF_S)
            if err.retry_after:
                delay = max(delay, min(err.retry_after, _MAX_BACKOFF_S))
            attempt += 1
            STATS.add("retried", len(batch))
            if deadline is not None and time.monotonic() + delay >= deadline:
                break
            time.sleep(delay)
        with self.inflight.lock:
            if self.inflight.release(batch):
                STATS.add("batches_failed")
                STATS.add("dropped", len(batch))

    # -- the spool's backlog -------------------------------------------------------------
    def drain_spool(self) -> bool:
        """Re-send spooled events, oldest first, for a bounded time; True when more may wait."""
        try:
            return self._drain_spool_once()
        except Exception as exc:  # e.g. a full disk refuses the claim: new batches go
            STATS.error("spool.read", exc)  # straight to PostHog, the spool is tried later
            self._spool_backlog = False
            self._next_spool_check = time.monotonic() + _SPOOL_CHECK_S
            return False

    def _drain_spool_once(self) -> bool:
        spool = self.spool
        if spool is None:
            return False
        budget_end = time.monotonic() + _DRAIN_BUDGET_S
        while not self.stopping and time.monotonic() < budget_end:
            now = time.monotonic()
            if now < self._down_until:
                return False
            if not self._spool_backlog and now < self._next_spool_check:
                return False
            claim = spool.claim(self.settings.batch_size)
            if claim is None:
                self._spool_backlog = False
                self._next_spool_check = now + _SPOOL_CHECK_S  # other processes' leftovers
                return False
            self._spool_backlog = True
            STATS.add("retried", len(claim.events))
            err = self._post_once(claim.events, None) if claim.events else None
            if err is None:
                spool.ack(claim)
                self._recovered()
            elif err.retryable:
                spool.release(claim)
                self._trip(err)
                return False
            else:
                spool.ack(claim)
                self._rejected(err, len(claim.events))
        return True  # more may wait: continue after a look at the queue
