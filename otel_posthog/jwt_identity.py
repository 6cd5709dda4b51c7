"""The person behind a bearer token: JWTs verified with a secret, a PEM key or a JWKS.

Verification on the request path is CPU only: results are cached per token, and JWKS
keys are fetched on a background thread. A token whose key id is not known yet is
``pending`` and is verified again off the request path, by the export worker, which may
refresh the key set (at most once a minute for an unknown ``kid``).
A token that fails verification for any reason is simply not trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from .headers import sanitize
from .settings import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS, Settings

log = logging.getLogger("otel_posthog")

_CACHE_SIZE = 4096
_LEEWAY_S = 5
_JWKS_MIN_REFRESH_S = 60.0


@dataclass(frozen=True, slots=True)
class JwtResult:
    distinct_id: str | None
    pending: bool = False


UNTRUSTED = JwtResult(None)
PENDING = JwtResult(None, pending=True)


class JwksCache:
    """Signing keys by ``kid``, fetched off the request path and refreshed on unknown ids."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._lock = threading.Lock()
        self._last_fetch = 0.0
        self._fetching = False
        self.loaded = threading.Event()

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        keys = self._keys
        if kid is None:
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    def refresh_in_background(self) -> None:
        with self._lock:
            if self._fetching or time.monotonic() - self._last_fetch < _JWKS_MIN_REFRESH_S:
                return
            self._fetching = True
        threading.Thread(target=self._fetch_guarded, name="otel-posthog-jwks", daemon=True).start()

    def refresh_now(self) -> None:
        """Fetch now (export worker only), unless fetched within the last minute."""
        with self._lock:
            fetching = self._fetching
            recent = time.monotonic() - self._last_fetch < _JWKS_MIN_REFRESH_S
            if not fetching and not recent:
                self._fetching = True
        if fetching:
            self.loaded.wait(self.timeout_s)
        elif not recent:
            self._fetch_guarded()

    def _fetch_guarded(self) -> None:
        from .runtime import STATS, suppressed_instrumentation

        try:
            with suppressed_instrumentation():
                with urllib.request.urlopen(self.url, timeout=self.timeout_s) as resp:  # noqa: S310
                    data = json.loads(resp.read(1_000_000))
            keys: dict[str, jwt.PyJWK] = {}
            for entry in data.get("keys", []):
                try:
                    key = jwt.PyJWK.from_dict(entry)
                except Exception:
                    continue  # unusable key types are skipped, the rest still work
                keys[key.key_id or ""] = key
            self._keys = keys
        except Exception as exc:
            STATS.error("jwks.fetch", exc)
        finally:
            with self._lock:
                self._last_fetch = time.monotonic()
                self._fetching = False
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

    def resolve(self, token: str | None, allow_fetch: bool = False) -> JwtResult:
        """The verified person of ``token``; never raises."""
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
            result, exp = self._verify(token, allow_fetch)
        except Exception as exc:
            from .runtime import STATS

            STATS.error("jwt.verify", exc)
            result, exp = UNTRUSTED, None
        if not result.pending:
            with self._lock:
                self._cache[digest] = (result.distinct_id, exp)
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        return result

    def _verify(self, token: str, allow_fetch: bool) -> tuple[JwtResult, float | None]:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return UNTRUSTED, None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            return UNTRUSTED, None
        # numeric user ids in `sub` are common; the signature is what makes a token trusted
        options: Any = {"verify_aud": bool(s.jwt_audience), "verify_sub": False}
        kwargs: dict[str, Any] = {
            "audience": list(s.jwt_audience) or None,
            "issuer": s.jwt_issuer,
            "leeway": _LEEWAY_S,
        }
        if not s.jwt_verify:
            claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": True})
            return self._person(claims), claims.get("exp")
        key: Any
        if alg in HMAC_ALGORITHMS:
            if not s.jwt_secret or alg not in self._hmac_algs:
                return UNTRUSTED, None
            key, algorithms = s.jwt_secret, [alg]
        else:
            if alg not in self._asym_algs:
                return UNTRUSTED, None
            key = None
            if self.jwks is not None:
                jwk = self.jwks.key(header.get("kid"))
                if jwk is None:
                    if not allow_fetch:
                        self.jwks.refresh_in_background()
                        return PENDING, None
                    self.jwks.refresh_now()
                    jwk = self.jwks.key(header.get("kid"))
                if jwk is not None:
                    if jwk.algorithm_name not in (alg, None) and jwk.algorithm_name != "":
                        return UNTRUSTED, None
                    key = jwk.key
            if key is None:
                key = self._public_key
            if key is None:
                return UNTRUSTED, None
            algorithms = [alg]
        try:
            claims = jwt.decode(token, key, algorithms=algorithms, options=options, **kwargs)
        except jwt.PyJWTError:
            return UNTRUSTED, None
        return self._person(claims), claims.get("exp")

    def _person(self, claims: dict[str, Any]) -> JwtResult:
        value = claims.get(self.settings.jwt_distinct_id_claim)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return JwtResult(sanitize(str(value)))
        return UNTRUSTED
