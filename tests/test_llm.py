"""LLM calls in the journey: the real ``openai`` client, instrumented by the real
``opentelemetry-instrumentation-openai-v2`` (and httpx2's), calls the example's local
OpenAI-compatible model server from the example FastAPI app under uvicorn with the
bridge; the ``$ai_*`` events reach the local sink on the request's person, session and
``request_id``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

from otel_posthog.demo.fastapi_app import routes
from otel_posthog.demo.fastapi_app.model_server import app as model_app
from otel_posthog.sink.server import LocalSink, ThreadedServer

from .bridge_fixtures import SUPABASE_SECRET, Bridge
from .helpers import AppProcess
from .launcher_support import PLAIN_APP, launcher_env, uvicorn_argv

SESSION = "0190f3a2-7b1c-7d4e-8f00-123456789abc"
USER = "user-llm-1"
CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


@pytest.fixture(scope="module")
def model() -> Iterator[ThreadedServer]:
    server = ThreadedServer(model_app).start()
    yield server
    server.stop()


def instrumented(bridge: Bridge, model: ThreadedServer, monkeypatch: Any, capture: bool) -> None:
    """Point the example's openai client at the model server; instrument it on the bridge."""
    monkeypatch.setenv("OPENAI_BASE_URL", model.url + "/v1")
    if capture:
        monkeypatch.setenv(CAPTURE, "SPAN_ONLY")
    else:
        monkeypatch.delenv(CAPTURE, raising=False)
    routes._clients.clear()
    OpenAIInstrumentor().uninstrument()  # instrumented once per process: this bridge's now
    HTTPX2ClientInstrumentor().uninstrument()
    assert routes.instrument_model_clients(bridge.provider)


@pytest.fixture
def make_bridge(sink: LocalSink, model: ThreadedServer, monkeypatch: Any) -> Iterator[Any]:
    made: list[Bridge] = []

    def make(capture: bool = False, **settings: Any) -> Bridge:
        bridge = Bridge(sink, **settings)
        instrumented(bridge, model, monkeypatch, capture)
        made.append(bridge)
        return bridge

    yield make
    OpenAIInstrumentor().uninstrument()
    HTTPX2ClientInstrumentor().uninstrument()
    routes._clients.clear()
    for bridge in made:
        bridge.stop()


def auth(user: str = USER) -> dict[str, str]:
    token = jwt.encode(
        {"sub": user, "aud": "authenticated", "exp": int(time.time()) + 600},
        SUPABASE_SECRET,
        "HS256",
    )
    return {"Authorization": f"Bearer {token}", "X-POSTHOG-SESSION-ID": SESSION}


def send(bridge: Bridge, body: dict[str, Any], expect: set[str]) -> tuple[Any, dict[str, Any]]:
    response = bridge.request("POST", "/api/chat/send", json=body, headers=auth())
    request_id = response.headers["X-Request-ID"]
    events = bridge.events_for(request_id, expect)
    got = {e.event: e for e in events}
    assert expect <= set(got), (expect, [e.event for e in events])
    return response, got


