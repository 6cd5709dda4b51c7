"""Deliver queued events when the server stops.

uvicorn handles SIGTERM itself and re-raises it after its shutdown, so neither the tracer
provider's nor posthog's ``atexit`` handler runs, and a signal handler installed while the
app is imported is discarded. The reliable moment is the ASGI lifespan shutdown, which
every ASGI server runs after in-flight requests finished: we wrap Starlette's (and so
FastAPI's) router lifespan once (requests never pass through it; the wrap lives in
:mod:`otel_posthog.compat`) and flush every active bridge before the app reports
``lifespan.shutdown.complete``. ``atexit`` covers everything else.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable

from .. import compat

log = logging.getLogger("otel_posthog")
_installed = False


def install(flush: Callable[[], None]) -> None:
    """Idempotent: ``flush`` (every bridge's) at Starlette's lifespan shutdown and ``atexit``."""
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(flush)
    from . import starlette_layer

    starlette_layer.install()
    compat.hook_starlette_lifespan(flush)
