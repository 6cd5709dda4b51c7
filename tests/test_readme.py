"""The README's quickstart, run as a new user would (ports made free, database temporary)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from otel_posthog.sink.server import free_port

ROOT = Path(__file__).resolve().parent.parent


def quickstart_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("To see it work without a PostHog account") :]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_quickstart_shows_the_three_events(tmp_path):
    script = quickstart_script()
    script = script.replace("8765", str(free_port())).replace("8000", str(free_port()))
    env = dict(os.environ, OTEL_POSTHOG_SINK_DB=str(tmp_path / "events.db"))
    wrapped = "set -u\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script
    out = subprocess.run(
        ["bash", "-c", wrapped], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    journey = [line for line in out.stdout.splitlines() if " - " in line]
    events = {line.split(" - ", 1)[1].split(" ", 1)[0] for line in journey}
    assert {"api_request", "slow_request", "api_error"} <= events, out.stdout
    send = [line for line in journey if "/api/chat/send" in line and "api_request" in line]
    assert send and "request_id: " in send[0], out.stdout


def test_readme_offers_the_demo_from_pypi_and_from_a_clone():
    """The README on PyPI: ``pip install 'otel-posthog[demo]'`` then ``otel-posthog demo``
    (tests/test_wheel_demo.py runs exactly that), and ``make demo`` from a clone."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Try it in one command") :].split("\n## ", 1)[0]
    scripts = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert "pip install 'otel-posthog[demo]' && otel-posthog demo\n" in scripts
    assert "make demo\n" in scripts
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "\ndemo = [" in pyproject