def test_generation_is_on_the_requests_person_session_and_request_id(make_bridge):
    bridge = make_bridge()
    response, got = send(
        bridge,
        {"text": "recommend a film about space", "slow": True},
        {"api_request", "slow_request", "$ai_generation", "$ai_embedding", "chat_message_indexed"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["reply"] == "You said: recommend a film about space"
    request_id = response.headers["X-Request-ID"]
    gen = got["$ai_generation"]
    p = gen.properties
    assert gen.distinct_id == USER  # the verified JWT's person
    assert "$process_person_profile" not in p
    assert p["$session_id"] == SESSION and p["session_id"] == SESSION
    assert p["request_id"] == request_id and p["$ai_trace_id"] == request_id
    assert p["$ai_parent_id"] == request_id  # the request's own call: at the trace's root
    assert p["$ai_model"] == body["model"] == "mock-chat-2026-01-01"
    assert p["$ai_provider"] == "openai"
    assert p["$ai_input_tokens"] == body["usage"]["prompt_tokens"] > 0
    assert p["$ai_output_tokens"] == body["usage"]["completion_tokens"] == 7
    assert p["$ai_http_status"] == 200  # from the httpx2 CLIENT span under the model span
    assert p["$ai_base_url"] == model_base(bridge)
    assert p["$ai_is_error"] is False
    assert p["$ai_span_name"] == "chat mock-chat"
    # the model server waited EXAMPLE_SLOW_SECONDS: the slow request is the model's
    request = got["api_request"].properties
    assert p["$ai_latency"] >= routes.slow_seconds()
    assert p["$ai_latency"] * 1000 <= request["response_time_ms"]
    assert p["endpoint"] == "/api/chat/send" and p["service"] == "test-api"
    assert "$ai_input" not in p and "$ai_output_choices" not in p  # content not captured
    # the api_request's LLM rollup; the model's HTTP call is not an http_client_call
    assert request["llm_calls"] == 1
    assert request["llm_input_tokens"] == p["$ai_input_tokens"]
    assert request["llm_output_tokens"] == p["$ai_output_tokens"]
    assert request["llm_time_ms"] >= routes.slow_seconds() * 1000
    assert "http_client_calls" not in request
    assert got["slow_request"].properties["request_id"] == request_id
    # the embedding ran in a BackgroundTask, after the response: still this request's
    emb = got["$ai_embedding"]
    assert emb.distinct_id == USER
    assert emb.properties["$ai_trace_id"] == request_id
    assert emb.properties["$session_id"] == SESSION
    assert emb.properties["$ai_model"] == "mock-embed"
    assert emb.properties["$ai_input_tokens"] == 5
    assert got["chat_message_indexed"].properties["request_id"] == request_id
    assert gen.uuid != emb.uuid


def model_base(bridge: Bridge) -> str:
    return os.environ["OPENAI_BASE_URL"].removesuffix("/v1")


def test_streamed_generation(make_bridge):
    bridge = make_bridge()
    response, got = send(
        bridge, {"text": "stream it please", "stream": True}, {"api_request", "$ai_generation"}
    )
    body = response.json()
    assert body["reply"] == "You said: stream it please"
    p = got["$ai_generation"].properties
    assert p["$ai_output_tokens"] == body["usage"]["completion_tokens"] == 5
    assert p["$ai_input_tokens"] == body["usage"]["prompt_tokens"]
    assert p["$ai_model"] == "mock-chat-2026-01-01"
    assert p["$ai_http_status"] == 200
    assert got["api_request"].properties["llm_output_tokens"] == 5


@pytest.mark.parametrize("status", [429, 500])
def test_a_failing_model_call_is_an_error_with_its_http_status(make_bridge, status):
    bridge = make_bridge()
    response, got = send(
        bridge,
        {"text": "hi", "model_status": status},
        {"api_request", "api_error", "$ai_generation"},
    )
    assert response.status_code == 503
    p = got["$ai_generation"].properties
    assert p["$ai_is_error"] is True
    assert p["$ai_http_status"] == status  # the last attempt's (openai retries inside)
    assert f"Error code: {status}" in p["$ai_error"]
    assert "$ai_output_tokens" not in p
    assert got["$ai_generation"].distinct_id == USER
    assert p["$ai_trace_id"] == got["api_error"].properties["request_id"]
    assert got["api_request"].properties["llm_calls"] == 1


def test_content_only_when_captured_and_never_in_privacy_mode(make_bridge):
    bridge = make_bridge(capture=True)
    _, got = send(bridge, {"text": "a secret plot"}, {"$ai_generation"})
    p = got["$ai_generation"].properties
    assert p["$ai_input"] == [
        {"role": "system", "content": routes.SYSTEM_PROMPT},
        {"role": "user", "content": "a secret plot"},
    ]
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": "You said: a secret plot"}]
    bridge.stop()

    private = make_bridge(capture=True, ai_privacy_mode=True)
    _, got = send(private, {"text": "a secret plot"}, {"$ai_generation"})
    p = got["$ai_generation"].properties
    assert "$ai_input" not in p and "$ai_output_choices" not in p
    assert p["$ai_output_tokens"] == 5  # everything else stays
    assert "secret" not in str(got["$ai_generation"].as_dict())
    # the span did carry the content: privacy mode is what kept it out
    chat = [s for s in private.spans.get_finished_spans() if s.name == "chat mock-chat"]
    assert chat and "a secret plot" in chat[0].attributes["gen_ai.input.messages"]


def test_ai_events_off(make_bridge):
    bridge = make_bridge(ai_events=False)
    response = bridge.request("POST", "/api/chat/send", json={"text": "hi"}, headers=auth())
    request_id = response.headers["X-Request-ID"]
    events = bridge.events_for(request_id, {"api_request", "chat_message_indexed"})
    names = {e.event for e in events}
    assert not {n for n in names if n.startswith("$ai_")}, names
    request = next(e for e in events if e.event == "api_request").properties
    assert "llm_calls" not in request
    assert request["http_client_calls"] == 1  # the model call, as an outbound call


def test_agent_and_tool_spans_nest_and_count_model_calls_once(make_bridge):
    bridge = make_bridge()
    tracer = bridge.provider.get_tracer("agent-framework")

    @bridge.app.post("/api/agent")
    async def agent() -> dict:
        client = routes.model_client()
        agent_attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper"}
        with tracer.start_as_current_span("invoke_agent helper", attributes=agent_attrs):
            await client.chat.completions.create(
                model="mock-chat", messages=[{"role": "user", "content": "plan"}]
            )
            tool_attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}
            with tracer.start_as_current_span("execute_tool search", attributes=tool_attrs):
                pass
            # a framework's own chat span around the client's: one model call, counted once
            wrapper = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "mock-chat"}
            with tracer.start_as_current_span(
                "chat wrapper", kind=trace.SpanKind.CLIENT, attributes=wrapper
            ):
                await client.chat.completions.create(
                    model="mock-chat", messages=[{"role": "user", "content": "answer"}]
                )
        return {"ok": True}

    response = bridge.request("POST", "/api/agent", headers=auth())
    request_id = response.headers["X-Request-ID"]
    events = bridge.events_for(request_id, {"api_request", "$ai_span", "$ai_generation"})
    spans = [e for e in events if e.event == "$ai_span"]
    gens = [e for e in events if e.event == "$ai_generation"]
    assert len(spans) == 2 and len(gens) == 3
    agent_span = next(e for e in spans if e.properties["$ai_span_name"] == "helper")
    tool_span = next(e for e in spans if e.properties["$ai_span_name"] == "search")
    agent_id = agent_span.properties["$ai_span_id"]
    assert agent_span.properties["$ai_parent_id"] == request_id
    assert tool_span.properties["$ai_parent_id"] == agent_id
    wrapper = next(e for e in gens if e.properties["$ai_span_name"] == "chat wrapper")
    assert wrapper.properties["$ai_parent_id"] == agent_id
    inner = [e for e in gens if e is not wrapper]
    parents = sorted(e.properties["$ai_parent_id"] for e in inner)
    assert parents == sorted([agent_id, wrapper.properties["$ai_span_id"]])
    assert {e.distinct_id for e in events if e.event.startswith("$ai_")} == {USER}
    request = next(e for e in events if e.event == "api_request").properties
    assert request["llm_calls"] == 2  # the agent and tool spans and the wrapped call: not again


