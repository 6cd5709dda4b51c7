"""One settings object, resolved once: keyword argument > environment > default.

Every setting has an environment variable (listed in ``ENVIRONMENT_VARIABLES``) so the
zero-code launcher path and the programmatic path configure the same things. Values are
validated when resolved; a bad value raises ``ConfigError`` naming the variable to fix.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .routes import match_key

log = logging.getLogger("otel_posthog")

DEFAULT_HOST = "https://us.i.posthog.com"
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
)


class ConfigError(ValueError):
    """A setting has a value the bridge cannot use; the message says which and why."""


# The hook gets a PostHog event dict and returns it (possibly changed) or None to drop it.
BeforeSend = Callable[[dict[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Settings:
    """Resolved, validated configuration. Build with :func:`resolve_settings`."""

    api_key: str | None = None
    host: str = DEFAULT_HOST
    environment: str | None = None
    slow_request_threshold_ms: float = 1000.0
    slow_request_thresholds: Mapping[str, float] = field(default_factory=dict)
    excluded_routes: tuple[str, ...] = ("/health", "/healthz", "/metrics")
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: tuple[str, ...] = ()
    jwt_audience: tuple[str, ...] = ()
    jwt_issuer: str | None = None
    jwt_distinct_id_claim: str = "sub"
    jwt_verify: bool = True
    capture_ip: bool = False
    traceback_max_chars: int = 4000
    exception_events: bool = False
    api_request_sample_rate: float = 1.0
    span_attributes: bool = True
    redact_query: bool = True
    scrub_secrets: bool = True
    scrub_patterns: tuple[str, ...] = ()
    propagate_identity: bool = False
    propagate_identity_hosts: tuple[str, ...] = ()
    trust_baggage: bool = False
    sampling_key: str | None = field(default=None, repr=False)
    max_queue_size: int = 10_000
    batch_size: int = 500
    flush_interval_ms: int = 500
    request_timeout_ms: int = 10_000
    max_retries: int = 3
    shutdown_timeout_ms: int = 5000
    spool_dir: str | None = None
    spool_max_mb: float = 100.0
    services: tuple[str, ...] = ()
    receiver_token: str | None = None
    ai_events: bool = True
    ai_privacy_mode: bool = False
    before_send: BeforeSend | None = None

    def __post_init__(self) -> None:
        # routes are compared in one form (otel_posthog.core.routes.match_key): what a user copies
        # from an event's endpoint, or writes as the framework does, matches
        set_ = object.__setattr__  # a frozen dataclass
        set_(self, "excluded_routes", tuple(match_key(r) for r in self.excluded_routes))
        set_(
            self,
            "slow_request_thresholds",
            {match_key(r): ms for r, ms in self.slow_request_thresholds.items()},
        )

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)

    def threshold_for(self, route: str) -> float:
        """The slow threshold of a route (any form :func:`~.routes.match_key` takes)."""
        return self.slow_request_thresholds.get(match_key(route), self.slow_request_threshold_ms)


# setting name -> (environment variable, parser). Order is the documentation order.
def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def _parse_float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None


def _parse_list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_thresholds(name: str, raw: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in _parse_list(name, raw):
        route, sep, ms = part.rpartition("=")
        if not sep or not route.strip():
            raise ConfigError(
                f"{name}: {part!r} is not ROUTE=MILLISECONDS "
                f'(example: "/api/chat/stream=30000,/api/export=5000")'
            )
        out[route.strip()] = _parse_float(name, ms.strip())
    return out


def _parse_str(name: str, raw: str) -> str:
    return raw


def _parse_patterns(name: str, raw: str) -> tuple[str, ...]:
    """Regular expressions: a JSON array of strings, or one per line."""
    if raw.lstrip().startswith("["):
        import json

        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: not a JSON array of strings: {exc}") from None
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise ConfigError(f"{name}: expected a JSON array of strings")
        return tuple(p for p in value if p)
    return tuple(line.strip() for line in raw.splitlines() if line.strip())


_Parser = Callable[[str, str], Any]

SETTINGS_ENV: dict[str, tuple[str, _Parser, str]] = {
    "api_key": (
        "POSTHOG_API_KEY",
        _parse_str,
        "PostHog project API key; unset disables the bridge",
    ),
    "host": ("POSTHOG_HOST", _parse_str, f"PostHog host (default {DEFAULT_HOST})"),
    "environment": (
        "OTEL_POSTHOG_ENVIRONMENT",
        _parse_str,
        "environment property (default: resource deployment.environment.name, else development)",
    ),
    "slow_request_threshold_ms": (
        "OTEL_POSTHOG_SLOW_REQUEST_THRESHOLD_MS",
        _parse_float,
        "duration above which a request also makes slow_request (default 1000)",
    ),
    "slow_request_thresholds": (
        "OTEL_POSTHOG_SLOW_REQUEST_THRESHOLDS",
        _parse_thresholds,
        "per-route thresholds, e.g. /api/chat/stream=30000,/api/export=5000",
    ),
    "excluded_routes": (
        "OTEL_POSTHOG_EXCLUDED_ROUTES",
        _parse_list,
        "routes that make no events (default /health,/healthz,/metrics)",
    ),
    "jwt_secret": ("OTEL_POSTHOG_JWT_SECRET", _parse_str, "HMAC secret for HS256/384/512 JWTs"),
    "jwt_public_key": ("OTEL_POSTHOG_JWT_PUBLIC_KEY", _parse_str, "PEM public key for JWTs"),
    "jwt_jwks_url": ("OTEL_POSTHOG_JWT_JWKS_URL", _parse_str, "JWKS URL (keys cached off-request)"),
    "jwt_algorithms": (
        "OTEL_POSTHOG_JWT_ALGORITHMS",
        _parse_list,
        "accepted JWT algorithms (default: all of the configured key's kind)",
    ),
    "jwt_audience": ("OTEL_POSTHOG_JWT_AUDIENCE", _parse_list, "required JWT audience(s)"),
    "jwt_issuer": ("OTEL_POSTHOG_JWT_ISSUER", _parse_str, "required JWT issuer"),
    "jwt_distinct_id_claim": (
        "OTEL_POSTHOG_JWT_DISTINCT_ID_CLAIM",
        _parse_str,
        "claim holding the person id (default sub)",
    ),
    "jwt_verify": (
        "OTEL_POSTHOG_JWT_VERIFY",
        _parse_bool,
        "false: trust JWTs unverified (only behind a verifying gateway)",
    ),
    "capture_ip": (
        "OTEL_POSTHOG_CAPTURE_IP",
        _parse_bool,
        "send the client IP as $ip (default false)",
    ),
    "traceback_max_chars": (
        "OTEL_POSTHOG_TRACEBACK_MAX_CHARS",
        _parse_int,
        "traceback length kept on api_error (default 4000, tail kept)",
    ),
    "exception_events": (
        "OTEL_POSTHOG_EXCEPTION_EVENTS",
        _parse_bool,
        "also send $exception events for Error Tracking (default false)",
    ),
    "api_request_sample_rate": (
        "OTEL_POSTHOG_API_REQUEST_SAMPLE_RATE",
        _parse_float,
        "fraction of api_request events kept, by trace id (default 1.0)",
    ),
    "sampling_key": (
        "OTEL_POSTHOG_SAMPLING_KEY",
        _parse_str,
        "secret key of the sampling hash; the same on every service (default: random per process)",
    ),
    "span_attributes": (
        "OTEL_POSTHOG_SPAN_ATTRIBUTES",
        _parse_bool,
        "set enduser.id / session.id on spans for other exporters (default true)",
    ),
    "redact_query": (
        "OTEL_POSTHOG_REDACT_QUERY",
        _parse_bool,
        "replace query values in server and client span URLs with REDACTED (default true)",
    ),
    "scrub_secrets": (
        "OTEL_POSTHOG_SCRUB_SECRETS",
        _parse_bool,
        "mask secrets (URL query values, tokens, passwords) in error text (default true)",
    ),
    "scrub_patterns": (
        "OTEL_POSTHOG_SCRUB_PATTERNS",
        _parse_patterns,
        "extra regular expressions to mask in error text (JSON array or one per line)",
    ),
    "propagate_identity": (
        "OTEL_POSTHOG_PROPAGATE_IDENTITY",
        _parse_bool,
        "inject the verified person into outbound baggage (default false)",
    ),
    "propagate_identity_hosts": (
        "OTEL_POSTHOG_PROPAGATE_IDENTITY_HOSTS",
        _parse_list,
        "hosts that may receive identity baggage: names, .suffixes, IPs, networks "
        "(default: internal hosts only)",
    ),
    "trust_baggage": (
        "OTEL_POSTHOG_TRUST_BAGGAGE",
        _parse_bool,
        "trust identity from inbound baggage (default false)",
    ),
    "max_queue_size": (
        "OTEL_POSTHOG_MAX_QUEUE_SIZE",
        _parse_int,
        "events held in memory before spooling/dropping (default 10000)",
    ),
    "batch_size": (
        "OTEL_POSTHOG_BATCH_SIZE",
        _parse_int,
        "events per /batch/ request (default 500)",
    ),
    "flush_interval_ms": (
        "OTEL_POSTHOG_FLUSH_INTERVAL_MS",
        _parse_int,
        "longest wait before a partial batch is sent (default 500)",
    ),
    "request_timeout_ms": (
        "OTEL_POSTHOG_REQUEST_TIMEOUT_MS",
        _parse_int,
        "HTTP timeout for one /batch/ post (default 10000)",
    ),
    "max_retries": (
        "OTEL_POSTHOG_MAX_RETRIES",
        _parse_int,
        "retries of a failed batch before it is spooled or dropped (default 3)",
    ),
    "shutdown_timeout_ms": (
        "OTEL_POSTHOG_SHUTDOWN_TIMEOUT_MS",
        _parse_int,
        "deadline for delivering queued events at shutdown (default 5000)",
    ),
    "spool_dir": (
        "OTEL_POSTHOG_SPOOL_DIR",
        _parse_str,
        "directory of the on-disk spool for undeliverable events (default off)",
    ),
    "spool_max_mb": ("OTEL_POSTHOG_SPOOL_MAX_MB", _parse_float, "spool size cap (default 100)"),
    "services": (
        "OTEL_POSTHOG_SERVICES",
        _parse_list,
        "receiver: only these service.name values make events (default all)",
    ),
    "receiver_token": (
        "OTEL_POSTHOG_RECEIVER_TOKEN",
        _parse_str,
        "receiver: bearer token senders must present (required off loopback)",
    ),
    "ai_events": (
        "OTEL_POSTHOG_AI_EVENTS",
        _parse_bool,
        "GenAI spans become $ai_generation / $ai_embedding / $ai_span events (default true)",
    ),
    "ai_privacy_mode": (
        "OTEL_POSTHOG_AI_PRIVACY_MODE",
        _parse_bool,
        "never send prompts and replies in $ai_* events, even when captured (default false)",
    ),
}

ENVIRONMENT_VARIABLES: tuple[str, ...] = tuple(env for env, _, _ in SETTINGS_ENV.values())


def _env(name: str) -> str:
    """The environment variable of setting ``name`` (its one home: :data:`SETTINGS_ENV`)."""
    return SETTINGS_ENV[name][0]


def _validate(s: Settings) -> None:
    if s.slow_request_threshold_ms < 0:
        raise ConfigError(f"{_env('slow_request_threshold_ms')} must be >= 0")
    for route, ms in s.slow_request_thresholds.items():
        if ms < 0:
            raise ConfigError(f"{_env('slow_request_thresholds')}: {route} must be >= 0")
    if not 0.0 <= s.api_request_sample_rate <= 1.0:
        raise ConfigError(f"{_env('api_request_sample_rate')} must be between 0 and 1")
    if s.traceback_max_chars < 0:
        raise ConfigError(f"{_env('traceback_max_chars')} must be >= 0")
    for name in ("max_queue_size", "batch_size", "flush_interval_ms", "request_timeout_ms"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{_env(name)} must be > 0")
    if s.max_retries < 0 or s.shutdown_timeout_ms < 0 or s.spool_max_mb <= 0:
        raise ConfigError(
            f"{_env('max_retries')} and {_env('shutdown_timeout_ms')} must be >= 0, "
            f"{_env('spool_max_mb')} > 0"
        )
    if not s.host.startswith(("http://", "https://")):
        raise ConfigError(f"{_env('host')}={s.host!r}: expected an http:// or https:// URL")
    for alg in s.jwt_algorithms:
        if alg not in HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS:
            raise ConfigError(
                f"{_env('jwt_algorithms')}: {alg!r} is not supported "
                f"(use {', '.join(HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS)}; never 'none')"
            )
    if s.jwt_public_key and "-----BEGIN" not in s.jwt_public_key:
        raise ConfigError(f"{_env('jwt_public_key')} must be a PEM public key (-----BEGIN ...)")
    if s.jwt_public_key:
        try:
            from jwt.algorithms import has_crypto

            if has_crypto:
                from cryptography.hazmat.primitives.serialization import load_pem_public_key

                load_pem_public_key(s.jwt_public_key.encode())
        except ValueError as exc:
            raise ConfigError(f"{_env('jwt_public_key')} is not a valid PEM key: {exc}") from None
    from .identity_hosts import check_entry

    for entry in s.propagate_identity_hosts:
        problem = check_entry(entry)
        if problem:
            raise ConfigError(f"{_env('propagate_identity_hosts')}: {problem}")
    if isinstance(s.scrub_patterns, str):
        raise ConfigError(f"{_env('scrub_patterns')}: expected a list of regular expressions")
    from .scrub import check_patterns

    bad = check_patterns(s.scrub_patterns)
    if bad:
        raise ConfigError(f"{_env('scrub_patterns')}: {bad} is not a valid regular expression")
    if s.jwt_jwks_url and not s.jwt_jwks_url.startswith(("http://", "https://")):
        raise ConfigError(f"{_env('jwt_jwks_url')} must be an http(s) URL")


def resolve_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings: keyword argument > environment variable > default.

    Raises :class:`ConfigError` for unknown keywords or invalid values.
    """
    environ = os.environ if env is None else env
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(
            f"unknown otel_posthog setting(s): {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )
    values: dict[str, Any] = {}
    for name, (env_name, parser, _doc) in SETTINGS_ENV.items():
        if name in overrides and overrides[name] is not None:
            value = overrides[name]
            if isinstance(value, str) and parser is not _parse_str:
                value = parser(name, value)
            elif isinstance(value, list):
                value = tuple(value)
            values[name] = value
        elif environ.get(env_name) not in (None, ""):
            values[name] = parser(env_name, environ[env_name])
    if "before_send" in overrides:
        values["before_send"] = overrides["before_send"]
    if isinstance(values.get("jwt_audience"), str):
        values["jwt_audience"] = (values["jwt_audience"],)
    settings = Settings(**values)
    _validate(settings)
    return settings
