"""CORS settings a cross-origin frontend needs for the bridge's headers.

Use with FastAPI/Starlette's ``CORSMiddleware``::

    app.add_middleware(CORSMiddleware, allow_origins=[...], allow_credentials=True,
                       allow_methods=["*"], allow_headers=otel_posthog.cors.ALLOW_HEADERS,
                       expose_headers=otel_posthog.cors.EXPOSE_HEADERS)
"""

from __future__ import annotations

ALLOW_HEADERS = [
    "authorization",
    "content-type",
    "traceparent",
    "tracestate",
    "baggage",
    "x-request-id",
    "x-posthog-session-id",
    "x-posthog-window-id",
    "x-posthog-distinct-id",
]
EXPOSE_HEADERS = ["x-request-id", "traceresponse"]
