"""The command line loads only what a command needs (no SDK for ``--help`` or the sink)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("opentelemetry.sdk", "jwt", "requests", "posthog")


def _loaded_after(code: str) -> list[str]:
    probe = (
        "import sys\n" + code + "\nprint(' '.join(m for m in sys.modules if m.startswith(HEAVY)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + probe],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_help_and_the_sink_load_no_sdk_jwt_or_http_client():
    assert _loaded_after("from otel_posthog.cli import build_parser; build_parser()") == []
    assert _loaded_after("import otel_posthog.sink.server, otel_posthog.sink.commands") == []


def test_public_names_still_resolve_on_first_use():
    loaded = _loaded_after(
        "import otel_posthog\n"
        "assert callable(otel_posthog.configure) and otel_posthog.cors.EXPOSE_HEADERS\n"
        "from otel_posthog import PostHogSpanProcessor, Settings, ConfigError\n"
        "assert 'configure' in dir(otel_posthog)"
    )
    assert "opentelemetry.sdk" in loaded


def test_the_delivery_package_loads_only_the_part_asked_for():
    assert _loaded_after("import otel_posthog.delivery") == []
    assert "requests" not in _loaded_after("from otel_posthog.delivery.spool import open_spool")
    loaded = _loaded_after("from otel_posthog.delivery.sender import EventSender")
    assert "requests" in loaded and "posthog" in loaded
