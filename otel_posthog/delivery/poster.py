"""The ``/batch/`` wire poster: one batch, one POST, and what PostHog's answer means.

The wire format is posthog-python's request layer's (``posthog.request.post``): the same
URL, headers and body (``batch``, ``sent_at``, ``api_key``), gzip-compressed. A post that
did not land raises :class:`DeliveryError`, which says whether a retry may succeed
(network errors, 408, 429, 5xx) and for how long PostHog asked to wait (``Retry-After``).
"""

from __future__ import annotations

import gzip
import json
import time
from datetime import datetime, timezone
from typing import Any

import requests
from posthog import request as posthog_request

try:  # a dependency; the standard library is the fallback where no wheel installs
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

from ..compat import suppressed_instrumentation
from ..core.settings import Settings
from ..counters import STATS

Event = dict[str, Any]

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


def _dumps(body: Any) -> bytes:
    """Compact UTF-8 JSON; raises TypeError/ValueError for what is not plain JSON."""
    if orjson is not None:
        return orjson.dumps(body)  # NaN/Infinity become null
    return json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def make_serialisable(batch: list[Event]) -> None:
    """Replace each event by a JSON-safe copy (odd values as strings); drop what cannot be."""
    kept: list[Event] = []
    for event in batch:
        try:
            kept.append(json.loads(json.dumps(event, default=str)))
        except (TypeError, ValueError, RecursionError) as exc:
            STATS.error("sender.serialise", exc)
            STATS.add("dropped")
    batch[:] = kept
