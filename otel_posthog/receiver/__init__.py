"""The OTLP/HTTP traces receiver: any service's spans become PostHog events.

``otel-posthog receive`` serves :func:`create_app` under uvicorn. Spans arrive as OTLP
protobuf or JSON, become neutral :class:`~otel_posthog.core.spanview.SpanView` objects and go
through the same :func:`~otel_posthog.core.mapping.map_span` as the in-process bridge.
Names are imported on first use: ``otel-posthog receive --help`` loads none of them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ReceiverSender, create_app
    from .decode import Decoded, DecodeError, decode_json, decode_protobuf

_LAZY = {
    "DecodeError": ".decode",
    "Decoded": ".decode",
    "decode_json": ".decode",
    "decode_protobuf": ".decode",
    "ReceiverSender": ".app",
    "create_app": ".app",
}

__all__ = [
    "DecodeError",
    "Decoded",
    "ReceiverSender",
    "create_app",
    "decode_json",
    "decode_protobuf",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module_name, __name__), name)
    globals()[name] = value
    return value
