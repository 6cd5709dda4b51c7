"""otel-posthog: OpenTelemetry spans become PostHog ``api_request``, ``api_error`` and
``slow_request`` events, on the right person, session and request."""

from . import cors
from ._version import __version__
from .api import capture, configure, identify, stats
from .processor import PostHogSpanProcessor
from .propagator import PostHogPropagator, PostHogResponsePropagator
from .settings import ConfigError, Settings, resolve_settings

__all__ = [
    "__version__",
    "cors",
    "capture",
    "configure",
    "identify",
    "stats",
    "PostHogSpanProcessor",
    "PostHogPropagator",
    "PostHogResponsePropagator",
    "ConfigError",
    "Settings",
    "resolve_settings",
]
