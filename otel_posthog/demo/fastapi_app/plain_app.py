"""The example API with no tracing code at all: run it under ``opentelemetry-instrument``.

It imports nothing of the bridge (only the example's token helper beside it) and calls no
instrumentor; the launcher and the ``posthog`` distro do everything (see docs/launcher.md):

    POSTHOG_API_KEY=phc_... POSTHOG_HOST=https://us.i.posthog.com OTEL_SERVICE_NAME=api \
    OTEL_POSTHOG_JWT_SECRET=demo-secret-change-me-before-any-real-use \
    opentelemetry-instrument uvicorn otel_posthog.demo.fastapi_app.plain_app:app --port 8000

``/api/recommendations`` calls ``EXAMPLE_DOWNSTREAM_URL`` (if set) with ``requests``, to
show outbound trace propagation and the ``http_client_calls`` rollup.
"""

from __future__ import annotations

import asyncio
import os

import requests
from fastapi import BackgroundTasks, FastAPI, HTTPException, Request
from pydantic import BaseModel

from .tokens import check_may_mint, issue_token

DEMO_USER = "user_12345"

app = FastAPI(title="otel-posthog example (zero code)")


class Login(BaseModel):
    email: str = "demo@example.com"
    user_id: str = DEMO_USER


class Message(BaseModel):
    text: str = "hello"
    slow: bool = False


def _downstream(path: str) -> dict:
    base = os.environ.get("EXAMPLE_DOWNSTREAM_URL")
    if not base:
        return {}
    response = requests.get(base.rstrip("/") + path, timeout=5)
    return {"status": response.status_code, "body": response.json()}


@app.post("/api/auth/login")
async def login(body: Login, request: Request) -> dict:
    check_may_mint(request)  # the public demo secret: loopback only
    return {"token": issue_token(body.user_id), "user_id": body.user_id}


@app.get("/api/chat/messages")
async def messages() -> dict:
    return {"messages": [{"role": "assistant", "text": "Hi!"}, {"role": "user", "text": "Hey"}]}


_clients: list = []


def _model_client():
    """One ``openai`` client for the app (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``)."""
    if not _clients:
        import openai

        _clients.append(openai.AsyncOpenAI(api_key=os.environ.get("OPENAI_API_KEY") or "no-key"))
    return _clients[0]


@app.post("/api/chat/send")
async def send(body: Message, tasks: BackgroundTasks) -> dict:
    slow_s = float(os.environ.get("EXAMPLE_SLOW_SECONDS", "1.2")) if body.slow else 0.0
    if os.environ.get("OPENAI_BASE_URL"):  # a model answers (the launcher instruments openai)
        client = _model_client()
        headers = {"X-Mock-Delay-Ms": str(int(slow_s * 1000))} if slow_s else {}
        response = await client.chat.completions.create(
            model="mock-chat",
            messages=[{"role": "user", "content": body.text}],
            extra_headers=headers,
        )
        return {"reply": response.choices[0].message.content}
    if slow_s:
        await asyncio.sleep(slow_s)
    tasks.add_task(_downstream, "/index")  # runs after the response, in the same trace
    return {"echo": body.text}


@app.get("/api/chat/{chat_id}")
async def chat(chat_id: str) -> dict:
    if chat_id == "missing":
        raise HTTPException(status_code=404, detail="chat not found")
    return {"chat_id": chat_id}


@app.get("/api/recommendations")
def recommendations() -> dict:
    first = _downstream("/movies")
    second = _downstream("/series")
    return {"movies": first, "series": second}


@app.get("/api/fail")
async def fail() -> dict:
    raise RuntimeError("the recommendation service is down")


@app.get("/health")
async def health() -> dict:
    return {"ok": True, "pid": os.getpid()}
