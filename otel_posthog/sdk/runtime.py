"""Process-wide pieces of the in-process bridge: the active settings and the person rules
the propagators and the public API need without a reference to the bridge.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..core.settings import ConfigError, Settings, resolve_settings

if TYPE_CHECKING:
    from .request_state import RequestState

log = logging.getLogger("otel_posthog")


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


def verified_person(state: RequestState) -> str | None:
    """The person this service trusts: ``identify()``, a verified JWT, or trusted baggage
    (never the client's ``X-POSTHOG-DISTINCT-ID``). The only one ever propagated."""
    return state.identified_id or state.jwt_distinct_id or state.baggage_distinct_id


def resolved_person(state: RequestState) -> str | None:
    return (
        state.identified_id
        or state.jwt_distinct_id
        or state.baggage_distinct_id
        or state.header_distinct_id
    )
