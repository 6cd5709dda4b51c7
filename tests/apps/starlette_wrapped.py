"""The Starlette app of :mod:`tests.apps.starlette_app` wrapped in the bridge's public ASGI
middleware, as an app does where the Starlette hooks of ``otel_posthog.compat`` are off
(``OTEL_POSTHOG_COMPAT=public``)."""

from __future__ import annotations

from otel_posthog import PostHogASGIMiddleware

from .starlette_app import app as starlette_app

app = PostHogASGIMiddleware(starlette_app)
