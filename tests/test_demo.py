"""``make demo`` and ``otel-posthog demo`` run as a new user would: subprocesses, real servers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.helpers import ROOT, VENV_BIN

STAMP = ".venv/.installed"


def demo_env(db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OTEL_PYTHON_DISTRO", None)
    env["OTEL_POSTHOG_SINK_DB"] = str(db)  # keep the shared checkout's .otel-posthog/ alone
    return env


def make_demo_argv() -> list[str]:
    """``make demo``; when the install stamp is stale, skip reinstalling (no network here)."""
    fresh = subprocess.run(["make", "-q", STAMP], cwd=ROOT, capture_output=True).returncode == 0
    return ["make", "demo"] if fresh else ["make", "-o", STAMP, "demo"]


def check_output(out: str) -> None:
    journey = out.split("== Journey of user_12345", 1)[1].split("\n== ", 1)[0]
    lines = [line for line in journey.splitlines() if " - " in line]
    names = [line.split(" - ", 1)[1].split(" ", 1)[0] for line in lines]
    for name in ("api_request", "slow_request", "api_error", "button_click", "$identify"):
        assert name in names, journey
    assert names[0] == "$pageview"  # before login, merged in by $identify
    assert names.index("button_click") < names.index("slow_request") < names.index("api_error")
    slow = next(line for line in lines if " slow_request " in line)
    rid = re.search(r"request_id: (\w+)", slow).group(1)  # type: ignore[union-attr]
    assert any(" api_request " in line and rid in line for line in lines)
    # the slow send's model call, on the same person and request (the llm extra is installed)
    generation = next(line for line in lines if " $ai_generation " in line)
    assert f"request_id: {rid}" in generation and "model: mock-chat" in generation, generation
    assert "output_tokens: " in generation and "latency_s: " in generation

    start_chat = out.split("== 'Start Chat' request", 1)[1].split("\n== ", 1)[0]
    rid = re.search(r"--request (\w+)", start_chat).group(1)  # type: ignore[union-attr]
    assert f"button_click (request_id: {rid}, button_name: Start Chat" in start_chat
    assert (
        f"api_request (request_id: {rid}, endpoint: /api/chat/messages, status: 200" in start_chat
    )
    assert re.search(r"Web view: http://127\.0\.0\.1:\d+/\?user=user_12345", out)
    assert re.search(r"Dashboards: http://127\.0\.0\.1:\d+/dashboards\?person=user_12345", out)
    assert "Demo OK" in out


def test_make_demo(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    proc = subprocess.run(
        make_demo_argv(), cwd=ROOT, env=demo_env(db), capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_output(proc.stdout)
    # the events stay: the CLI reads them after the demo
    after = subprocess.run(
        [str(VENV_BIN / "otel-posthog"), "errors", "--user", "user_12345", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "api_error" in after.stdout and "RuntimeError" in after.stdout


@contextlib.contextmanager
def kept_demo(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[tuple[str, str, int]]:
    """``otel-posthog demo --keep`` up, its output checked; (output, sink URL, app port).
    On exit: SIGTERM, exit code 0, and both ports closed."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Servers are up"):
            break
    out = "".join(lines)
    ports: list[int] = []
    try:
        assert "Servers are up" in out, out + (
            proc.stderr.read() if proc.poll() is not None else ""
        )
        check_output(out)
        sink_url = re.search(r"Web view: (http://[\d.:]+)/", out).group(1)  # type: ignore[union-attr]
        app_port = int(re.search(r"example app: http://127\.0\.0\.1:(\d+)", out).group(1))  # type: ignore[union-attr]
        ports = [app_port, int(sink_url.rsplit(":", 1)[1])]
        yield out, sink_url, app_port
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


def check_servers(sink_url: str, app_port: int) -> None:
    """The sink's web view and API hold the journey; the app answers."""
    assert requests.get(sink_url + "/", timeout=5).status_code == 200
    assert requests.get(sink_url + "/dashboards", timeout=5).status_code == 200
    events = requests.get(sink_url + "/_sink/events?user=user_12345", timeout=5).json()
    assert {"api_request", "slow_request", "api_error"} <= {e["event"] for e in events["events"]}
    assert requests.get(f"http://127.0.0.1:{app_port}/health", timeout=5).ok


def test_demo_keep_serves_the_web_view_until_stopped(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    argv = [str(VENV_BIN / "otel-posthog"), "demo", "--keep", "--db", str(db)]
    with kept_demo(argv, tmp_path, demo_env(db)) as (_, sink_url, app_port):
        check_servers(sink_url, app_port)


def test_demo_without_the_demo_extra_names_it_in_one_line(tmp_path: Path) -> None:
    """Without FastAPI (a plain ``pip install otel-posthog``): one clear line, exit 2."""
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None  # as if not installed\n"
        "from otel_posthog.cli import main\n"
        f"sys.exit(main(['demo', '--db', {str(tmp_path / 'events.db')!r}]))\n"
    )
    proc = subprocess.run(
        [str(VENV_BIN / "python"), "-c", code],
        cwd=tmp_path,
        env=demo_env(tmp_path / "events.db"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        "otel-posthog demo: fastapi not installed; run `pip install 'otel-posthog[demo]'`"
    ]
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []
