"""otel-posthog: OpenTelemetry spans become PostHog ``api_request``, ``api_error`` and
``slow_request`` events, on the right person, session and request.

The names below are imported on first use, so the command line (``otel-posthog sink``,
``receive``, ``--help``) loads no OpenTelemetry SDK, JWT or HTTP client library.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from . import cors
    from .api import capture, configure, identify, stats
    from .core.settings import ConfigError, Settings, resolve_settings
    from .counters import register_metrics
    from .sdk.processor import PostHogSpanProcessor
    from .sdk.propagator import PostHogPropagator, PostHogResponsePropagator
    from .sdk.starlette_layer import PostHogASGIMiddleware

# public name -> the module that defines it
_LAZY = {
    "cors": ".cors",
    "capture": ".api",
    "configure": ".api",
    "identify": ".api",
    "stats": ".api",
    "PostHogSpanProcessor": ".sdk.processor",
    "PostHogPropagator": ".sdk.propagator",
    "PostHogResponsePropagator": ".sdk.propagator",
    "PostHogASGIMiddleware": ".sdk.starlette_layer",
    "ConfigError": ".core.settings",
    "Settings": ".core.settings",
    "resolve_settings": ".core.settings",
    "register_metrics": ".counters",
}

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
    "PostHogASGIMiddleware",
    "ConfigError",
    "Settings",
    "resolve_settings",
    "register_metrics",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(module_name, __name__)
    value = module if name == "cors" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
