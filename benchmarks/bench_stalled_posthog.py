"""Request latency while PostHog is healthy, stalled or down (a benchmark, not a test).

The example app runs under uvicorn in its own process with the bridge on; the local sink
runs here, so this script can stall it (every ``/batch/`` post hangs until the bridge's
timeout) or stop it (connections refused). Each mode gets a fresh app process, a warm-up,
then ``--requests`` sequential requests over one keep-alive connection.

    .venv/bin/python -m benchmarks.bench_stalled_posthog [--requests 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from otel_posthog.sink.server import LocalSink, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PATH = "/api/popular/movies"
MODES = ("healthy", "stalled", "down", "stalled+spool", "down+spool")


def _start_app(sink_url: str, api_key: str, spool_dir: str | None) -> tuple[Any, str]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        POSTHOG_API_KEY=api_key,
        POSTHOG_HOST=sink_url,
        OTEL_POSTHOG_FLUSH_INTERVAL_MS="200",
        OTEL_SERVICE_NAME="bench-api",
        PYTHONUNBUFFERED="1",
    )
    if spool_dir:
        env["OTEL_POSTHOG_SPOOL_DIR"] = spool_dir
    argv = [str(BIN / "uvicorn"), "otel_posthog.demo.fastapi_app.app:app", "--port", str(port)]
    argv += ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/health", timeout=1)
            return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("app did not start")


def _measure(url: str, n: int) -> list[float]:
    session = requests.Session()
    for _ in range(200):  # warm-up
        session.get(url + PATH, timeout=10)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(url + PATH, timeout=10)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200
    return out


def run_mode(mode: str, n: int) -> dict[str, Any]:
    sink = LocalSink().start()
    spool_dir = tempfile.mkdtemp(prefix="bench-spool-") if "spool" in mode else None
    if mode.startswith("stalled"):
        sink.faults.delay_s = 60.0  # every post hangs past the bridge's 10 s timeout
    url_of_sink = sink.url
    if mode.startswith("down"):
        sink.stop()  # nothing listens on the port: connections are refused
    proc, url = _start_app(url_of_sink, sink.api_key, spool_dir)
    try:
        ms = _measure(url, n)
    finally:
        proc.terminate()
        proc.wait(30)
        sink.faults.clear()
        if not mode.startswith("down"):
            sink.stop()
    q = statistics.quantiles(ms, n=100)
    return {
        "mode": mode,
        "requests": n,
        "mean_ms": round(statistics.fmean(ms), 3),
        "p50_ms": round(q[49], 3),
        "p90_ms": round(q[89], 3),
        "p99_ms": round(q[98], 3),
        "max_ms": round(max(ms), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = [run_mode(m, args.requests) for m in args.modes.split(",")]
    print(f"{'mode':<15}{'mean':>9}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}  (ms)")
    for r in results:
        print(
            f"{r['mode']:<15}{r['mean_ms']:>9.2f}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}"
            f"{r['p99_ms']:>9.2f}{r['max_ms']:>9.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
