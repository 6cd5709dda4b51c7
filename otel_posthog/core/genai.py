"""The pure core for GenAI spans: a model call's span becomes a PostHog LLM analytics event.

An OpenTelemetry GenAI span (``gen_ai.operation.name``) becomes ``$ai_generation`` (chat,
text_completion, generate_content), ``$ai_embedding`` (embeddings) or ``$ai_span`` (agents,
tools, ...), with PostHog's ``$ai_*`` properties and the correlation of the request it ran
in: the same person, session and ``request_id`` as its ``api_request``, and that
``request_id`` as ``$ai_trace_id``. No I/O: the in-process pipeline and the OTLP receiver
both reach it through :func:`otel_posthog.core.mapping.map_span`, the adapters having put what
they know beyond the span's attributes in :class:`~otel_posthog.core.spanview.GenAIFacts`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from .properties import (
    _CORRELATION_KEYS,
    _MAX_PROPERTY_CHARS,
    Event,
    _cap,
    _correlate,
    _route_properties,
    _to_int,
    event_uuid,
    fit_properties,
    iso_timestamp,
    request_method,
    request_path,
    safe_value,
)
from .settings import Settings
from .spanview import CLIENT, SERVER, GenAIFacts, SpanView

OPERATION = "gen_ai.operation.name"
AI_GENERATION = "$ai_generation"
AI_EMBEDDING = "$ai_embedding"
AI_SPAN = "$ai_span"
GENERATION_OPERATIONS = frozenset(("chat", "text_completion", "generate_content"))
EMBEDDING_OPERATIONS = frozenset(("embeddings",))
# Prompts and replies of one event stay under this (JSON characters, oldest messages
# dropped first); fit_properties keeps the whole event under PostHog's limit.
MAX_MESSAGES_CHARS = 200_000
# Never trimmed by the size guard: the correlation and what the LLM views key on.
_KEEP = (
    *_CORRELATION_KEYS,
    "$ai_trace_id",
    "$ai_span_id",
    "$ai_parent_id",
    "$ai_model",
    "$ai_provider",
    "$ai_input_tokens",
    "$ai_output_tokens",
    "$ai_latency",
    "$ai_is_error",
)
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_DETAILS_EVENT = "gen_ai.client.inference.operation.details"


def is_genai(attributes: Mapping[str, Any]) -> bool:
    """A GenAI span: one with ``gen_ai.operation.name``."""
    return bool(attributes.get(OPERATION))


def event_name(operation: Any) -> str:
    op = str(operation).lower()
    if op in GENERATION_OPERATIONS:
        return AI_GENERATION
    if op in EMBEDDING_OPERATIONS:
        return AI_EMBEDDING
    return AI_SPAN


def is_model_call(attributes: Mapping[str, Any]) -> bool:
    """A generation or an embedding: what the ``api_request`` LLM rollup counts."""
    return event_name(attributes.get(OPERATION)) != AI_SPAN


def _first(attrs: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def input_tokens(attrs: Mapping[str, Any]) -> int | None:
    return _to_int(_first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"))


def output_tokens(attrs: Mapping[str, Any]) -> int | None:
    return _to_int(_first(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"))


def _number(value: Any) -> float | int | None:
    """A finite number, else None (JSON has no NaN or infinity)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def base_url(url: Any) -> str | None:
    """``scheme://host[:port]`` of a URL: no credentials, path or query string."""
    try:
        parts = urlsplit(str(url))
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{port}" if port else f"{parts.scheme}://{host}"


