"""The person behind a bearer token: JWTs verified with a secret, a PEM key or a JWKS.

Verification on the request path is CPU only: results are cached per token, and JWKS
keys are fetched on a background thread. A token whose key id is not known yet is
``pending`` and is verified again off the request path, by the export worker, which may
wait for a key refresh (at most once a minute for an unknown ``kid``, sooner after a
failed fetch), never longer than the fetch's total deadline.
A token that fails verification is not trusted. Only definitive results are cached (a
good signature, a bad signature or claims with a known key, an expired token); a token
whose key could not be found (unknown ``kid`` during a rotation, the IdP down) is checked
again after the keys are refreshed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import socket
import ssl
import threading
import time
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from ..core.headers import sanitize
from ..core.settings import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS, Settings

log = logging.getLogger("otel_posthog")

_CACHE_SIZE = 4096
_LEEWAY_S = 5
_JWKS_MIN_REFRESH_S = 60.0
_JWKS_RETRY_FAILED_S = 10.0
_JWKS_DEADLINE_S = 5.0
_JWKS_MAX_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class JwtResult:
    distinct_id: str | None
    pending: bool = False


UNTRUSTED = JwtResult(None)
PENDING = JwtResult(None, pending=True)


class _Watch:
    """The sockets of one fetch, shut down when its deadline passes (wakes any read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[Any] = []
        self.expired = False

    def add(self, sock: Any) -> None:
        with self._lock:
            self._socks.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            _shut(sock)


def _shut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass  # already closed


def _watched(base: type[http.client.HTTPConnection], watch: _Watch) -> Any:
    class Connection(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            watch.add(self.sock)

    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: _Watch) -> None:
        super().__init__()
        self._watch = watch

    def http_open(self, req: Any) -> Any:
        return self.do_open(_watched(http.client.HTTPConnection, self._watch), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: _Watch) -> None:
        self._ctx = ssl.create_default_context()
        super().__init__(context=self._ctx)
        self._watch = watch

    def https_open(self, req: Any) -> Any:
        conn = _watched(http.client.HTTPSConnection, self._watch)
        return self.do_open(conn, req, context=self._ctx)


def fetch_json(url: str, deadline_s: float, max_bytes: int = _JWKS_MAX_BYTES) -> Any:
    """GET ``url`` as JSON within ``deadline_s`` in total (connect, headers and body).

    A per-read timeout is not enough: a server sending one byte a second never trips
    it. A timer shuts the connection's socket down at the deadline, which wakes any
    blocked read; the body is also read in pieces, checking the deadline between them.
    Proxies from the environment are honoured (urllib's opener). Only a name lookup is
    outside the deadline (bounded by the resolver's own timeouts).
    """
    deadline = time.monotonic() + deadline_s
    watch = _Watch()
    timer = threading.Timer(deadline_s, watch.expire)
    timer.daemon = True
    timer.start()
    try:
        opener = urllib.request.build_opener(_HTTPHandler(watch), _HTTPSHandler(watch))
        with opener.open(url, timeout=deadline_s) as resp:
            chunks: list[bytes] = []
            size = 0
            while True:
                if time.monotonic() >= deadline or watch.expired:
                    raise TimeoutError(f"JWKS fetch passed its {deadline_s:g} s deadline")
                chunk = resp.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise ValueError(f"JWKS document larger than {max_bytes} bytes")
                chunks.append(chunk)
            if watch.expired:
                raise TimeoutError(f"JWKS fetch passed its {deadline_s:g} s deadline")
        return json.loads(b"".join(chunks))
    finally:
        timer.cancel()


class JwksCache:
    """Signing keys by ``kid``, fetched off the request path and refreshed on unknown ids.

    Every fetch runs on its own daemon thread with a total deadline (``timeout_s``), so
    a slow or trickling IdP never holds a caller longer than that, and a later refresh
    can always run. Refreshes are at most once per ``min_refresh_s`` after a successful
    fetch and once per ``retry_failed_s`` after a failed one.
    """

    min_refresh_s = _JWKS_MIN_REFRESH_S
    retry_failed_s = _JWKS_RETRY_FAILED_S

    def __init__(self, url: str, timeout_s: float = _JWKS_DEADLINE_S) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._lock = threading.Lock()
        self._last_fetch = 0.0  # monotonic end of the last fetch
        self._last_ok = False
        self._fetching = False
        self._done = threading.Event()
        self._done.set()
        self.loaded = threading.Event()  # set once the first fetch finished, good or bad

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        keys = self._keys
        if kid is None:
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    def refresh_in_background(self) -> threading.Event | None:
        """Start a fetch unless one runs or one ran too recently.

        Returns the running fetch's done event (None when no fetch runs). Never blocks.
        """
        with self._lock:
            if self._fetching:
                return self._done
            wait = self.min_refresh_s if self._last_ok else self.retry_failed_s
            if self._last_fetch and time.monotonic() - self._last_fetch < wait:
                return None
            self._fetching = True
            done = self._done = threading.Event()
        try:
            threading.Thread(
                target=self._fetch_guarded, args=(done,), name="otel-posthog-jwks", daemon=True
            ).start()
        except RuntimeError:  # no threads at interpreter shutdown
            self._finish(done, ok=False)
        return done

    def refresh_now(self, cancel: threading.Event | None = None) -> None:
        """Refresh (as :meth:`refresh_in_background`) and wait for it, export worker only.

        Waits at most the fetch's deadline, and returns at once when ``cancel`` is set
        (a flush or shutdown deadline passed).
        """
        if cancel is not None and cancel.is_set():
            return
        done = self.refresh_in_background()
        if done is None:
            return
        end = time.monotonic() + self.timeout_s + 1.0
        while True:
            left = end - time.monotonic()
            if left <= 0 or done.wait(min(left, 0.05) if cancel is not None else left):
                return
            if cancel is not None and cancel.is_set():
                return

    def _fetch_guarded(self, done: threading.Event) -> None:
        from ..compat import suppressed_instrumentation
        from ..counters import STATS

        ok = False
        try:
            with suppressed_instrumentation():
                data = fetch_json(self.url, self.timeout_s)
            keys: dict[str, jwt.PyJWK] = {}
            for entry in data.get("keys", []):
                try:
                    key = jwt.PyJWK.from_dict(entry)
                except Exception:
                    continue  # unusable key types are skipped, the rest still work
                keys[key.key_id or ""] = key
            self._keys = keys
            ok = True
        except Exception as exc:
            STATS.error("jwks.fetch", exc)
        finally:
            self._finish(done, ok)

    def _finish(self, done: threading.Event, ok: bool) -> None:
        with self._lock:
            self._last_fetch = time.monotonic()
            self._last_ok = ok
            self._fetching = False
        done.set()
        self.loaded.set()


class JwtVerifier:
    """Resolves the person of a bearer token under the configured trust rules."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cache: OrderedDict[bytes, tuple[str | None, float | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.jwks = JwksCache(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
        allowed = settings.jwt_algorithms
        self._hmac_algs = [a for a in (allowed or HMAC_ALGORITHMS) if a in HMAC_ALGORITHMS]
        self._asym_algs = [
            a for a in (allowed or ASYMMETRIC_ALGORITHMS) if a not in HMAC_ALGORITHMS
        ]
        self._public_key: Any = None
        if settings.jwt_public_key:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            self._public_key = load_pem_public_key(settings.jwt_public_key.encode())
        self.configured = bool(
            settings.jwt_secret or settings.jwt_public_key or self.jwks or not settings.jwt_verify
        )
        if not settings.jwt_verify:
            log.warning(
                "otel_posthog: OTEL_POSTHOG_JWT_VERIFY=false: bearer tokens are trusted WITHOUT "
                "signature checks; use this only behind a gateway that already verified them"
            )

    def start(self) -> None:
        if self.jwks is not None:
            self.jwks.refresh_in_background()

    def resolve(
        self, token: str | None, allow_fetch: bool = False, cancel: threading.Event | None = None
    ) -> JwtResult:
        """The verified person of ``token``; never raises.

        ``allow_fetch`` (the export worker only) may wait, up to the fetch deadline or
        until ``cancel`` is set, for a JWKS refresh when the token's key is not known.
        """
        if not token or not self.configured:
            return UNTRUSTED
        digest = hashlib.blake2b(token.encode(), digest_size=16).digest()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None:
            distinct_id, exp = hit
            if exp is None or exp + _LEEWAY_S > time.time():
                return JwtResult(distinct_id)
            return UNTRUSTED
        try:
            result, exp, definitive = self._verify(token, allow_fetch, cancel)
        except Exception as exc:
            from ..counters import STATS

            STATS.error("jwt.verify", exc)
            result, exp, definitive = UNTRUSTED, None, False
        if definitive and not result.pending:
            with self._lock:
                self._cache[digest] = (result.distinct_id, exp)
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        return result

    def _verify(
        self, token: str, allow_fetch: bool, cancel: threading.Event | None
    ) -> tuple[JwtResult, float | None, bool]:
        """(result, expiry, definitive): only a definitive result may be cached."""
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return UNTRUSTED, None, True
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            return UNTRUSTED, None, True
        # numeric user ids in `sub` are common; the signature is what makes a token trusted
        options: Any = {"verify_aud": bool(s.jwt_audience), "verify_sub": False}
        kwargs: dict[str, Any] = {
            "audience": list(s.jwt_audience) or None,
            "issuer": s.jwt_issuer,
            "leeway": _LEEWAY_S,
        }
        if not s.jwt_verify:
            claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": True})
            return self._person(claims), *_expiry(claims)
        key: Any
        definitive = True
        if alg in HMAC_ALGORITHMS:
            if not s.jwt_secret or alg not in self._hmac_algs:
                return UNTRUSTED, None, True
            key, algorithms = s.jwt_secret, [alg]
        else:
            if alg not in self._asym_algs:
                return UNTRUSTED, None, True
            key = None
            if self.jwks is not None:
                jwk = self.jwks.key(header.get("kid"))
                if jwk is None:
                    if not allow_fetch:
                        self.jwks.refresh_in_background()
                        return PENDING, None, False
                    self.jwks.refresh_now(cancel)
                    jwk = self.jwks.key(header.get("kid"))
                if jwk is not None:
                    if jwk.algorithm_name not in (alg, None) and jwk.algorithm_name != "":
                        return UNTRUSTED, None, True
                    key = jwk.key
                else:
                    definitive = False  # the key may come with the next refresh
            if key is None:
                key = self._public_key
            if key is None:
                return UNTRUSTED, None, definitive
            algorithms = [alg]
        try:
            claims = jwt.decode(token, key, algorithms=algorithms, options=options, **kwargs)
        except jwt.PyJWTError:
            return UNTRUSTED, None, definitive
        result = self._person(claims)
        exp, known = _expiry(claims)
        return result, exp, known

    def _person(self, claims: dict[str, Any]) -> JwtResult:
        value = claims.get(self.settings.jwt_distinct_id_claim)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return JwtResult(sanitize(str(value)))
        return UNTRUSTED


def _expiry(claims: dict[str, Any]) -> tuple[float | None, bool]:
    """(``exp`` as a number or None, whether the result may be cached).

    PyJWT accepts a numeric string (``"1700000000"``); anything unusable is not cached.
    """
    exp = claims.get("exp")
    if exp is None:
        return None, True
    try:
        value = float(exp)
    except (TypeError, ValueError, OverflowError):
        return None, False
    if value != value:  # NaN
        return None, False
    return value, True