def test_a_generation_outside_any_request_is_personless(make_bridge, sink):
    bridge = make_bridge()
    tracer = bridge.provider.get_tracer("job")
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "mock-chat",
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.conversation.id": "conv-1",
    }
    client = trace.SpanKind.CLIENT
    with tracer.start_as_current_span("chat mock-chat", kind=client, attributes=attrs) as span:
        trace_hex = f"{span.get_span_context().trace_id:032x}"
    owned_attrs = {**attrs, "enduser.id": "job-owner-7"}
    with tracer.start_as_current_span("nightly summary", kind=client, attributes=owned_attrs):
        pass
    found = sink.wait_for(lambda evs: len([e for e in evs if e.event == "$ai_generation"]) >= 2)
    by_name = {e.properties["$ai_span_name"]: e for e in found if e.event == "$ai_generation"}
    lone = by_name["chat mock-chat"]
    assert lone.distinct_id == f"request:{trace_hex}"
    assert lone.properties["$ai_trace_id"] == trace_hex
    assert lone.properties["$process_person_profile"] is False
    assert lone.properties["$ai_session_id"] == "conv-1"
    assert "endpoint" not in lone.properties
    owned = by_name["nightly summary"]
    assert owned.distinct_id == "job-owner-7"
    assert "$process_person_profile" not in owned.properties
    uuid.UUID(owned.uuid)


