"""The OTLP/HTTP traces receiver: any service's spans become PostHog events.

``otel-posthog receive`` serves :func:`create_app` under uvicorn. Spans arrive as OTLP
protobuf or JSON, become neutral :class:`~otel_posthog.spanview.SpanView` objects and go
through the same :func:`~otel_posthog.mapping.map_span` as the in-process bridge.
"""

from __future__ import annotations

from .app import ReceiverSender, create_app
from .decode import Decoded, DecodeError, decode_json, decode_protobuf

__all__ = [
    "DecodeError",
    "Decoded",
    "ReceiverSender",
    "create_app",
    "decode_json",
    "decode_protobuf",
]
