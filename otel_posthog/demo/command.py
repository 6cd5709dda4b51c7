"""``otel-posthog demo``: the whole product on one machine, no PostHog account needed.

Starts the local sink and the example app (a uvicorn subprocess, bridge pointed at the
sink) on free loopback ports, plays a user's journey as a browser would (posthog-js
events plus API calls with ``traceparent``, JWT and ``X-POSTHOG-SESSION-ID``), then prints
the user's journey, the correlation of one request, and the web view's URL.

The app and the model server are this package's :mod:`otel_posthog.demo.fastapi_app`, run
as ``python -m`` subprocesses, so the command works from an installed wheel (the ``demo``
extra) as from a clone.
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib import error as urlerror
from urllib import request as urlrequest

from .._version import __version__

EXAMPLE_APP = "otel_posthog.demo.fastapi_app.app:app"
MODEL_SERVER = "otel_posthog.demo.fastapi_app.model_server"  # the local OpenAI-compatible model
# what the sink and the example app import (the ``demo`` extra installs them)
NEEDS = ("starlette", "uvicorn", "fastapi", "opentelemetry.instrumentation.fastapi")
DEMO_USER = "user_12345"
DEMO_SECRET = "demo-secret-change-me-before-any-real-use"
BACKEND_EVENTS = ("api_request", "slow_request", "api_error")
PAUSE_S = 0.15


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="run the sink and the example app, play a journey")
    p.add_argument("--db", default=None, help="sink database (default the sink's)")
    p.add_argument("--keep", action="store_true", help="leave the servers up (Ctrl-C to stop)")
    p.add_argument("--sink-port", type=int, default=0, help="sink port (default a free one)")
    p.add_argument("--app-port", type=int, default=0, help="app port (default a free one)")
    p.set_defaults(func=run_demo)


def uuid7() -> str:
    """A UUIDv7, as posthog-js makes session and window ids."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 66) & 0xFFF) << 64 | (0b10 << 62)
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


