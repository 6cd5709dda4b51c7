"""The request-id trace id generator keeps the SDK's W3C random-trace-id flag right."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from otel_posthog.sdk.propagator import (
    PostHogPropagator,
    RequestIdGenerator,
    install_request_id_generator,
)


def _wrapped() -> TracerProvider:
    return TracerProvider(id_generator=RequestIdGenerator(RandomIdGenerator()))


def _patched() -> TracerProvider:
    provider = TracerProvider()
    install_request_id_generator(provider)
    return provider


@pytest.mark.parametrize("make_provider", [_wrapped, _patched], ids=["wrapped", "patched"])
def test_random_flag_set_for_generated_ids_and_not_for_a_client_request_id(make_provider):
    provider = make_provider()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("plain") as span:
        assert span.get_span_context().trace_flags.random_trace_id

    request_id = str(uuid.uuid4())
    ctx = PostHogPropagator().extract({"x-request-id": request_id})
    token = otel_context.attach(ctx)
    try:
        with tracer.start_as_current_span("request") as span:
            span_ctx = span.get_span_context()
    finally:
        otel_context.detach(token)
    assert span_ctx.trace_id == uuid.UUID(request_id).int
    assert not span_ctx.trace_flags.random_trace_id  # the client chose these bits

    with tracer.start_as_current_span("next") as span:  # the flag does not stick
        assert span.get_span_context().trace_flags.random_trace_id


def test_wrapped_generator_forwards_the_inner_answer():
    class Sequential(IdGenerator):
        n = 0

        def generate_span_id(self) -> int:
            self.n += 1
            return self.n

        def generate_trace_id(self) -> int:
            self.n += 1
            return self.n

        def custom(self) -> str:
            return "inner"

    generator = RequestIdGenerator(Sequential())
    assert generator.is_trace_id_random() is False  # the inner generator's answer
    assert generator.custom() == "inner"
    tracer = TracerProvider(id_generator=generator).get_tracer("t")
    with tracer.start_as_current_span("s") as span:
        assert not span.get_span_context().trace_flags.random_trace_id


def test_configure_builds_its_provider_with_the_request_id_generator():
    """No provider set: ``configure()`` passes ``id_generator=RequestIdGenerator()`` to the
    one it creates (public API, nothing patched, in either compat mode)."""
    import os
    import subprocess
    import sys

    script = (
        "import otel_posthog\n"
        "from opentelemetry import trace\n"
        "from otel_posthog.api import processor_of\n"
        "processor = otel_posthog.configure()\n"
        "provider = trace.get_tracer_provider()\n"
        "print(type(provider.id_generator).__name__, processor_of(provider) is processor,\n"
        "      otel_posthog.configure() is processor)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "OTEL_"))}
    for mode in ("", "public"):
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**env, "OTEL_POSTHOG_COMPAT": mode},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["RequestIdGenerator", "True", "True"], mode


@pytest.mark.parametrize("make_provider", [_wrapped, _patched], ids=["wrapped", "patched"])
def test_hooks_forward_until_a_request_gives_a_hint_then_honour_it(make_provider, monkeypatch):
    """Before any UUID X-Request-ID the hooks forward straight to the SDK's generator
    (the fast path); the first such request turns the hint lookup on, and ids without a
    hint are the same on both paths."""
    from otel_posthog.sdk import propagator

    monkeypatch.setattr(propagator._HINTS, "seen", False)
    provider = make_provider()
    tracer = provider.get_tracer("t")
    generator = provider.id_generator
    fast = [(generator.generate_trace_id() > 0, generator.is_trace_id_random()) for _ in range(3)]
    with tracer.start_as_current_span("plain") as span:
        assert span.get_span_context().trace_flags.random_trace_id
    assert not propagator._HINTS.seen

    PostHogPropagator().extract({"x-request-id": "not-a-uuid"})
    assert not propagator._HINTS.seen  # no hint: the fast path stays

    request_id = str(uuid.uuid4())
    ctx = PostHogPropagator().extract({"x-request-id": request_id})
    assert propagator._HINTS.seen
    slow = [(generator.generate_trace_id() > 0, generator.is_trace_id_random()) for _ in range(3)]
    assert slow == fast == [(True, True)] * 3
    token = otel_context.attach(ctx)
    try:
        with tracer.start_as_current_span("request") as span:
            span_ctx = span.get_span_context()
    finally:
        otel_context.detach(token)
    assert span_ctx.trace_id == uuid.UUID(request_id).int
    assert not span_ctx.trace_flags.random_trace_id
