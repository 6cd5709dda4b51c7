"""Settings: argument > environment > default, validated at startup with clear errors."""

from __future__ import annotations

import pytest

from otel_posthog.core.headers import sanitize, uuid_int, valid_traceparent
from otel_posthog.core.settings import ConfigError, resolve_settings


def test_precedence_argument_over_environment_over_default():
    env = {"OTEL_POSTHOG_SLOW_REQUEST_THRESHOLD_MS": "250", "POSTHOG_API_KEY": "phc_env"}
    assert resolve_settings(env=env).slow_request_threshold_ms == 250
    assert resolve_settings(env=env, slow_request_threshold_ms=99).slow_request_threshold_ms == 99
    assert resolve_settings(env={}).slow_request_threshold_ms == 1000
    assert resolve_settings(env=env).api_key == "phc_env"
    assert resolve_settings(env={}).enabled is False


def test_parsing_of_lists_and_thresholds():
    env = {
        "OTEL_POSTHOG_SLOW_REQUEST_THRESHOLDS": "/api/chat/stream=30000, /api/export=5000",
        "OTEL_POSTHOG_EXCLUDED_ROUTES": "/health,/ready",
        "OTEL_POSTHOG_JWT_AUDIENCE": "authenticated",
        "OTEL_POSTHOG_CAPTURE_IP": "TRUE",
    }
    s = resolve_settings(env=env)
    assert s.slow_request_thresholds == {"/api/chat/stream": 30000, "/api/export": 5000}
    assert s.threshold_for("/api/export") == 5000 and s.threshold_for("/other") == 1000
    assert s.excluded_routes == ("/health", "/ready")
    assert s.jwt_audience == ("authenticated",)
    assert s.capture_ip is True


@pytest.mark.parametrize(
    ("env", "names"),
    [
        (
            {"OTEL_POSTHOG_SLOW_REQUEST_THRESHOLD_MS": "fast"},
            "OTEL_POSTHOG_SLOW_REQUEST_THRESHOLD_MS",
        ),
        (
            {"OTEL_POSTHOG_SLOW_REQUEST_THRESHOLDS": "/api/x"},
            "OTEL_POSTHOG_SLOW_REQUEST_THRESHOLDS",
        ),
        ({"OTEL_POSTHOG_CAPTURE_IP": "maybe"}, "OTEL_POSTHOG_CAPTURE_IP"),
        ({"OTEL_POSTHOG_API_REQUEST_SAMPLE_RATE": "2"}, "OTEL_POSTHOG_API_REQUEST_SAMPLE_RATE"),
        ({"OTEL_POSTHOG_JWT_ALGORITHMS": "none"}, "OTEL_POSTHOG_JWT_ALGORITHMS"),
        ({"OTEL_POSTHOG_JWT_PUBLIC_KEY": "not a key"}, "OTEL_POSTHOG_JWT_PUBLIC_KEY"),
        ({"POSTHOG_HOST": "us.i.posthog.com"}, "POSTHOG_HOST"),
        ({"OTEL_POSTHOG_MAX_QUEUE_SIZE": "0"}, "OTEL_POSTHOG_MAX_QUEUE_SIZE"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(env, names):
    with pytest.raises(ConfigError, match=names):
        resolve_settings(env=env)


def test_unknown_keyword_is_an_error():
    with pytest.raises(ConfigError, match="unknown otel_posthog setting"):
        resolve_settings(env={}, slow_threshold=5)


def test_processor_fails_fast_on_bad_config():
    from otel_posthog import PostHogSpanProcessor

    with pytest.raises(ConfigError, match="OTEL_POSTHOG_API_REQUEST_SAMPLE_RATE"):
        PostHogSpanProcessor(api_key="k", api_request_sample_rate=1.5)


def test_header_sanitising():
    assert sanitize("  abc\x00\x1f\x7fdef  ") == "abcdef"
    assert sanitize("x" * 5000) == "x" * 1000
    assert sanitize("\x00\x01") is None
    assert sanitize(b"bytes") == "bytes"
    assert sanitize(42) is None


def test_uuid_and_traceparent_checks():
    assert uuid_int("82b0da6e-9c9b-422b-b748-9e16ea98f45b") == 0x82B0DA6E9C9B422BB7489E16EA98F45B
    assert uuid_int("00000000-0000-0000-0000-000000000000") is None
    assert uuid_int("abc-123") is None
    assert valid_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert not valid_traceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01")
    assert not valid_traceparent("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01")
    assert not valid_traceparent("garbage")
    assert not valid_traceparent("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


def test_readme_documents_every_setting():
    from pathlib import Path

    from otel_posthog.core.settings import ENVIRONMENT_VARIABLES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [env for env in ENVIRONMENT_VARIABLES if f"`{env}`" not in readme]
    assert not missing, f"README.md lacks: {missing}"
