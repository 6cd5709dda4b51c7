"""The example API's routes, shaped like the user-journey guide (no side effects on import)."""

from __future__ import annotations

import asyncio
import os
import uuid

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


def slow_seconds() -> float:
    return float(os.environ.get("EXAMPLE_SLOW_SECONDS", "1.2"))


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
        if body.slow or "slow" in body.text:
            await asyncio.sleep(slow_seconds())
        tasks.add_task(otel_posthog.capture, "chat_message_indexed", {"length": len(body.text)})
        return {"id": str(uuid.uuid4()), "echo": body.text}

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
