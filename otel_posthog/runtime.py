"""Process-wide pieces: counters, the active settings, instrumentation suppression.

Small on purpose: the bridge's state lives in its processor; this module only holds what
the propagators and helpers need without a reference to it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context

from .settings import ConfigError, Settings, resolve_settings

if TYPE_CHECKING:
    from .request_state import RequestState

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
)


class Stats:
    """Counters of the bridge; errors are logged once per kind and counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._errors_by_kind: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def error(self, kind: str, exc: BaseException | None = None) -> None:
        with self._lock:
            self._counts["errors"] += 1
            first = kind not in self._errors_by_kind
            self._errors_by_kind[kind] = self._errors_by_kind.get(kind, 0) + 1
        if first:
            log.warning("otel_posthog: error in %s (logged once, counted): %r", kind, exc)

    def snapshot(self) -> dict[str, int | dict[str, int]]:
        with self._lock:
            out: dict[str, int | dict[str, int]] = dict(self._counts)
            out["errors_by_kind"] = dict(self._errors_by_kind)
        return out

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._errors_by_kind = {}


STATS = Stats()

_settings: Settings | None = None


def set_current_settings(settings: Settings) -> None:
    global _settings
    _settings = settings


def current_settings() -> Settings:
    """Settings of the configured bridge, else from the environment (defaults if invalid)."""
    global _settings
    if _settings is None:
        try:
            _settings = resolve_settings()
        except ConfigError as exc:
            log.error("otel_posthog: %s", exc)
            _settings = Settings()
    return _settings


def resolved_person(state: RequestState) -> str | None:
    return (
        state.identified_id
        or state.jwt_distinct_id
        or state.baggage_distinct_id
        or state.header_distinct_id
    )


@contextmanager
def suppressed_instrumentation() -> Iterator[None]:
    """No spans from what runs inside: the bridge's own HTTP calls are never traced."""
    ctx = otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True)
    ctx = otel_context.set_value("suppress_instrumentation", True, ctx)
    ctx = otel_context.set_value(otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, ctx)
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
