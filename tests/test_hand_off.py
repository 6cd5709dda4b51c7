"""The queue hand-off's work item, built without the NamedTuple's Python ``__new__``."""

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
