"""Secrets out of the exception events and error statuses other exporters receive.

The instrumentations record an exception on its span with ``Span.record_exception``
(an ``exception`` event holding ``exception.message`` and ``exception.stacktrace``) and
describe the error in ``Span.set_status`` (``"HTTPError: 500 ... for url: ...?api_key=..."``).
With ``OTEL_POSTHOG_SCRUB_SECRETS`` on, the bridge wraps those two public methods of the
SDK's ``Span`` class once per process so that the text they store is scrubbed by
:mod:`otel_posthog.core.scrub`: the caller's attributes are passed on, the message and the
stack trace are given scrubbed (``record_exception`` lets explicit attributes override
the ones it computes). Nothing is added to the common path but one call in
``set_status``. When the SDK's methods do not have the expected signature, nothing is
wrapped (and :func:`install` says so).
"""

from __future__ import annotations

import functools
import inspect
import threading
import traceback
from collections.abc import Mapping
from typing import Any

from ..core.scrub import scrubber

_MESSAGE = "exception.message"
_STACKTRACE = "exception.stacktrace"
_EXPECTED = ["self", "exception", "attributes", "timestamp", "escaped"]
_lock = threading.Lock()
_installed = False
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


def install(extra: tuple[str, ...] = ()) -> bool:
    """Wrap the SDK span's ``record_exception`` and ``set_status``; True when in place."""
    global _installed, _extra
    _extra = tuple(extra)
    with _lock:
        if _installed:
            return True
        try:
            from opentelemetry.sdk.trace import Span
            from opentelemetry.trace import Status

            params = list(inspect.signature(Span.record_exception).parameters)
        except Exception:
            return False
        if params != _EXPECTED:
            return False
        original_record = Span.record_exception
        original_status = Span.set_status

        @functools.wraps(original_record)
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
            original_record(self, exception, attributes, timestamp, escaped)

        @functools.wraps(original_status)
        def set_status(self: Any, status: Any, description: str | None = None) -> None:
            if description:
                description = scrubber(_extra)(description)
            elif type(status) is Status and status.description:
                text = scrubber(_extra)(status.description)
                if text != status.description:
                    status = Status(status.status_code, text)
            original_status(self, status, description)

        Span.record_exception = record_exception  # type: ignore[method-assign]
        Span.set_status = set_status  # type: ignore[method-assign]
        _installed = True
        return True
