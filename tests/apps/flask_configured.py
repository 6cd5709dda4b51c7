"""The Flask app of flask_app.py set up in code: ``configure()`` plus Flask's instrumentor."""

from __future__ import annotations

from opentelemetry.instrumentation.flask import FlaskInstrumentor

import otel_posthog

otel_posthog.configure()

from .flask_app import app  # noqa: E402

FlaskInstrumentor().instrument_app(app)
