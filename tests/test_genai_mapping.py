"""The pure core's GenAI rules: which span becomes which ``$ai_*`` event, with what."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import settings as settings_profile
from hypothesis import strategies as st

from otel_posthog.core.genai import MAX_MESSAGES_CHARS, link_batch
from otel_posthog.core.mapping import MAX_EVENT_BYTES, map_span
from otel_posthog.core.settings import resolve_settings
from otel_posthog.core.spanview import (
    CLIENT,
    INTERNAL,
    SERVER,
    ExceptionInfo,
    GenAIFacts,
    RequestFacts,
    SpanView,
)

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
REQUEST_SPAN, CHAT_SPAN, HTTP_SPAN, AGENT_SPAN = 0x1111, 0x2222, 0x3333, 0x4444
SESSION = "0190f3a2-7b1c-7d4e-8f00-123456789abc"
RESOURCE = {"service.name": "chat-api", "deployment.environment.name": "test"}
T0 = 1_767_225_600_000_000_000


def settings(**kw):
    return resolve_settings(env={}, api_key="phc_test", **kw)


def request_view(**attrs) -> SpanView:
    return SpanView(
        name="POST /api/chat/send",
        kind=SERVER,
        trace_id=TRACE,
        span_id=REQUEST_SPAN,
        parent_span_id=None,
        parent_is_remote=False,
        start_ns=T0,
        end_ns=T0 + 3_000_000_000,
        attributes={
            "http.request.method": "POST",
            "http.route": "/api/chat/send",
            "url.path": "/api/chat/send",
            "http.response.status_code": 200,
            "enduser.id": "user-1",
            "session.id": SESSION,
            **attrs,
        },
        resource=RESOURCE,
    )


def genai_view(
    operation: str = "chat",
    span_id: int = CHAT_SPAN,
    parent: int | None = REQUEST_SPAN,
    kind: str = CLIENT,
    facts: GenAIFacts | None = None,
    exceptions: tuple[ExceptionInfo, ...] = (),
    status_error: bool = False,
    **attrs,
) -> SpanView:
    return SpanView(
        name=f"{operation} mock-chat",
        kind=kind,
        trace_id=TRACE,
        span_id=span_id,
        parent_span_id=parent,
        parent_is_remote=False,
        start_ns=T0 + 100_000_000,
        end_ns=T0 + 2_600_000_000,
        attributes={
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": "gpt-x",
            "gen_ai.provider.name": "openai",
            **attrs,
        },
        resource=RESOURCE,
        exceptions=exceptions,
        status_error=status_error,
        genai=facts if facts is not None else GenAIFacts(),
    )


def one(view: SpanView, **kw) -> dict:
    events = map_span(view, settings(**kw))
    assert len(events) == 1, events
    return events[0]


@pytest.mark.parametrize(
    ("operation", "event"),
    [
        ("chat", "$ai_generation"),
        ("text_completion", "$ai_generation"),
        ("generate_content", "$ai_generation"),
        ("embeddings", "$ai_embedding"),
        ("invoke_agent", "$ai_span"),
        ("execute_tool", "$ai_span"),
    ],
)
def test_operation_names_map_to_posthog_events(operation, event):
    assert one(genai_view(operation))["event"] == event


def test_a_span_without_genai_facts_or_with_ai_events_off_makes_nothing():
    plain = genai_view()
    plain.genai = None  # an adapter that did not see a GenAI span
    assert map_span(plain, settings()) == []
    assert map_span(genai_view(), settings(ai_events=False)) == []
    assert map_span(genai_view(), settings(services=("other-api",))) == []


def test_properties_follow_posthogs_schema():
    view = genai_view(
        **{
            "gen_ai.response.model": "gpt-x-2026-01-01",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.usage.cache_read.input_tokens": 4,
            "gen_ai.usage.cache_creation.input_tokens": 2,
            "gen_ai.usage.reasoning.output_tokens": 3,
            "gen_ai.request.temperature": 0.3,
            "gen_ai.request.max_tokens": 100,
            "gen_ai.request.stream": True,
            "gen_ai.response.time_to_first_chunk": 0.25,
            "gen_ai.conversation.id": "conv-9",
            "server.address": "api.openai.com",
            "server.port": 443,
        }
    )
    p = one(view)["properties"]
    assert p["$ai_model"] == "gpt-x-2026-01-01"  # the response's model first
    assert p["$ai_provider"] == "openai"
    assert (p["$ai_input_tokens"], p["$ai_output_tokens"]) == (12, 7)
    assert p["$ai_cache_read_input_tokens"] == 4
    assert p["$ai_cache_creation_input_tokens"] == 2
    assert p["$ai_reasoning_tokens"] == 3
    assert p["$ai_temperature"] == 0.3 and p["$ai_max_tokens"] == 100
    assert p["$ai_stream"] is True and p["$ai_time_to_first_token"] == 0.25
    assert p["$ai_latency"] == 2.5  # seconds
    assert p["$ai_session_id"] == "conv-9"
    assert p["$ai_base_url"] == "api.openai.com:443"
    assert p["$ai_is_error"] is False
    assert "$ai_http_status" not in p  # never invented
    assert p["$ai_span_id"] == f"{CHAT_SPAN:016x}" == p["$span_id"]


def test_older_attribute_names():
    view = genai_view(
        **{
            "gen_ai.provider.name": None,
            "gen_ai.system": "anthropic",
            "gen_ai.usage.prompt_tokens": 5,
            "gen_ai.usage.completion_tokens": 6,
        }
    )
    p = one(view)["properties"]
    assert p["$ai_provider"] == "anthropic"
    assert (p["$ai_input_tokens"], p["$ai_output_tokens"]) == (5, 6)


def test_correlation_comes_from_the_request():
    request = request_view()
    request.facts = RequestFacts(jwt_distinct_id="user-jwt", session_id=SESSION, request_id="req-1")
    event = one(genai_view(facts=GenAIFacts(request=request)))
    p = event["properties"]
    assert event["distinct_id"] == "user-jwt"
    assert p["request_id"] == p["$ai_trace_id"] == "req-1"
    assert p["$ai_parent_id"] == "req-1"
    assert p["$session_id"] == SESSION and p["$trace_id"] == f"{TRACE:032x}"
    assert p["endpoint"] == "/api/chat/send" and p["method"] == "POST"
    assert "$process_person_profile" not in p
    assert p["$geoip_disable"] is True


def test_outside_a_request_personless_unless_the_span_names_someone():
    event = one(genai_view(parent=None))
    assert event["distinct_id"] == f"request:{TRACE:032x}"  # the anonymous form
    assert event["properties"]["$process_person_profile"] is False
    assert "endpoint" not in event["properties"]
    owned = one(genai_view(parent=None, **{"enduser.id": "job-owner"}))
    assert owned["distinct_id"] == "job-owner"
    assert "$process_person_profile" not in owned["properties"]


def test_errors_from_exception_event_status_or_error_type():
    exc = ExceptionInfo("openai.RateLimitError", "Error code: 429", "Traceback ...")
    p = one(genai_view(exceptions=(exc,), status_error=True))["properties"]
    assert p["$ai_is_error"] is True
    assert p["$ai_error"] == "openai.RateLimitError: Error code: 429"
    facts = GenAIFacts(status_message="Error code: 500 - boom", http_status=500)
    p = one(genai_view(facts=facts, status_error=True))["properties"]
    assert p["$ai_error"] == "Error code: 500 - boom" and p["$ai_http_status"] == 500
    p = one(genai_view(status_error=True, **{"error.type": "timeout"}))["properties"]
    assert p["$ai_error"] == "timeout" and "$ai_http_status" not in p
    # the span's own status code beats its HTTP child's
    facts = GenAIFacts(http_status=200)
    p = one(genai_view(facts=facts, **{"http.response.status_code": 503}))["properties"]
    assert p["$ai_http_status"] == 503


def test_base_url_never_carries_credentials_path_or_query():
    facts = GenAIFacts(http_url="https://u:secret@api.example.com:8443/v1/chat?key=sk-1")
    p = one(genai_view(facts=facts))["properties"]
    assert p["$ai_base_url"] == "https://api.example.com:8443"


def test_messages_with_parts_become_posthogs_message_shape():
    inputs = [
        {"role": "user", "parts": [{"type": "text", "content": "weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"city": "Paris"}}
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}],
        },
    ]
    outputs = [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Sunny"}, {"type": "text", "content": "!"}],
            "finish_reason": "stop",
        }
    ]
    system = [{"type": "text", "content": "be brief"}]
    view = genai_view(
        **{
            "gen_ai.input.messages": json.dumps(inputs),
            "gen_ai.output.messages": json.dumps(outputs),
            "gen_ai.system_instructions": json.dumps(system),
            "gen_ai.tool.definitions": json.dumps([{"name": "weather", "type": "function"}]),
        }
    )
    p = one(view)["properties"]
    assert p["$ai_tools"] == [{"name": "weather", "type": "function"}]
    assert p["$ai_input"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "function",
                    "id": "c1",
                    "function": {"name": "weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        {
            "role": "tool",
            "content": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}],
        },
    ]
    assert p["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Sunny"}, {"type": "text", "text": "!"}],
        }
    ]
    private = one(view, ai_privacy_mode=True)["properties"]
    assert not {"$ai_input", "$ai_output_choices", "$ai_tools"} & set(private)
    assert "Paris" not in json.dumps(private)


def test_older_per_message_span_events():
    facts = GenAIFacts(
        events=(
            ("gen_ai.system.message", {"gen_ai.event.content": json.dumps({"content": "sys"})}),
            ("gen_ai.user.message", {"content": "hello"}),
            (
                "gen_ai.choice",
                {
                    "gen_ai.event.content": json.dumps(
                        {"index": 0, "message": {"role": "assistant", "content": "hi!"}}
                    )
                },
            ),
        )
    )
    p = one(genai_view(facts=facts))["properties"]
    assert p["$ai_input"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hello"},
    ]
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": "hi!"}]
    legacy = GenAIFacts(
        events=(
            (
                "gen_ai.content.prompt",
                {"gen_ai.prompt": json.dumps([{"role": "user", "content": "q"}])},
            ),
            ("gen_ai.content.completion", {"gen_ai.completion": "a"}),
        )
    )
    p = one(genai_view(facts=legacy))["properties"]
    assert p["$ai_input"] == [{"role": "user", "content": "q"}]
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": "a"}]


def test_large_content_is_capped_and_the_event_fits():
    big = "x" * 50_000
    inputs = [
        {"role": "user", "parts": [{"type": "text", "content": f"{i}{big}"}]} for i in range(80)
    ]
    outputs = [{"role": "assistant", "parts": [{"type": "text", "content": big}]}]
    view = genai_view(
        **{
            "gen_ai.input.messages": json.dumps(inputs),
            "gen_ai.output.messages": json.dumps(outputs),
        }
    )
    event = one(view)
    p = event["properties"]
    assert len(json.dumps(event)) < MAX_EVENT_BYTES
    assert len(json.dumps(p["$ai_input"])) <= MAX_MESSAGES_CHARS
    assert p["$ai_input"][-1]["content"].startswith("79x")  # the newest messages are kept
    assert all(len(m["content"]) <= 16_384 for m in p["$ai_input"])
    assert p["$ai_output_choices"][0]["role"] == "assistant"


def test_event_uuid_is_deterministic():
    assert one(genai_view())["uuid"] == one(genai_view())["uuid"]
    assert one(genai_view())["uuid"] != one(genai_view(span_id=0x9999))["uuid"]


def test_link_batch_finds_request_parent_and_last_http_child():
    request = request_view()
    agent = genai_view("invoke_agent", span_id=AGENT_SPAN, parent=REQUEST_SPAN, kind=INTERNAL)
    chat = genai_view(span_id=CHAT_SPAN, parent=AGENT_SPAN)
    first = SpanView(
        "POST", CLIENT, TRACE, HTTP_SPAN, CHAT_SPAN, False, T0, T0 + 10,
        {"http.response.status_code": 429, "url.full": "http://m:1/v1/chat/completions"},
        RESOURCE,
    )  # fmt: skip
    retry = SpanView(
        "POST", CLIENT, TRACE, HTTP_SPAN + 1, CHAT_SPAN, False, T0 + 20, T0 + 30,
        {"http.response.status_code": 200, "url.full": "http://m:1/v1/chat/completions"},
        RESOURCE,
    )  # fmt: skip
    views = [retry, chat, first, agent, request]
    link_batch(views)
    assert chat.genai is not None and agent.genai is not None
    assert chat.genai.request is request and agent.genai.request is request
    assert chat.genai.parent_genai_span_id == AGENT_SPAN
    assert agent.genai.parent_genai_span_id is None
    assert chat.genai.http_status == 200  # the last attempt
    p = one(chat)["properties"]
    assert p["$ai_parent_id"] == f"{AGENT_SPAN:016x}"
    assert p["$ai_base_url"] == "http://m:1"
    assert one(chat)["distinct_id"] == "user-1"  # the request span's enduser.id
    assert one(agent)["properties"]["$ai_span_name"] == "invoke_agent mock-chat"


def test_genai_operation_reads_the_sdk_span_and_any_span_with_public_attributes():
    from opentelemetry.sdk.trace import TracerProvider

    from otel_posthog.sdk.genai_spans import genai_operation

    class OtherSpan:  # another SDK's span: public attributes only
        attributes = {"gen_ai.operation.name": "embeddings"}

    assert genai_operation(OtherSpan()) == "embeddings"
    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("chat x", attributes={"gen_ai.operation.name": "chat"})
    assert genai_operation(span) == "chat"
    assert genai_operation(tracer.start_span("GET /")) is None


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(st.text(max_size=10), max_size=3).map(tuple),
)
_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_KEYS = st.sampled_from(
    [
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.provider.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.request.temperature",
        "gen_ai.request.max_tokens",
        "gen_ai.request.stream",
        "gen_ai.response.time_to_first_chunk",
        "gen_ai.conversation.id",
        "gen_ai.tool.name",
        "server.address",
        "server.port",
        "http.response.status_code",
        "error.type",
        "enduser.id",
    ]
)


@settings_profile(max_examples=150, deadline=None)
@given(
    attrs=st.dictionaries(_KEYS, _VALUES, max_size=10),
    operation=st.one_of(st.text(min_size=1, max_size=20), st.sampled_from(["chat", "embeddings"])),
    inputs=st.one_of(_JSONISH.map(json.dumps), st.text(max_size=40), _VALUES),
    outputs=st.one_of(_JSONISH.map(json.dumps), _JSONISH),
    events=st.lists(
        st.tuples(
            st.sampled_from(
                ["gen_ai.user.message", "gen_ai.choice", "gen_ai.content.prompt", "other"]
            ),
            st.dictionaries(
                st.sampled_from(["content", "gen_ai.event.content", "gen_ai.prompt", "message"]),
                st.one_of(_JSONISH.map(json.dumps), st.text(max_size=20)),
                max_size=2,
            ),
        ),
        max_size=3,
    ),
    url=st.one_of(st.none(), st.text(max_size=30)),
    status=st.one_of(st.none(), st.integers(min_value=-5, max_value=700)),
)
def test_any_genai_span_maps_to_one_json_safe_event(
    attrs, operation, inputs, outputs, events, url, status
):
    view = genai_view(
        operation,
        facts=GenAIFacts(http_url=url, http_status=status, events=tuple(events)),
        **{
            **attrs,
            "gen_ai.input.messages": inputs,
            "gen_ai.output.messages": outputs,
        },
    )
    event = one(view)
    json.dumps(event, allow_nan=False)  # what the transport sends: valid JSON
    p = event["properties"]
    assert p["$ai_trace_id"] == p["request_id"]
    for key in ("$ai_input", "$ai_output_choices"):
        if key in p:
            assert all(isinstance(m, dict) and "role" in m for m in p[key])


def test_non_finite_numbers_are_left_out():
    nan = float("nan")
    view = genai_view(
        **{"gen_ai.request.temperature": nan, "gen_ai.response.time_to_first_chunk": float("inf")}
    )
    p = one(view)["properties"]
    assert "$ai_temperature" not in p and "$ai_time_to_first_token" not in p


def test_excluded_routes_make_no_ai_events_either():
    health = request_view(**{"http.route": "/health", "url.path": "/health"})
    assert map_span(genai_view(facts=GenAIFacts(request=health)), settings()) == []
    assert map_span(genai_view(facts=GenAIFacts(request=request_view())), settings()) != []