def map_genai_span(view: SpanView, settings: Settings) -> list[Event]:
    """The ``$ai_*`` event of one finished GenAI span (empty when it is not one)."""
    attrs = view.attributes
    operation = attrs.get(OPERATION)
    if not operation or not settings.ai_events:
        return []
    if settings.services and view.resource.get("service.name") not in settings.services:
        return []
    facts = view.genai if view.genai is not None else GenAIFacts()
    name = event_name(operation)
    request = facts.request
    if request is not None:
        method = request_method(request.attributes) or ""
        route = request.attributes.get("http.route")
        excluded = settings.excluded_routes
        if method == "OPTIONS" or (
            excluded and (route in excluded or request_path(request.attributes) in excluded)
        ):
            return []  # a request that makes no events makes none for its model calls
        props = dict(_route_properties(settings, view.resource, route, method)[0])
    else:
        props = dict(_route_properties(settings, view.resource, None, "")[0])
        del props["endpoint"], props["method"]
    person = _correlate(request if request is not None else view, settings, props)
    span_hex = f"{view.span_id:016x}"
    props["$span_id"] = span_hex
    trace = props["request_id"]
    props["$ai_trace_id"] = trace
    props["$ai_span_id"] = span_hex
    parent = facts.parent_genai_span_id
    props["$ai_parent_id"] = f"{parent:016x}" if parent else trace
    span_name = view.name
    if name == AI_SPAN:
        span_name = _first(attrs, "gen_ai.tool.name", "gen_ai.agent.name") or span_name
    props["$ai_span_name"] = _cap(str(span_name))
    _model_properties(attrs, props)
    props["$ai_latency"] = round(max(view.end_ns - view.start_ns, 0) / 1e9, 6)
    _error_properties(view, facts, props)
    url = base_url(facts.http_url) if facts.http_url else None
    if url is None:
        address = attrs.get("server.address")
        if address:
            port = attrs.get("server.port")
            url = _cap(f"{address}:{port}" if port else str(address))
    if url:
        props["$ai_base_url"] = url
    conversation = attrs.get("gen_ai.conversation.id")
    if conversation:
        props["$ai_session_id"] = _cap(str(conversation))
    if not settings.ai_privacy_mode:
        _content_properties(attrs, facts.events, props)
    return [
        {
            "event": name,
            "distinct_id": person,
            "properties": fit_properties(props, _KEEP),
            "timestamp": iso_timestamp(view.end_ns),
            "uuid": event_uuid(view.trace_id, view.span_id, name),
        }
    ]


def _model_properties(attrs: Mapping[str, Any], props: dict[str, Any]) -> None:
    model = _first(attrs, "gen_ai.response.model", "gen_ai.request.model")
    if model is not None:
        props["$ai_model"] = _cap(str(model))
    provider = _first(attrs, "gen_ai.provider.name", "gen_ai.system")
    if provider is not None:
        props["$ai_provider"] = _cap(str(provider))
    for key, value in (
        ("$ai_input_tokens", input_tokens(attrs)),
        ("$ai_output_tokens", output_tokens(attrs)),
        (
            "$ai_cache_read_input_tokens",
            _to_int(
                _first(
                    attrs,
                    "gen_ai.usage.cache_read.input_tokens",
                    "gen_ai.usage.cache_read_input_tokens",
                )
            ),
        ),
        (
            "$ai_cache_creation_input_tokens",
            _to_int(
                _first(
                    attrs,
                    "gen_ai.usage.cache_creation.input_tokens",
                    "gen_ai.usage.cache_creation_input_tokens",
                )
            ),
        ),
        (
            "$ai_reasoning_tokens",
            _to_int(_first(attrs, "gen_ai.usage.reasoning.output_tokens")),
        ),
        ("$ai_temperature", _number(attrs.get("gen_ai.request.temperature"))),
        ("$ai_max_tokens", _to_int(attrs.get("gen_ai.request.max_tokens"))),
        ("$ai_stream", _bool(attrs.get("gen_ai.request.stream"))),
        (
            "$ai_time_to_first_token",
            _number(attrs.get("gen_ai.response.time_to_first_chunk")),
        ),
    ):
        if value is not None:
            props[key] = value


def _error_properties(view: SpanView, facts: GenAIFacts, props: dict[str, Any]) -> None:
    attrs = view.attributes
    exc = view.exceptions[-1] if view.exceptions else None
    is_error = view.status_error or exc is not None
    props["$ai_is_error"] = is_error
    if is_error:
        if exc is not None:
            message = f"{exc.type}: {exc.message}" if exc.type else exc.message
        else:
            message = facts.status_message or str(attrs.get("error.type") or "")
        props["$ai_error"] = _cap(message or "error")
    status = _to_int(_first(attrs, "http.response.status_code", "http.status_code"))
    if status is None:
        status = facts.http_status
    if status is not None:
        props["$ai_http_status"] = status


