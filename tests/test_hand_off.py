"""The queue hand-off's work item and the span fields the export path reads."""

from __future__ import annotations


def test_span_work_built_directly_is_the_named_tuple() -> None:
    """The request path's SpanWork (tuple.__new__, no Python __new__) equals one built
    by its constructor, field by field and by type."""
    from otel_posthog.sdk.pipeline import SpanWork, _new_tuple

    span, state = object(), object()
    direct = _new_tuple(SpanWork, (span, state, 3))
    built = SpanWork(span, state, 3)  # type: ignore[arg-type]
    assert type(direct) is SpanWork
    assert direct == built
    assert (direct.span, direct.state, direct.captured) == (span, state, 3)


def test_private_span_fields_are_the_public_ones() -> None:
    """The fields the export path reads from a finished SDK span's storage (its name
    included) are what its public properties return."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    from otel_posthog import compat

    tracer = TracerProvider().get_tracer("fields-test")
    span = tracer.start_span("GET /items/{id}", kind=SpanKind.SERVER, attributes={"a": "b"})
    span.end()
    for finished in (span, span._readable_span()):
        private, public = compat._private_fields(finished), compat._public_fields(finished)
        assert len(private) == len(public) == 9
        for mine, theirs in zip(private[:-1], public[:-1], strict=True):
            assert mine is theirs or mine == theirs
        assert private[-1] == public[-1] == "GET /items/{id}"
