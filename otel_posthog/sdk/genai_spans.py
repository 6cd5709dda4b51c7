"""Adapter: what the in-process processor keeps about GenAI spans while they run.

A GenAI span (``gen_ai.operation.name``, set by the instrumentations when the span
starts) gets a :class:`GenAIRecord` in ``on_start``: the request it belongs to (found from
the parent context, so a span ending after its request still belongs to it), its parent
GenAI span, and the HTTP CLIENT spans under it (their status code becomes
``$ai_http_status``). Bounded and pruned like the request table.
"""

from __future__ import annotations

import time
from typing import Any

from .. import compat
from ..core.genai import OPERATION, http_child_facts, is_model_call
from .request_state import RequestState


class GenAIRecord:
    """One running GenAI span: its request, its parent GenAI span, its last HTTP child."""

    __slots__ = ("state", "parent_span_id", "model_call", "enclosed", "http_status", "http_url")

    def __init__(
        self,
        state: RequestState | None,
        parent: GenAIRecord | None,
        parent_span_id: int | None,
        model_call: bool,
    ) -> None:
        self.state = state
        self.parent_span_id = parent_span_id if parent is not None else None
        self.model_call = model_call
        # inside a model call (a framework's chat span around the client's): counted once
        self.enclosed: bool = parent is not None and (parent.model_call or parent.enclosed)
        self.http_status: int | None = None
        self.http_url: str | None = None


class GenAISpans:
    """Running GenAI spans and their HTTP children, by span id."""

    def __init__(self, max_entries: int = 100_000, max_age_s: float = 600.0) -> None:
        self.records: dict[int, tuple[float, GenAIRecord]] = {}
        self.http: dict[int, GenAIRecord] = {}  # HTTP CLIENT span -> its GenAI span
        self._max_entries = max_entries
        self._max_age_s = max_age_s

    def start(
        self, span_id: int, parent_span_id: int | None, state: RequestState | None, model_call: bool
    ) -> None:
        found = self.records.get(parent_span_id) if parent_span_id else None
        parent = found[1] if found is not None else None
        if state is None and parent is not None:
            state = parent.state
        if len(self.records) >= self._max_entries:
            self.prune()
        self.records[span_id] = (
            time.monotonic(),
            GenAIRecord(state, parent, parent_span_id, model_call),
        )

    def start_http(self, span_id: int, parent_span_id: int) -> bool:
        """An HTTP CLIENT span starting under a GenAI span: remember it; False otherwise."""
        found = self.records.get(parent_span_id)
        if found is None:
            return False
        if len(self.http) >= self._max_entries:
            self.http.clear()
        self.http[span_id] = found[1]
        return True

    def end_http(self, span_id: int, attributes: Any) -> bool:
        record = self.http.pop(span_id, None)
        if record is None:
            return False
        status, url = http_child_facts(attributes)
        if status is not None:
            record.http_status = status
        if url:
            record.http_url = url
        return True

    def end(self, span_id: int) -> GenAIRecord | None:
        found = self.records.pop(span_id, None)
        return found[1] if found is not None else None

    def __len__(self) -> int:
        return len(self.records)

    def prune(self) -> None:
        """Forget GenAI spans that never ended (and the HTTP children of forgotten ones)."""
        now = time.monotonic()
        records = self.records
        stale = [k for k, (t, _) in list(records.items()) if now - t > self._max_age_s]
        if len(records) - len(stale) >= self._max_entries:
            stale = [k for k, _ in sorted(records.items(), key=lambda kv: kv[1][0])]
            stale = stale[: len(stale) // 2]
        for key in stale:
            records.pop(key, None)
        live = {id(r) for _, r in records.values()}
        for key, record in list(self.http.items()):
            if id(record) not in live:
                self.http.pop(key, None)


# a span's attributes to read from: the SDK span's storage dict (every lookup through its
# public mapping runs Python code, a miss raises) where compat's probe allows, else the
# public ones
span_attributes = compat.live_attributes_reader()


def genai_operation(span: Any) -> Any:
    """The span's ``gen_ai.operation.name``."""
    return span_attributes(span).get(OPERATION)


__all__ = ["GenAIRecord", "GenAISpans", "genai_operation", "is_model_call", "span_attributes"]