# -- content --------------------------------------------------------------------------


def _content_properties(
    attrs: Mapping[str, Any],
    events: Sequence[tuple[str, Mapping[str, Any]]],
    props: dict[str, Any],
) -> None:
    """``$ai_input`` / ``$ai_output_choices`` / ``$ai_tools`` when the span captured content."""
    inputs = _messages(attrs.get("gen_ai.input.messages"), "user")
    outputs = _messages(attrs.get("gen_ai.output.messages"), "assistant")
    system = _system(attrs.get("gen_ai.system_instructions"))
    tools = _loads(attrs.get("gen_ai.tool.definitions"))
    if events and (inputs is None or outputs is None):
        ev_in, ev_out, ev_system = _event_messages(events)
        inputs = inputs if inputs is not None else ev_in
        outputs = outputs if outputs is not None else ev_out
        system = system or ev_system
    if system:
        inputs = [system, *(inputs or [])]
    if inputs:
        props["$ai_input"] = _fit_messages(inputs)
    if outputs:
        props["$ai_output_choices"] = _fit_messages(outputs)
    if tools:
        props["$ai_tools"] = safe_value(tools)


def _loads(raw: Any) -> Any:
    """A JSON attribute value (GenAI instrumentations put structures in strings)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            return raw
    return raw


def _messages(raw: Any, default_role: str) -> list[dict[str, Any]] | None:
    value = _loads(raw)
    if value is None or value == "":
        return None
    if isinstance(value, (str, int, float, bool)):
        return [{"role": default_role, "content": _cap(str(value))}]
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return None
    out = [_message(m, default_role) for m in value]
    return out or None


def _message(raw: Any, default_role: str) -> dict[str, Any]:
    """One message in PostHog's shape: ``{"role", "content"}``, content a string or parts."""
    if not isinstance(raw, Mapping):
        return {"role": default_role, "content": _cap(str(raw))}
    if isinstance(raw.get("message"), Mapping):  # a choice: {"index", "message": {...}}
        raw = raw["message"]
    role = _cap(str(raw.get("role") or default_role))
    if "parts" in raw:
        content = _parts(raw.get("parts"))
    else:
        content = _content(raw.get("content"))
    message: dict[str, Any] = {"role": role, "content": content}
    calls = raw.get("tool_calls")
    if isinstance(calls, (list, tuple)) and calls:
        message["tool_calls"] = safe_value(list(calls))
    return message