class Browser:
    """What a web page with posthog-js and a traced fetch sends: events and API calls."""

    def __init__(self, app_url: str, sink_url: str, api_key: str) -> None:
        self.app_url, self.sink_url, self.api_key = app_url, sink_url, api_key
        self.session_id, self.window_id = uuid7(), uuid7()
        self.distinct_id = "anon-" + str(uuid.uuid4())
        self.token: str | None = None

    def capture(self, event: str, properties: dict[str, Any], at: datetime | None = None) -> None:
        """Post one event as posthog-js does: gzip text/plain to ``/e/?compression=gzip-js``."""
        props = {
            "token": self.api_key,
            "distinct_id": self.distinct_id,
            "$session_id": self.session_id,
            "$window_id": self.window_id,
            "$lib": "web",
            "$lib_version": "demo",
            "$current_url": self.app_url + "/",
            "source": "frontend",
            **properties,
        }
        at = at or datetime.now(timezone.utc)
        body = [
            {
                "uuid": str(uuid.uuid4()),
                "event": event,
                "properties": props,
                "timestamp": at.isoformat(),
            }
        ]
        url = f"{self.sink_url}/e/?compression=gzip-js&ip=0&_={int(time.time() * 1000)}&ver=demo"
        data = gzip.compress(json.dumps(body).encode())
        req = urlrequest.Request(url, data=data, headers={"Content-Type": "text/plain"})
        with urlrequest.urlopen(req, timeout=10) as resp:
            resp.read()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        """An API call with ``traceparent``, the JWT and the session; (status, headers, JSON)."""
        trace_id = secrets.token_hex(16)
        headers = {
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            "X-POSTHOG-SESSION-ID": self.session_id,
            "X-POSTHOG-WINDOW-ID": self.window_id,
            "X-POSTHOG-DISTINCT-ID": self.distinct_id,
            "Content-Type": "application/json",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urlrequest.Request(self.app_url + path, data=data, headers=headers, method=method)
        try:
            with urlrequest.urlopen(req, timeout=30) as resp:
                status, raw, got = resp.status, resp.read(), dict(resp.headers)
        except urlerror.HTTPError as exc:
            status, raw, got = exc.code, exc.read(), dict(exc.headers)
        got.setdefault("X-Request-ID", trace_id)
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return status, got, payload

    def action(
        self,
        event: str,
        props: dict[str, Any],
        method: str,
        path: str,
        body: Any = None,
        after: bool = False,
    ) -> str:
        """A user action: a frontend event (before the call, or ``after`` it) and its call."""
        at = datetime.now(timezone.utc)
        status, headers, payload = self.call(method, path, body)
        rid = headers.get("X-Request-ID") or headers.get("x-request-id") or ""
        if path == "/api/auth/login" and isinstance(payload, dict):
            self.token = payload.get("token")
            old, self.distinct_id = self.distinct_id, str(payload.get("user_id") or DEMO_USER)
            self.capture("$identify", {"$anon_distinct_id": old})
        else:
            self.capture(event, {**props, "request_id": rid}, None if after else at)
        time.sleep(PAUSE_S)  # a person, not a script: events of one step stay together
        return rid


def play_journey(browser: Browser) -> dict[str, str]:
    """login -> signup -> Start Chat -> a slow send -> a failing call; request ids by step."""
    steps: dict[str, str] = {}
    browser.capture("$pageview", {"$pathname": "/login"})
    steps["login"] = browser.action(
        "login_submitted", {}, "POST", "/api/auth/login", {"user_id": DEMO_USER}
    )
    steps["signup"] = browser.action(
        "signup_started", {}, "POST", "/api/auth/signup", {"user_id": DEMO_USER}
    )
    steps["verify"] = browser.action("signup_completed", {}, "POST", "/api/auth/verify", after=True)
    steps["start_chat"] = browser.action(
        "button_click", {"button_name": "Start Chat"}, "GET", "/api/chat/messages"
    )
    steps["slow_send"] = browser.action(
        "chat_message_sent", {"length": 27}, "POST", "/api/chat/send",
        {"text": "tell me a long story", "slow": True},
    )  # fmt: skip
    steps["failing"] = browser.action("recommendations_requested", {}, "GET", "/api/fail")
    return steps


def apply_dashboards(sink_url: str, personal_api_key: str) -> tuple[bool, str]:
    """Apply the shipped dashboards to the sink with ``otel-posthog dashboards apply`` (the
    real command, in a subprocess, the key in its environment only); (ok, what happened).

    A build without :mod:`otel_posthog.dashboards` skips this step."""
    import importlib.util

    if importlib.util.find_spec("otel_posthog.dashboards") is None:
        return True, "skipped (otel_posthog.dashboards is not installed)"
    argv = [sys.executable, "-m", "otel_posthog.cli", "dashboards", "apply"]
    argv += ["--host", sink_url, "--project-id", "1"]
    env = dict(os.environ, POSTHOG_PERSONAL_API_KEY=personal_api_key)
    env.pop("POSTHOG_PROJECT_ID", None)
    try:
        proc = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return False, "otel-posthog dashboards apply did not finish in 120 s"
    if proc.returncode != 0:
        return False, (proc.stderr or proc.stdout).strip()[-2000:] or f"exit {proc.returncode}"
    return True, "applied"


def wait_for(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def _missing(*modules: str) -> list[str]:
    """Which of ``modules`` cannot be imported here."""
    from importlib.util import find_spec

    missing = []
    for name in modules:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def llm_installed() -> bool:
    """The ``llm`` extra (openai and its instrumentation): the chat send asks a model."""
    return not _missing("openai", "opentelemetry.instrumentation.openai_v2")


def start_app(
    env: dict[str, str],
    port: int,
    log_path: Path,
    argv: list[str] | None = None,
    what: str = "the example app",
) -> subprocess.Popen:
    """The example app under uvicorn (or ``argv``), ready (``/health`` answers) or raising."""
    if argv is None:
        argv = [sys.executable, "-m", "uvicorn", EXAMPLE_APP, "--host", "127.0.0.1"]
        argv += ["--port", str(port)]
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
    )
    log.close()

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with urlrequest.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return True
        except OSError:
            return False

    if not wait_for(ready, 30):
        stop_app(proc)
        raise RuntimeError(f"{what} did not start in 30 s")
    return proc


def _die_with_parent() -> None:
    """Linux: the app gets SIGTERM when the demo dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def stop_app(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def app_env(sink_url: str, api_key: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "POSTHOG_API_KEY": api_key,
            "POSTHOG_HOST": sink_url,
            "OTEL_POSTHOG_FLUSH_INTERVAL_MS": "100",
            "OTEL_POSTHOG_JWT_SECRET": DEMO_SECRET,
            "OTEL_POSTHOG_ENVIRONMENT": "demo",
            "OTEL_SERVICE_NAME": "example-api",
            "EXAMPLE_SLOW_SECONDS": "1.2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_demo(args: argparse.Namespace) -> int:
    missing = _missing(*NEEDS)
    if missing:
        print(
            f"otel-posthog demo: {', '.join(missing)} not installed; "
            "run `pip install 'otel-posthog[demo]'`",
            file=sys.stderr,
        )
        return 2
    from ..sink.commands import api_key_for, default_db
    from ..sink.journey import journey, timeline
    from ..sink.server import LocalSink, free_port

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)  # stop both servers cleanly
    db = args.db or default_db()
    started = datetime.now(timezone.utc).isoformat()
    sink = LocalSink(db, api_key=api_key_for(db, None), port=args.sink_port)
    sink.start()
    log_path = Path(tempfile.gettempdir()) / f"otel-posthog-demo-app-{os.getpid()}.log"
    app_port = args.app_port or free_port()
    print(f"otel-posthog {__version__} demo")
    print(f"  sink:        {sink.url}  (database {db})")
    env = app_env(sink.url, sink.api_key)
    model: subprocess.Popen | None = None
    if llm_installed():
        model_port = free_port()
        model_log = log_path.with_name(log_path.stem + "-model.log")
        argv = [sys.executable, "-m", MODEL_SERVER, "--port", str(model_port)]
        try:
            model = start_app(env, model_port, model_log, argv, "the model server")
        except RuntimeError as exc:
            sink.stop()
            print(f"otel-posthog demo: {exc}; its log:\n{_tail(model_log)}", file=sys.stderr)
            return 1
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{model_port}/v1"
        print(f"  model:       {env['OPENAI_BASE_URL']}  (local, OpenAI-compatible)")
    try:
        proc = start_app(env, app_port, log_path)
    except RuntimeError as exc:
        sink.stop()
        if model is not None:
            stop_app(model)
        print(f"otel-posthog demo: {exc}; its log:\n{_tail(log_path)}", file=sys.stderr)
        return 1
    print(f"  example app: http://127.0.0.1:{app_port}  (log {log_path})")
    try:
        browser = Browser(f"http://127.0.0.1:{app_port}", sink.url, sink.api_key)
        print(f"Playing {DEMO_USER}'s journey (session {browser.session_id}) ...", flush=True)
        steps = play_journey(browser)
        session = browser.session_id

        expected = set(BACKEND_EVENTS) | ({"$ai_generation"} if model is not None else set())

        def arrived() -> bool:
            found = {e.event for e in sink.events(session_id=session, since=started)}
            mine = sink.events("api_request", session_id=session, since=started)
            return expected <= found and len(mine) >= len(steps)

        complete = wait_for(arrived, 20)
        time.sleep(0.5)  # stragglers: background-task captures flushed after the response
        events = journey(sink.store, user=DEMO_USER, since=started)
        print(f"\n== Journey of {DEMO_USER} (otel-posthog journey --user {DEMO_USER})")
        print("\n".join(timeline(events)))
        rid = steps["start_chat"]
        correlated = journey(sink.store, request=rid)
        print(f"\n== 'Start Chat' request (otel-posthog journey --request {rid})")
        print("\n".join(timeline(correlated, show_person=True)))
        slow_rid = steps["slow_send"]
        both = journey(sink.store, request=slow_rid) + journey(sink.store, request=steps["failing"])
        print("\n== The slow send and the failing call (otel-posthog slow / errors)")
        print("\n".join(timeline(both, show_person=True)))
        ok = complete and _check(events, correlated, slow_rid, steps["failing"])
        if model is not None:  # the chat send's model call, joined to its request and person
            ok = ok and ("$ai_generation", slow_rid) in {
                (e.event, e.properties.get("$ai_trace_id")) for e in events
            }
        print(f"\nWeb view: {sink.url}/?user={DEMO_USER}")
        applied, note = apply_dashboards(sink.url, sink.personal_api_key)
        status = note if applied else "apply failed"
        print(f"Dashboards: {sink.url}/dashboards?person={DEMO_USER}  ({status})")
        if not applied:
            print(f"otel-posthog demo: dashboards apply failed:\n{note}", file=sys.stderr)
            ok = False
        if not args.keep:
            print("  (the servers stop now; `otel-posthog demo --keep` leaves them up)")
        print(f"The events stay in {db}: try `otel-posthog journey --user {DEMO_USER} --db {db}`")
        if not ok:
            print("otel-posthog demo: FAILED, expected events did not arrive", file=sys.stderr)
            print(f"example app log:\n{_tail(log_path)}", file=sys.stderr)
            return 1
        llm = ", $ai_generation" if model is not None else ""
        print(
            f"Demo OK: api_request, slow_request{llm} and api_error joined on one user and request."
        )
        if args.keep:
            print("Servers are up; Ctrl-C to stop.", flush=True)
            try:
                while proc.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        stop_app(proc)
        if model is not None:
            stop_app(model)
        sink.stop()


def _check(user_events: list[Any], correlated: list[Any], slow_rid: str, fail_rid: str) -> bool:
    names = {e.event for e in user_events}
    by_request = {(e.event, e.properties.get("request_id")) for e in user_events}
    sources = {e.properties.get("source") for e in correlated}
    return (
        set(BACKEND_EVENTS) <= names
        and ("slow_request", slow_rid) in by_request
        and ("api_error", fail_rid) in by_request
        and {"frontend", "backend"} <= sources
    )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
