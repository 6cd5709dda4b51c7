"""The benchmark suite (``make bench``) at tiny counts, so it cannot rot. No timing asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_run_prints_the_table(tmp_path: Path) -> None:
    raw = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--skip", "callgrind", "--json", str(raw)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert "| scenario | CPU µs/req |" in table
    for name, title in SCENARIOS.items():
        assert f"| {name}. {title} |" in table
    assert "| otel-posthog pipeline |" in table and "| posthog.capture() |" in table
    assert "PostHog healthy" in table and "PostHog stalled" in table and "PostHog down" in table
    results = json.loads(raw.read_text())
    rows = results["rows"]
    assert set(rows) == set(SCENARIOS)
    for name, row in rows.items():
        assert row["cpu_us"] and row["cpu_us"][0] > 0, name
        assert row["rps"] and row["rps"] > 0, name
    # every span reached the other exporter, and every exported event reached the sink
    for name in ("2", "3", "4", "5"):
        assert rows[name]["exported"] == rows[name]["requests"], name
    assert results["exporter"]["otel-posthog"]["delivered"] == 300


def test_parts_switch_offs_and_export_fixture_run() -> None:
    """``python -m benchmarks.parts`` (callgrind, slow) is built from these two runs."""
    from benchmarks.suite import Servers

    export = subprocess.run(
        [sys.executable, "-m", "benchmarks.parts", "--export=encode,50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    servers = Servers.start()
    try:
        worker = subprocess.run(
            [sys.executable, "-m", "benchmarks.parts", "--worker=nosubmit,noresp", "inproc"]
            + ["--scenario", "4", "--requests", "20", "--warmup", "5", *servers.args()],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        servers.stop()
    assert worker.returncode == 0, worker.stderr[-3000:]
    result = json.loads(worker.stdout.split("BENCH-RESULT ", 1)[1])
    assert result["requests"] == 20 and result["exported"] == 20  # the other exporter's spans
    assert result["stats"]["queued"] == 0  # the export path was switched off
