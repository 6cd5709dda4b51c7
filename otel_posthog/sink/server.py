"""Run an ASGI app under uvicorn on a background thread (the sink, the receiver, tests)."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from .app import Faults, create_app
from .rest_api import personal_key_for
from .store import EventStore, StoredEvent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    """uvicorn serving ``app`` on ``host:port`` in a daemon thread; ``stop()`` to end."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any):
        self.host = host
        self.port = port or free_port(host)
        config.setdefault("log_level", "warning")
        config.setdefault("lifespan", "off")
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, **config))
        # uvicorn installs no signal handlers off the main thread: the owner stops it.
        self.thread = threading.Thread(
            target=self.server.run, name="otel-posthog-server", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalSink(ThreadedServer):
    """The local capture server with its store, for the demo and tests."""

    def __init__(
        self,
        db_path: str = ":memory:",
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        personal_api_key: str | None = None,
    ) -> None:
        self.api_key = api_key or "phc_local_" + secrets.token_hex(8)
        self.personal_api_key = personal_key_for(db_path, personal_api_key)
        self.store = EventStore(db_path)
        self.faults = Faults()
        self.app = create_app(
            self.store,
            self.api_key,
            self.faults,
            bind_host=host,
            personal_api_key=self.personal_api_key,
        )
        super().__init__(self.app, host, port)

    def events(self, event: str | None = None, **filters: Any) -> list[StoredEvent]:
        return self.store.query(events=[event] if event else None, **filters)

    def wait_for(
        self,
        predicate: Callable[[list[StoredEvent]], bool],
        timeout_s: float = 10.0,
        **filters: Any,
    ) -> list[StoredEvent]:
        """Poll the store until ``predicate(events)`` holds; returns the events either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.store.query(**filters)
            if predicate(found) or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self) -> None:
        super().stop()
        self.store.close()
        self.app.state.dashboards.objects.close()
