"""Secrets out of the exception events and error statuses other exporters receive.

The instrumentations record an exception on its span with ``Span.record_exception``
(an ``exception`` event holding ``exception.message`` and ``exception.stacktrace``) and
describe the error in ``Span.set_status`` (``"HTTPError: 500 ... for url: ...?api_key=..."``).
With ``OTEL_POSTHOG_SCRUB_SECRETS`` on, the bridge wraps those two public methods of the
SDK's ``Span`` class once per process so that the text they store is scrubbed by
:mod:`otel_posthog.core.scrub`: the caller's attributes are passed on, the message and the
stack trace are given scrubbed (``record_exception`` lets explicit attributes override
the ones it computes). Nothing is added to the common path but one call in
``set_status``. The class patch itself is :func:`otel_posthog.compat.wrap_span_error_methods`
(probed): when the probe fails, nothing is wrapped (and :func:`install` says so).
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from .. import compat
from ..core.scrub import scrubber

log = logging.getLogger("otel_posthog")

_MESSAGE = "exception.message"
_STACKTRACE = "exception.stacktrace"
_lock = threading.Lock()
_installed: bool | None = None  # decided once per process
_extra: tuple[str, ...] = ()


def scrubbed_exception_attributes(
    exception: BaseException, attributes: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The event attributes ``record_exception`` would store, with secrets masked."""
    scrub = scrubber(_extra)
    out: dict[str, Any] = {
        _MESSAGE: scrub(str(exception)),
        _STACKTRACE: scrub("".join(traceback.format_exception(exception))),
    }
    for key, value in (attributes or {}).items():
        out[key] = scrub(value) if key in (_MESSAGE, _STACKTRACE) and type(value) is str else value
    return out


def _record_exception(original: Callable[..., None]) -> Callable[..., None]:
    def record_exception(
        self: Any,
        exception: BaseException,
        attributes: Any = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        try:
            attributes = scrubbed_exception_attributes(exception, attributes)
        except Exception:  # never break the app's span: record what it gave
            pass
        original(self, exception, attributes, timestamp, escaped)

    return record_exception


def _set_status(original: Callable[..., None]) -> Callable[..., None]:
    from opentelemetry.trace import Status

    def set_status(self: Any, status: Any, description: str | None = None) -> None:
        if description:
            description = scrubber(_extra)(description)
        elif type(status) is Status and status.description:
            text = scrubber(_extra)(status.description)
            if text != status.description:
                status = Status(status.status_code, text)
        original(self, status, description)

    return set_status


def install(extra: tuple[str, ...] = ()) -> bool:
    """Wrap the SDK span's ``record_exception`` and ``set_status``; True when in place.

    False when :mod:`otel_posthog.compat` keeps the SDK's methods (a signature it does not
    know): PostHog events are still scrubbed (by the mapping), other exporters then get
    the text as the app recorded it (logged once).
    """
    global _installed, _extra
    _extra = tuple(extra)
    with _lock:
        if _installed is None:
            _installed = compat.wrap_span_error_methods(_record_exception, _set_status)
            if not _installed:
                log.info(
                    "otel_posthog: exception text other exporters receive is not scrubbed "
                    "(the SDK span's methods are not wrapped); PostHog events are"
                )
        return _installed
