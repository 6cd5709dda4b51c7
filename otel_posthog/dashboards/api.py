"""A small client of PostHog's REST API: bearer key, pagination, bounded retries, clear errors.

Every failure is an ``ApiError`` whose message is one line a user can act on; the personal
API key never appears in a message, a log or a repr.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

CLOUD_APP_HOSTS = {
    "https://us.i.posthog.com": "https://us.posthog.com",
    "https://eu.i.posthog.com": "https://eu.posthog.com",
}
DEFAULT_HOST = "https://us.posthog.com"
ATTEMPTS = 4  # network errors and 5xx: a request is tried at most this often
RATE_LIMIT_ATTEMPTS = 6  # 429 answers honoured per request before giving up
MAX_RETRY_AFTER_S = 60.0
TIMEOUT_S = (10.0, 60.0)  # connect, read
PAGE_LIMIT = 100
MAX_PAGES = 1000
_SCOPE = re.compile(r"\b([a-z_]+:(?:read|write))\b")


class ApiError(RuntimeError):
    """PostHog refused or could not be reached; ``str()`` is one line for the user."""


class AmbiguousWrite(ApiError):
    """A create whose answer was lost: it may or may not have happened."""


def app_host(host: str | None) -> str:
    """The app host for ``host``: Cloud's ingestion hosts map to their app hosts."""
    value = (host or DEFAULT_HOST).strip().rstrip("/")
    if not value:
        value = DEFAULT_HOST
    if "://" not in value:
        raise ApiError(f"the PostHog host {value!r} needs a scheme (https://...)")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError(f"the PostHog host {value!r} is not an http(s) URL")
    return CLOUD_APP_HOSTS.get(value, value)


def _retry_after(value: str | None) -> float:
    if not value:
        return 1.0
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return 1.0
        seconds = parsed.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip().splitlines()[0][:300] if response.text.strip() else ""
    if isinstance(body, dict):
        for name in ("detail", "error", "message"):
            if isinstance(body.get(name), str):
                return str(body[name])[:300]
        attr = body.get("attr")
        return (f"{attr}: " if attr else "") + str(body)[:300]
    return str(body)[:300]


class Client:
    """PostHog's REST API for one project, under ``/api/projects/{project_id}/``."""

    def __init__(
        self,
        host: str,
        project_id: str,
        api_key: str,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.host = app_host(host)
        self.project_id = project_id
        self._key = api_key
        self._sleep = sleep or (lambda seconds: time.sleep(seconds))
        self._session = requests.Session()
        # proxies from the environment, but never for a loopback host (the local sink)
        loopback = urlsplit(self.host).hostname in ("127.0.0.1", "localhost", "::1")
        self._session.trust_env = not loopback
        self.writes = 0

    def __repr__(self) -> str:  # never the key
        return f"Client({self.host!r}, project {self.project_id!r})"

    def project_path(self, collection: str) -> str:
        return f"/api/projects/{self.project_id}/{collection}/"

    def request(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        """One call with retries; the decoded JSON answer (None for 204)."""
        url = path if "://" in path else self.host + path
        shown = urlsplit(url).path
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        failures = limited = 0
        while True:
            try:
                response = self._session.request(
                    method,
                    url,
                    json=body,
                    params=params,
                    headers=headers,
                    timeout=TIMEOUT_S,
                    allow_redirects=False,  # a redirected POST would become a GET
                )
            except requests.RequestException as exc:
                failures += 1
                reason = type(exc).__name__
                if method == "POST":
                    raise AmbiguousWrite(f"{method} {shown}: no answer ({reason})") from None
                if failures >= ATTEMPTS:
                    raise ApiError(
                        f"cannot reach PostHog at {self.host} ({reason}) after {failures} tries"
                    ) from None
                self._sleep(0.5 * 2 ** (failures - 1))
                continue
            status = response.status_code
            if status == 429 and limited < RATE_LIMIT_ATTEMPTS:
                limited += 1
                self._sleep(_retry_after(response.headers.get("Retry-After")))
                continue
            if status >= 500:
                failures += 1
                if method == "POST":
                    raise AmbiguousWrite(f"{method} {shown}: PostHog answered {status}")
                if failures < ATTEMPTS:
                    self._sleep(0.5 * 2 ** (failures - 1))
                    continue
            if method != "GET" and status < 300:
                self.writes += 1
            return self._answer(method, shown, response)

    def _answer(self, method: str, path: str, response: requests.Response) -> Any:
        status = response.status_code
        if status < 300:
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise ApiError(f"{method} {path}: PostHog's answer is not JSON") from None
        if 300 <= status < 400:
            where = response.headers.get("Location", "elsewhere")
            raise ApiError(
                f"PostHog answered {status} to {method} {path}, redirecting to {where}; "
                "give that host with --host (the app host, e.g. https://us.posthog.com)"
            )
        detail = _detail(response)
        if status == 401:
            raise ApiError(
                "PostHog rejected the personal API key (401): the key is wrong, expired or "
                "revoked; check POSTHOG_PERSONAL_API_KEY"
            )
        if status == 403:
            scope = _SCOPE.search(detail)
            if scope:
                raise ApiError(
                    f"the personal API key lacks the scope {scope.group(1)!r} (403 on "
                    f"{method} {path}); add it to the key in PostHog's settings"
                )
            raise ApiError(f"PostHog refused {method} {path} (403): {detail or 'forbidden'}")
        if status == 404 and re.fullmatch(
            rf"/api/projects/{re.escape(self.project_id)}/\w+/", path
        ):
            raise ApiError(
                f"project {self.project_id} not found at {self.host} (404); check "
                "POSTHOG_PROJECT_ID / --project-id and that the key may read it"
            )
        if status == 429:
            raise ApiError(f"PostHog kept rate-limiting {method} {path} (429); try again later")
        raise ApiError(f"PostHog answered {status} to {method} {path}: {detail}")

    def list(self, collection: str, **params: Any) -> list[dict[str, Any]]:
        """Every row of a collection, following ``next`` (same host only)."""
        return list(self._pages(self.project_path(collection), {"limit": PAGE_LIMIT, **params}))

    def _pages(self, path: str, params: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        url: str | None = path
        for _ in range(MAX_PAGES):
            if url is None:
                return
            page = self.request("GET", url, params=params)
            params = None  # `next` carries them
            if isinstance(page, list):
                yield from page
                return
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise ApiError(f"GET {path}: PostHog's answer is not a list")
            yield from (row for row in page["results"] if isinstance(row, dict))
            url = page.get("next") or None
            if url:
                # the key goes to the host we were given, never where an answer points
                parts = urlsplit(url)
                url = parts.path + (f"?{parts.query}" if parts.query else "")
        raise ApiError(f"GET {path}: more than {MAX_PAGES} pages")

    def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", self.project_path(collection), body) or {})

    def update(self, collection: str, object_id: Any, body: dict[str, Any]) -> dict[str, Any]:
        path = f"{self.project_path(collection)}{object_id}/"
        return dict(self.request("PATCH", path, body) or {})

    def delete(self, collection: str, object_id: Any) -> None:
        try:
            self.request("DELETE", f"{self.project_path(collection)}{object_id}/")
        except ApiError as exc:
            if "answered 404" not in str(exc):  # already gone (an earlier try's answer lost)
                raise

    def me(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/users/@me/") or {})
