"""Deliver queued events when the server stops.

uvicorn handles SIGTERM itself and re-raises it after its shutdown, so neither the tracer
provider's nor posthog's ``atexit`` handler runs, and a signal handler installed while the
app is imported is discarded. The reliable moment is the ASGI lifespan shutdown, which
every ASGI server runs after in-flight requests finished: we wrap Starlette's (and so
FastAPI's) router lifespan once (requests never pass through it) and flush every active
bridge before the app reports ``lifespan.shutdown.complete``. ``atexit`` covers everything else.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
from typing import Any

log = logging.getLogger("otel_posthog")
_installed = False


def _flush() -> None:
    from .processor import flush_all

    flush_all()


def install() -> None:
    """Idempotent: hook Starlette's lifespan shutdown and ``atexit``."""
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(_flush)
    from . import starlette_layer

    starlette_layer.install()
    try:
        from starlette.routing import Router
    except ImportError:
        return
    original = Router.lifespan

    async def lifespan(self: Any, scope: Any, receive: Any, send: Any) -> None:
        async def send_after_flush(message: Any) -> None:
            if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                try:
                    await asyncio.get_running_loop().run_in_executor(None, _flush)
                except Exception as exc:
                    log.warning("otel_posthog: flush at shutdown failed: %r", exc)
            await send(message)

        return await original(self, scope, receive, send_after_flush)

    Router.lifespan = lifespan  # type: ignore[method-assign]
