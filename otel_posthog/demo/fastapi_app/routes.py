"""The example API's routes, shaped like the user-journey guide (no side effects on import)."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from opentelemetry import trace
from pydantic import BaseModel

import otel_posthog

from .tokens import check_may_mint, issue_token

DEMO_USER = "user_12345"

tracer = trace.get_tracer("example")


class Login(BaseModel):
    email: str = "demo@example.com"
    user_id: str = DEMO_USER


class Message(BaseModel):
    text: str = "hello"
    slow: bool = False
    stream: bool = False  # stream the model's reply (when a model is configured)
    model_status: int | None = None  # ask the local model server to fail (e.g. 429, 500)


def slow_seconds() -> float:
    return float(os.environ.get("EXAMPLE_SLOW_SECONDS", "1.2"))


MODEL = os.environ.get("EXAMPLE_MODEL", "mock-chat")
EMBEDDING_MODEL = os.environ.get("EXAMPLE_EMBEDDING_MODEL", "mock-embed")
SYSTEM_PROMPT = "You are the movie chat's friendly assistant."
_clients: dict[str, Any] = {}


def model_client() -> Any:
    """The ``openai`` client for ``OPENAI_BASE_URL`` (the local model server in the demo),
    or None when no model is configured or the ``openai`` package is not installed."""
    base_url = os.environ.get("OPENAI_BASE_URL")
    if not base_url:
        return None
    client = _clients.get(base_url)
    if client is None:
        try:
            import openai
        except ImportError:
            return None
        api_key = os.environ.get("OPENAI_API_KEY") or "local-model-server-needs-no-key"
        client = _clients[base_url] = openai.AsyncOpenAI(base_url=base_url, api_key=api_key)
    return client


async def ask_model(client: Any, body: Message, slow: bool) -> tuple[str, dict, str]:
    """One chat completion (streamed or not): the reply, the usage figures, the model."""
    headers = {}
    if slow:
        headers["X-Mock-Delay-Ms"] = str(int(slow_seconds() * 1000))
    if body.model_status:
        headers["X-Mock-Status"] = str(body.model_status)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": body.text},
    ]
    if not body.stream:
        response = await client.chat.completions.create(
            model=MODEL, messages=messages, extra_headers=headers
        )
        usage = response.usage.model_dump() if response.usage else {}
        return response.choices[0].message.content or "", usage, response.model
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers,
    )
    pieces, usage, model = [], {}, MODEL
    async for chunk in stream:
        model = chunk.model or model
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage.model_dump()
    return "".join(pieces), usage, model


async def index_message(client: Any, text: str) -> None:
    """After the response (a BackgroundTask): embed the message for search."""
    await client.embeddings.create(model=EMBEDDING_MODEL, input=[text])
    otel_posthog.capture("chat_message_indexed", {"length": len(text)})


def instrument_model_clients(tracer_provider: Any = None) -> bool:
    """The official OpenTelemetry instrumentations of the ``openai`` client and of its HTTP
    calls (``httpx2``), when installed (``pip install 'otel-posthog[llm]'``)."""
    try:
        from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    except ImportError:
        return False
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    HTTPX2ClientInstrumentor().instrument(tracer_provider=tracer_provider)
    return True


def add_routes(app: FastAPI) -> None:
    """Register the example endpoints on ``app``."""

    @app.post("/api/auth/login")
    async def login(body: Login, request: Request) -> dict:
        check_may_mint(request)  # the public demo secret: loopback only
        otel_posthog.identify(body.user_id)
        otel_posthog.capture("user_logged_in", {"method": "password"})
        return {"token": issue_token(body.user_id), "user_id": body.user_id}

    @app.post("/api/auth/signup")
    async def signup(body: Login) -> dict:
        return {"user_id": body.user_id, "status": "pending_verification"}

    @app.post("/api/auth/verify")
    async def verify() -> dict:
        return {"verified": True}

    @app.get("/api/chat/messages")
    async def messages() -> dict:
        with tracer.start_as_current_span("load_messages"):
            otel_posthog.capture("chat_history_loaded", {"count": 2})
        return {"messages": [{"role": "assistant", "text": "Hi!"}, {"role": "user", "text": "Hey"}]}

    @app.post("/api/chat/send")
    async def send(body: Message, tasks: BackgroundTasks) -> dict:
        slow = body.slow or "slow" in body.text
        client = model_client()
        if client is None:  # no model configured: an echo
            if slow:
                await asyncio.sleep(slow_seconds())
            tasks.add_task(otel_posthog.capture, "chat_message_indexed", {"length": len(body.text)})
            return {"id": str(uuid.uuid4()), "echo": body.text}
        try:
            reply, usage, model = await ask_model(client, body, slow)
        except Exception as exc:  # the model failed (openai.APIError and its kind)
            raise HTTPException(status_code=503, detail="the model is unavailable") from exc
        tasks.add_task(index_message, client, body.text)
        return {"id": str(uuid.uuid4()), "reply": reply, "model": model, "usage": usage}

    @app.get("/api/chat/stream")
    async def stream() -> StreamingResponse:
        async def chunks():
            for i in range(5):
                await asyncio.sleep(0.1)
                yield f"data: token {i}\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    @app.get("/api/chat/{chat_id}")
    async def chat(chat_id: str) -> dict:
        if chat_id == "missing":
            raise HTTPException(status_code=404, detail="chat not found")
        return {"chat_id": chat_id}

    @app.get("/api/popular/movies")
    async def movies() -> list:
        return [{"title": "Arrival"}, {"title": "Her"}]

    @app.get("/api/fail")
    async def fail() -> dict:
        raise RuntimeError("the recommendation service is down")

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}
