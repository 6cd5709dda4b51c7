"""Example API shaped like the user-journey guide, instrumented by otel-posthog.

Run it (PostHog key and host from the environment, or the local sink's):

    POSTHOG_API_KEY=phc_... POSTHOG_HOST=http://127.0.0.1:8765 \
    OTEL_POSTHOG_JWT_SECRET=demo-secret-change-me \
    uvicorn examples.fastapi_app.app:app --port 8000
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import jwt
from fastapi import BackgroundTasks, FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from pydantic import BaseModel

import otel_posthog

DEMO_SECRET = os.environ.setdefault("OTEL_POSTHOG_JWT_SECRET", "demo-secret-change-me")
DEMO_USER = "user_12345"
SLOW_SECONDS = float(os.environ.get("EXAMPLE_SLOW_SECONDS", "1.2"))

tracer = trace.get_tracer("example")


class Login(BaseModel):
    email: str = "demo@example.com"
    user_id: str = DEMO_USER


class Message(BaseModel):
    text: str = "hello"
    slow: bool = False


def issue_token(user_id: str, ttl_s: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "aud": "authenticated", "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, DEMO_SECRET, algorithm="HS256")


def create_app() -> FastAPI:
    otel_posthog.configure()
    app = FastAPI(title="otel-posthog example")
    cors_origins = [o for o in os.environ.get("EXAMPLE_CORS_ORIGINS", "").split(",") if o]
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=otel_posthog.cors.ALLOW_HEADERS,
            expose_headers=otel_posthog.cors.EXPOSE_HEADERS,
        )

    @app.post("/api/auth/login")
    async def login(body: Login) -> dict:
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
            await asyncio.sleep(SLOW_SECONDS)
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

    FastAPIInstrumentor.instrument_app(app, exclude_spans=["send", "receive"])
    return app


app = create_app()
