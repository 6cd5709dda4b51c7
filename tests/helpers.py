"""Test helpers: real servers on loopback (uvicorn subprocesses, the local sink)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import requests

from otel_posthog.sink.server import free_port

ROOT = Path(__file__).resolve().parent.parent
# Debian's Chromium, headless, with the flags this machine's closed network needs.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

VENV_BIN = Path(sys.executable).parent


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s: every server a test started ends."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def listening_socket() -> socket.socket:
    """A socket listening on a free 127.0.0.1 port, for a server started with its fd
    (gunicorn ``-b fd://N``): no other process can take the port in between."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class AppProcess:
    """A real server process (uvicorn by default) on 127.0.0.1, with its output captured."""

    def __init__(
        self,
        env: dict[str, str],
        app: str = "otel_posthog.demo.fastapi_app.app:app",
        argv: Sequence[str] | None = None,
        port: int | None = None,
        ready_path: str = "/health",
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.port = port or free_port()
        self.pass_fds = tuple(pass_fds)
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = dict(os.environ)
        full_env.pop("OTEL_PYTHON_DISTRO", None)
        full_env.update(env)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PATH"] = f"{VENV_BIN}:{full_env.get('PATH', '')}"
        if argv is None:
            argv = [str(VENV_BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(self.port)]
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env = full_env
        self.ready_path = ready_path
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"otel-posthog-app-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> AppProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            pass_fds=self.pass_fds,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited early:\n{self.output()}")
            try:
                requests.get(self.url + self.ready_path, timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"app did not start:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        if hasattr(self, "_log"):
            self._log.close()

    def __enter__(self) -> AppProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bridge_env(sink, **extra: str) -> dict[str, str]:
    """Environment that points the bridge at ``sink``, with fast flushing for tests."""
    env = {
        "POSTHOG_API_KEY": sink.api_key,
        "POSTHOG_HOST": sink.url,
        "OTEL_POSTHOG_FLUSH_INTERVAL_MS": "100",
        "OTEL_POSTHOG_JWT_SECRET": "demo-secret-change-me-before-any-real-use",
        "OTEL_SERVICE_NAME": "example-api",
        "EXAMPLE_SLOW_SECONDS": "1.1",
    }
    env.update(extra)
    return env


# OTEL_POSTHOG_COMPAT=public (make test-public-api) turns off otel_posthog.compat's
# Starlette lifespan hook: the flush at a server's SIGTERM then needs the app wrapped in
# PostHogASGIMiddleware (test_framework_starlette, both modes), else falls back to atexit,
# which uvicorn's re-raised signal skips (docs/architecture.md). These apps are zero code.
needs_lifespan_hook = pytest.mark.skipif(
    os.environ.get("OTEL_POSTHOG_COMPAT", "").strip().lower() == "public",
    reason="the SIGTERM flush needs the Starlette lifespan hook (off: OTEL_POSTHOG_COMPAT=public)",
)