def test_receiver_makes_the_same_ai_events_from_the_same_spans(make_bridge, sink):
    """The in-process bridge and ``otel-posthog receive`` map the very same spans (one OTLP
    export batch, as a BatchSpanProcessor sends a request's spans) to identical events."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from .receiver_fixtures import Receiver

    receiver_sink = LocalSink().start()
    receiver = Receiver(receiver_sink).start()
    try:
        bridge = make_bridge(capture=True)
        batch = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=receiver.traces_url), schedule_delay_millis=600_000
        )
        bridge.provider.add_span_processor(batch)
        expect = {"api_request", "$ai_generation", "$ai_embedding", "chat_message_indexed"}
        response, _ = send(bridge, {"text": "same on both paths"}, expect)
        failed, _ = send(
            bridge, {"text": "x", "model_status": 500}, {"api_error", "$ai_generation"}
        )
        assert batch.force_flush(10_000)
        receiver.flush()

        def ai_events(s: LocalSink) -> list[dict]:
            found = s.wait_for(lambda evs: len([e for e in evs if e.event.startswith("$ai_")]) >= 3)
            return sorted(
                (e.as_dict() for e in found if e.event.startswith("$ai_")), key=lambda e: e["uuid"]
            )

        in_process, received = ai_events(sink), ai_events(receiver_sink)
        assert len(in_process) == 3
        assert [e["event"] for e in received] == [e["event"] for e in in_process]
        for got, want in zip(received, in_process, strict=True):
            diff = {
                k: (got["properties"].get(k), want["properties"].get(k))
                for k in set(got["properties"]) | set(want["properties"])
                if got["properties"].get(k) != want["properties"].get(k)
            }
            assert not diff, (got["event"], diff)
            assert {**got, "timestamp": None} == {**want, "timestamp": None}
        assert {e["properties"]["$ai_trace_id"] for e in received} == {
            response.headers["X-Request-ID"],
            failed.headers["X-Request-ID"],
        }
        assert {e["properties"].get("$ai_http_status") for e in received} == {200, 500}
    finally:
        receiver.stop()
        receiver_sink.stop()


def test_zero_code_launcher_maps_genai_spans_on_the_exporter_path(sink, model):
    """``opentelemetry-instrument`` with the posthog distro (``OTEL_TRACES_EXPORTER=posthog``,
    processor and exporter linked): the openai instrumentation's span becomes an
    ``$ai_generation`` on the request's verified person, and the rollup is on api_request."""
    env = launcher_env(sink, OPENAI_BASE_URL=model.url + "/v1")
    with AppProcess(env, argv=uvicorn_argv(PLAIN_APP)) as app:
        token = requests.post(app.url + "/api/auth/login", json={}, timeout=10).json()["token"]
        headers = {"Authorization": f"Bearer {token}", "X-POSTHOG-SESSION-ID": SESSION}
        response = requests.post(
            app.url + "/api/chat/send", json={"text": "zero code"}, headers=headers, timeout=30
        )
        assert response.json() == {"reply": "You said: zero code"}
        request_id = response.headers["X-Request-ID"]
        found = sink.wait_for(
            lambda evs: {"api_request", "$ai_generation"} <= {e.event for e in evs},
            timeout_s=20,
            request_id=request_id,
        )
    got = {e.event: e for e in found}
    assert {"api_request", "$ai_generation"} <= set(got), app.output()
    gen = got["$ai_generation"]
    assert gen.distinct_id == "user_12345"
    assert gen.properties["$ai_trace_id"] == request_id
    assert gen.properties["$session_id"] == SESSION
    assert gen.properties["$ai_output_tokens"] == 4
    assert gen.properties["service"] == "api"
    assert got["api_request"].properties["llm_calls"] == 1
    assert got["api_request"].properties["llm_output_tokens"] == 4


def test_a_client_span_named_genai_after_it_started_is_mapped(make_bridge):
    bridge = make_bridge()
    tracer = bridge.provider.get_tracer("late-naming-instrumentation")

    @bridge.app.get("/api/late")
    async def late() -> dict:
        with tracer.start_as_current_span("chat late", kind=trace.SpanKind.CLIENT) as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.usage.output_tokens": 2})
        return {}

    response = bridge.request("GET", "/api/late", headers=auth())
    request_id = response.headers["X-Request-ID"]
    got = {e.event: e for e in bridge.events_for(request_id, {"api_request", "$ai_generation"})}
    assert got["$ai_generation"].distinct_id == USER
    assert got["$ai_generation"].properties["$ai_output_tokens"] == 2
    assert got["api_request"].properties["llm_calls"] == 1
    assert "http_client_calls" not in got["api_request"].properties


