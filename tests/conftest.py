from __future__ import annotations

import pytest

from otel_posthog.sink.server import LocalSink


@pytest.fixture
def sink():
    """A real local PostHog-compatible capture server on 127.0.0.1."""
    server = LocalSink().start()
    yield server
    server.stop()