def _content(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return _cap(value)
    if isinstance(value, (list, tuple)):
        return _parts(value)
    return safe_value(value)


def _parts(parts: Any) -> Any:
    """OTel GenAI message parts as PostHog content items (one text part: its string)."""
    if not isinstance(parts, (list, tuple)):
        return _content(parts) if parts is not None else ""
    items: list[Any] = []
    for part in parts:
        if not isinstance(part, Mapping):
            items.append({"type": "text", "text": _cap(str(part))})
            continue
        kind = part.get("type")
        if kind == "text" or (kind is None and "content" in part):
            items.append({"type": "text", "text": _cap(str(part.get("content", "")))})
        elif kind in ("tool_call", "function_call"):
            items.append(
                {
                    "type": "function",
                    "id": safe_value(part.get("id")),
                    "function": {
                        "name": _cap(str(part.get("name", ""))),
                        "arguments": safe_value(part.get("arguments")),
                    },
                }
            )
        else:
            items.append({str(k)[:200]: safe_value(v) for k, v in part.items()})
    if len(items) == 1 and items[0].get("type") == "text":
        return items[0]["text"]
    return items


def _system(raw: Any) -> dict[str, Any] | None:
    value = _loads(raw)
    if not value:
        return None
    return {
        "role": "system",
        "content": _content(value) if isinstance(value, str) else _parts(value),
    }


def _event_messages(
    events: Iterable[tuple[str, Mapping[str, Any]]],
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None, dict[str, Any] | None]:
    """Prompts and replies from the older per-message span events."""
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    system: dict[str, Any] | None = None
    for name, ev in events:
        if name == "gen_ai.content.prompt":
            inputs.extend(_messages(ev.get("gen_ai.prompt"), "user") or ())
        elif name == "gen_ai.content.completion":
            outputs.extend(_messages(ev.get("gen_ai.completion"), "assistant") or ())
        elif name in _MESSAGE_EVENTS:
            body = _loads(_first(ev, "gen_ai.event.content", "content"))
            if body is None:
                continue
            role = _MESSAGE_EVENTS[name]
            if isinstance(body, Mapping):
                inputs.append(_message({"role": role, **body}, role))
            else:
                inputs.append({"role": role, "content": _content(body)})
        elif name == "gen_ai.choice":
            body = _loads(_first(ev, "gen_ai.event.content", "message"))
            if body is not None:
                outputs.extend(_messages(body, "assistant") or ())
        elif name == _DETAILS_EVENT:
            inputs.extend(_messages(ev.get("gen_ai.input.messages"), "user") or ())
            outputs.extend(_messages(ev.get("gen_ai.output.messages"), "assistant") or ())
            system = system or _system(ev.get("gen_ai.system_instructions"))
    return inputs or None, outputs or None, system


def _fit_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest messages whose JSON fits :data:`MAX_MESSAGES_CHARS` (at least the last)."""
    sizes = [len(json.dumps(m, default=str)) for m in messages]
    total = sum(sizes)
    start = 0
    while total > MAX_MESSAGES_CHARS and start < len(messages) - 1:
        total -= sizes[start]
        start += 1
    kept = messages[start:]
    if total > MAX_MESSAGES_CHARS:  # one message of many parts: its text, cut
        last = kept[-1]
        text = json.dumps(last.get("content"), default=str)[: _MAX_PROPERTY_CHARS * 4]
        kept = [{"role": last.get("role", "user"), "content": text}]
    return kept


# -- what adapters know beyond the span ------------------------------------------------


def http_child_facts(attributes: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """Status code and URL of an HTTP CLIENT span under a GenAI span."""
    status = _to_int(_first(attributes, "http.response.status_code", "http.status_code"))
    url = _first(attributes, "url.full", "http.url")
    return status, (str(url) if url is not None else None)


def link_batch(views: Sequence[SpanView]) -> None:
    """Give each GenAI span of one batch of spans (an OTLP export) its request, its parent
    GenAI span and its last HTTP child, from the other spans of the batch: the receiver's
    counterpart of what the in-process processor sees while the spans run."""
    genai = [v for v in views if v.genai is not None]
    if not genai:
        return
    by_id = {(v.trace_id, v.span_id): v for v in views}
    roots: dict[tuple[int, Any], list[SpanView]] = {}
    children: dict[tuple[int, int], SpanView] = {}
    for v in views:
        if v.kind == SERVER and v.is_local_root:
            roots.setdefault((v.trace_id, v.resource.get("service.name")), []).append(v)
        elif v.kind == CLIENT and v.genai is None and v.parent_span_id is not None:
            key = (v.trace_id, v.parent_span_id)
            found = children.get(key)
            if found is None or v.end_ns >= found.end_ns:
                children[key] = v
    for v in genai:
        facts = v.genai
        assert facts is not None
        parent = None
        if v.parent_span_id is not None and not v.parent_is_remote:
            parent = by_id.get((v.trace_id, v.parent_span_id))
        if parent is not None and parent.genai is not None:
            facts.parent_genai_span_id = parent.span_id
        facts.request = _request_of(v, by_id, roots)
        child = children.get((v.trace_id, v.span_id))
        if child is not None:
            facts.http_status, facts.http_url = http_child_facts(child.attributes)


def _request_of(
    view: SpanView,
    by_id: Mapping[tuple[int, int], SpanView],
    roots: Mapping[tuple[int, Any], list[SpanView]],
) -> SpanView | None:
    """The local-root SERVER span above ``view``: its ancestors in the batch, else the one
    request of the same trace and service."""
    node: SpanView | None = view
    seen = 0
    while node is not None and seen < 1000:
        if node.kind == SERVER and node.is_local_root:
            return node
        if node.parent_span_id is None or node.parent_is_remote:
            break
        node = by_id.get((node.trace_id, node.parent_span_id))
        seen += 1
    same = roots.get((view.trace_id, view.resource.get("service.name")))
    return same[0] if same is not None and len(same) == 1 else None
