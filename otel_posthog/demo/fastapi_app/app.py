"""Example API shaped like the user-journey guide, instrumented by otel-posthog.

Run it (PostHog key and host from the environment, or the local sink's):

    POSTHOG_API_KEY=phc_... POSTHOG_HOST=http://127.0.0.1:8765 \
    OTEL_POSTHOG_JWT_SECRET=demo-secret-change-me-before-any-real-use \
    uvicorn otel_posthog.demo.fastapi_app.app:app --port 8000
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

import otel_posthog

from .tokens import PUBLIC_DEMO_SECRET, REFUSAL, secret

os.environ.setdefault("OTEL_POSTHOG_JWT_SECRET", PUBLIC_DEMO_SECRET)

from .page import PAGE_URLS, add_page  # noqa: E402
from .routes import add_routes, instrument_model_clients  # noqa: E402


def create_app(tracer_provider: Any = None, **settings: Any) -> FastAPI:
    """The example app; ``configure()`` first, then the FastAPI instrumentation."""
    otel_posthog.configure(tracer_provider, **settings)
    if secret() == PUBLIC_DEMO_SECRET:
        logging.getLogger("otel_posthog.demo.fastapi_app").warning("%s", REFUSAL)
    app = FastAPI(title="otel-posthog example")
    cors_origins = [o for o in os.environ.get("EXAMPLE_CORS_ORIGINS", "").split(",") if o]
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=otel_posthog.cors.ALLOW_HEADERS,
            expose_headers=otel_posthog.cors.EXPOSE_HEADERS,
        )
    if os.environ.get("OPENAI_BASE_URL"):
        instrument_model_clients(tracer_provider)  # /api/chat/send asks a model
    add_routes(app)
    add_page(app)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        exclude_spans=["send", "receive"],
        excluded_urls=PAGE_URLS,
    )
    return app


app = create_app()
