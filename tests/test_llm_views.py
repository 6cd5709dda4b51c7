"""The sink's journey CLI and web view show model, tokens and latency of ``$ai_*`` events."""

from __future__ import annotations

import subprocess
import uuid
from datetime import datetime, timezone

import pytest
import requests
from playwright import sync_api

from otel_posthog.sink.server import LocalSink
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, VENV_BIN

RID = "4bf92f3577b34da6a3ce929d0e0e4736"
GENERATION = {
    "uuid": str(uuid.uuid4()),
    "event": "$ai_generation",
    "distinct_id": "user_12345",
    "timestamp": datetime.now(timezone.utc).isoformat(),
    "properties": {
        "request_id": RID,
        "$ai_trace_id": RID,
        "$ai_span_name": "chat mock-chat",
        "$ai_model": "mock-chat-2026-01-01",
        "$ai_input_tokens": 12,
        "$ai_output_tokens": 7,
        "$ai_latency": 1.25,
        "$ai_http_status": 200,
        "$ai_is_error": False,
        "endpoint": "/api/chat/send",
        "source": "backend",
    },
}


@pytest.fixture
def ai_sink(tmp_path):
    server = LocalSink(str(tmp_path / "events.db")).start()
    body = {"api_key": server.api_key, "batch": [GENERATION]}
    assert requests.post(server.url + "/batch/", json=body, timeout=5).ok
    yield server, tmp_path / "events.db"
    server.stop()


def test_journey_cli_shows_model_tokens_and_latency(ai_sink):
    _, db = ai_sink
    out = subprocess.run(
        [str(VENV_BIN / "otel-posthog"), "journey", "--request", RID, "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if "$ai_generation" in line)
    for part in (
        f"request_id: {RID}",
        "model: mock-chat-2026-01-01",
        "input_tokens: 12",
        "output_tokens: 7",
        "latency_s: 1.25",
        "http_status: 200",
    ):
        assert part in line, line


@pytest.mark.browser
def test_web_view_shows_model_tokens_and_latency(ai_sink):
    server, _ = ai_sink
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/?request={RID}")
            page.wait_for_selector('#timeline tbody tr[data-event="$ai_generation"]')
            cells = page.eval_on_selector(
                '#timeline tbody tr[data-event="$ai_generation"]',
                "r => Array.from(r.cells).map(c => c.textContent)",
            )
        finally:
            browser.close()
    assert cells[6] == "1250"  # the duration column: the latency in ms
    details = cells[-1]
    for part in ("model: mock-chat-2026-01-01", "input_tokens: 12", "output_tokens: 7"):
        assert part in details, details
    assert "latency_s: 1.25" in details
