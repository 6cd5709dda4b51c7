from __future__ import annotations

import os

import pytest
from hypothesis import settings as hypothesis_settings

# CI runs every property test on the same examples (a chance draw never blocks a landing);
# a developer's run draws fresh ones unless HYPOTHESIS_PROFILE=ci is set.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("dev")
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

from otel_posthog.sink.server import LocalSink  # noqa: E402


@pytest.fixture
def sink():
    """A real local PostHog-compatible capture server on 127.0.0.1."""
    server = LocalSink().start()
    yield server
    server.stop()