@pytest.mark.parametrize("protocol", ["json", "proto"])
def test_a_nodejs_genai_span_through_the_receiver(sink, protocol):
    """A GenAI span made by the OpenTelemetry JS SDK (attributes as the GenAI conventions
    name them; no Node model-client instrumentation is used) reaches the receiver in the
    batch of its request: the same correlation as its api_request."""
    from .helpers import ROOT
    from .receiver_fixtures import Receiver

    receiver = Receiver(sink).start()
    try:
        script = ROOT / "tests/node/genai_spans.mjs"
        out = subprocess.run(
            ["node", str(script), receiver.traces_url, protocol],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        trace_id = json.loads(out.stdout.strip().splitlines()[-1])["trace_id"]
        receiver.flush()
        found = sink.wait_for(
            lambda evs: {"api_request", "$ai_generation"} <= {e.event for e in evs},
            request_id=trace_id,
        )
    finally:
        receiver.stop()
    got = {e.event: e for e in found}
    gen, request = got["$ai_generation"], got["api_request"]
    assert gen.distinct_id == request.distinct_id == "user-123"
    p = gen.properties
    assert p["$ai_trace_id"] == p["request_id"] == trace_id
    assert p["$session_id"] == request.properties["$session_id"]
    assert p["$ai_parent_id"] == trace_id
    assert p["$ai_is_error"] is True and p["$ai_error"] == "429 Rate limit reached"
    assert p["$ai_http_status"] == 429
    assert p["$ai_base_url"] == "https://models.example.com"
    assert p["$ai_input"] == [{"role": "user", "content": "hello from node"}]
    assert p["service"] == "node-chat" and p["endpoint"] == "/api/chat"


def test_the_exporter_alone_maps_genai_spans_from_their_attributes(sink):
    """``OTEL_TRACES_EXPORTER=posthog`` without our processor (another distro): GenAI spans
    still become events, from their own attributes."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from otel_posthog.sdk.exporter import PostHogSpanExporter

    exporter = PostHogSpanExporter(api_key=sink.api_key, host=sink.url, flush_interval_ms=50)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "mock-chat",
        "gen_ai.usage.output_tokens": 3,
        "enduser.id": "user-exported",
    }
    tracer = provider.get_tracer("exporter-only")
    with tracer.start_as_current_span(
        "chat mock-chat", kind=trace.SpanKind.CLIENT, attributes=attrs
    ):
        pass
    try:
        found = sink.wait_for(lambda evs: any(e.event == "$ai_generation" for e in evs))
    finally:
        provider.shutdown()
    gen = next(e for e in found if e.event == "$ai_generation")
    assert gen.distinct_id == "user-exported"
    assert gen.properties["$ai_output_tokens"] == 3


def test_a_genai_span_that_cannot_be_mapped_never_costs_its_requests_events(
    make_bridge, monkeypatch
):
    from otel_posthog.core import genai
    from otel_posthog.counters import STATS

    def broken(view: Any, settings: Any) -> list:
        raise RuntimeError("mapping bug")

    monkeypatch.setattr(genai, "map_genai_span", broken)  # fault injection in our own core
    before = STATS.snapshot(gauges=False)["errors_by_kind"].get("pipeline.genai", 0)  # type: ignore[union-attr]
    bridge = make_bridge()
    _, got = send(bridge, {"text": "hi"}, {"api_request", "chat_message_indexed"})
    assert got["api_request"].properties["llm_calls"] == 1
    assert not [name for name in got if name.startswith("$ai_")]
    after = STATS.snapshot(gauges=False)["errors_by_kind"]
    assert after.get("pipeline.genai", 0) > before  # type: ignore[union-attr]


def test_llm_usage_dashboard_computes_from_real_generations(make_bridge, sink):
    """The shipped "LLM Usage by Person" tiles, computed by the sink from the ``$ai_*``
    events the bridge made of real openai calls (two persons, one failed call)."""
    from otel_posthog.dashboards.definitions import load, with_variables
    from otel_posthog.sink import query_engine

    bridge = make_bridge()
    other = "user-llm-2"
    calls = [
        (USER, {"text": "recommend a film about space"}),
        (USER, {"text": "and one about the sea please"}),
        (USER, {"text": "hi", "model_status": 500}),
        (other, {"text": "hello"}),
    ]
    generations = []
    for user, body in calls:
        response = bridge.request("POST", "/api/chat/send", json=body, headers=auth(user))
        failed = "model_status" in body
        assert response.status_code == (503 if failed else 200)
        expect = {"api_request", "$ai_generation", "api_error" if failed else "$ai_embedding"}
        events = bridge.events_for(response.headers["X-Request-ID"], expect)
        assert expect <= {e.event for e in events}
        generations += [e for e in events if e.event == "$ai_generation"]
    assert len(generations) == 4
    embeddings = [e for e in sink.events() if e.event == "$ai_embedding"]
    assert len(embeddings) == 3
    props = [g.properties for g in generations]

    defs = load()
    dashboard = next(d for d in defs.of("dashboard") if d.key == "llm-usage")
    assert dashboard.name == "LLM Usage by Person"
    tiles = {i.key: i for i in defs.of("insight") if "llm-usage" in i.dashboards}
    assert set(tiles) == {
        "person-llm-calls",
        "llm-usage-by-person",
        "llm-generations",
        "llm-tokens",
        "llm-latency-by-model",
        "llm-errors-by-model",
    }

    def compute(key: str) -> dict[str, Any]:
        insight = tiles[key]
        query = with_variables(insight.query or {}, insight.variables, {"distinct_id": "v1"})
        result = query_engine.compute(sink.store, query, {"distinct_id": USER})
        assert result["kind"] != "not_computed", (key, result)
        return result

    def by_label(result: dict[str, Any]) -> dict[str, Any]:
        return {s["label"]: s["aggregated_value"] for s in result["series"]}

    def p95(values: list[float]) -> float | None:
        return query_engine.quantile(values, 0.95)

    # the person's model calls, newest first, each with its request_id
    table = compute("person-llm-calls")
    assert table["columns"] == [
        "timestamp",
        "event",
        "model",
        "input_tokens",
        "output_tokens",
        "latency_s",
        "is_error",
        "request_id",
    ]
    rows = table["rows"]
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)
    mine = [g for g in generations if g.distinct_id == USER]
    mine += [e for e in embeddings if e.distinct_id == USER]
    assert sorted(tuple(r[1:]) for r in rows) == sorted(
        (
            e.event,
            e.properties["$ai_model"],
            e.properties.get("$ai_input_tokens"),
            e.properties.get("$ai_output_tokens"),
            e.properties["$ai_latency"],
            "true" if e.properties["$ai_is_error"] else "false",
            e.properties["request_id"],
        )
        for e in mine
    )
    assert [r[6] for r in rows if r[1] == "$ai_generation"].count("true") == 1

    # usage by person: generations, tokens, latency p95, errors
    usage = compute("llm-usage-by-person")
    assert usage["columns"] == [
        "person",
        "generations",
        "input_tokens",
        "output_tokens",
        "latency_p95_s",
        "errors",
    ]
    expected = []
    for person in (USER, other):
        own = [g.properties for g in generations if g.distinct_id == person]
        latency = p95([p["$ai_latency"] for p in own])
        expected.append(
            [
                person,
                len(own),
                sum(p.get("$ai_input_tokens", 0) for p in own),
                sum(p.get("$ai_output_tokens", 0) for p in own),
                round(latency, 3) if latency is not None else None,
                sum(1 for p in own if p["$ai_is_error"]),
            ]
        )
    assert usage["rows"] == expected
    assert expected[0][1] == 3 and expected[0][-1] == 1 and expected[1][-1] == 0
    assert all(row[2] > 0 and row[3] > 0 and row[4] > 0 for row in expected)

    # generations over time, tokens, latency p95 and errors by model
    models = {p["$ai_model"] for p in props}
    assert by_label(compute("llm-generations")) == {
        m: sum(1 for p in props if p["$ai_model"] == m) for m in models
    }
    assert by_label(compute("llm-tokens")) == {
        "Input tokens (sum of $ai_input_tokens)": sum(p.get("$ai_input_tokens", 0) for p in props),
        "Output tokens (sum of $ai_output_tokens)": sum(
            p.get("$ai_output_tokens", 0) for p in props
        ),
    }
    assert by_label(compute("llm-latency-by-model")) == {
        m: p95([p["$ai_latency"] for p in props if p["$ai_model"] == m]) for m in models
    }
    failed_model = next(p["$ai_model"] for p in props if p["$ai_is_error"])
    assert by_label(compute("llm-errors-by-model")) == {failed_model: 1}
