"""The bridge's counters and queue depths (``otel_posthog.stats()``), optionally as OTel metrics.

Shared by every layer that delivers: the in-process bridge, the OTLP receiver and delivery.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Protocol

log = logging.getLogger("otel_posthog")

COUNTERS = (
    "queued",
    "sent",
    "retried",
    "spooled",
    "dropped",
    "errors",
    "batches_sent",
    "batches_failed",
    "spool_dropped",
    "spool_quarantined",
)
REPORT_INTERVAL_S = 60.0


class _HasGauges(Protocol):
    def gauges(self) -> dict[str, int]: ...


class Stats:
    """Counters of the bridge; errors are logged once per kind and counted.

    When events were dropped, one summary line is logged at most every
    ``report_interval_s`` (60 s) seconds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._errors_by_kind: dict[str, int] = {}
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()
        self.report_interval_s = REPORT_INTERVAL_S
        self._last_report = float("-inf")
        self._reported_dropped = 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n
        if name == "dropped":
            self.maybe_report()

    def track(self, source: _HasGauges) -> None:
        """Include ``source.gauges()`` (queue and spool depths) in :meth:`snapshot`."""
        self._sources.add(source)

    def maybe_report(self) -> None:
        """Log one line if events were dropped since the last line, at most once a minute."""
        now = time.monotonic()
        if now - self._last_report < self.report_interval_s:
            return
        with self._lock:
            counts = dict(self._counts)
            dropped = counts["dropped"] - self._reported_dropped
            if dropped <= 0 or now - self._last_report < self.report_interval_s:
                return
            self._last_report = now
            self._reported_dropped = counts["dropped"]
        log.warning(
            "otel_posthog: %d events dropped since the last report; totals: queued=%d sent=%d "
            "retried=%d spooled=%d dropped=%d errors=%d",
            dropped,
            *(counts[k] for k in ("queued", "sent", "retried", "spooled", "dropped", "errors")),
        )

    def error(self, kind: str, exc: BaseException | None = None) -> None:
        with self._lock:
            self._counts["errors"] += 1
            first = kind not in self._errors_by_kind
            self._errors_by_kind[kind] = self._errors_by_kind.get(kind, 0) + 1
        if first:
            log.warning("otel_posthog: error in %s (logged once, counted): %r", kind, exc)

    def snapshot(self, gauges: bool = True) -> dict[str, int | dict[str, int]]:
        with self._lock:
            out: dict[str, int | dict[str, int]] = dict(self._counts)
            out["errors_by_kind"] = dict(self._errors_by_kind)
        if gauges:
            totals: dict[str, int] = {"queue_depth": 0, "spool_depth": 0}
            for source in list(self._sources):
                for key, value in source.gauges().items():
                    totals[key] = totals.get(key, 0) + value
            out.update(totals)
        return out

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._errors_by_kind = {}
            self._reported_dropped = 0
            self._last_report = float("-inf")


STATS = Stats()


def _reinit_stats_lock() -> None:
    STATS._lock = threading.Lock()  # a thread may have held it at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_stats_lock)


def register_metrics(meter_provider: Any = None) -> None:
    """Export the counters as OTel metrics (``otel_posthog.events.<name>``), optional.

    Uses ``meter_provider`` or the global one; call once after the metrics SDK is set up.
    """
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Observation

    provider = meter_provider or metrics.get_meter_provider()
    meter = provider.get_meter("otel_posthog")

    def counter(name: str) -> Any:
        def observe(options: CallbackOptions) -> list[Observation]:
            value = STATS.snapshot(gauges=False)[name]
            return [Observation(value if isinstance(value, int) else 0)]

        return observe

    for name in ("queued", "sent", "retried", "spooled", "dropped", "errors"):
        meter.create_observable_counter(
            f"otel_posthog.events.{name}",
            callbacks=[counter(name)],
            unit="{event}",
            description=f"PostHog bridge: events {name}",
        )

    def depths(options: CallbackOptions) -> list[Observation]:
        snap = STATS.snapshot()
        return [
            Observation(int(snap.get(k, 0)), {"queue": k.removesuffix("_depth")})  # type: ignore[arg-type]
            for k in ("queue_depth", "spool_depth")
        ]

    meter.create_observable_gauge("otel_posthog.queue.depth", callbacks=[depths], unit="{event}")
