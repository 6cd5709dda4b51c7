"""CORS settings a cross-origin frontend needs for the bridge's headers.

Use with FastAPI/Starlette's ``CORSMiddleware``::

    app.add_middleware(CORSMiddleware, allow_origins=[...], allow_credentials=True,
                       allow_methods=["*"], allow_headers=otel_posthog.cors.ALLOW_HEADERS,
                       expose_headers=otel_posthog.cors.EXPOSE_HEADERS)
"""

from __future__ import annotations

from .core.headers import REQUEST_HEADERS, RESPONSE_HEADERS

ALLOW_HEADERS = list(REQUEST_HEADERS)
EXPOSE_HEADERS = [name.lower() for name in RESPONSE_HEADERS]
