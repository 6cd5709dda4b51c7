"""The receiving end, in its own process: the local PostHog sink and an OTLP/HTTP recorder.

Run as ``python -m benchmarks.servers [--delay S]``; prints one JSON line with their
addresses, then serves until its standard input closes. Kept out of the measured process
so its CPU (and, under callgrind, its instructions) never count against a scenario.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otel_posthog.sink.server import LocalSink, ThreadedServer


def recorder_app() -> Starlette:
    """Accepts OTLP/HTTP trace exports and counts them (an empty success answer)."""
    counts = {"requests": 0, "bytes": 0}

    async def traces(request: Request) -> Response:
        body = await request.body()
        counts["requests"] += 1
        counts["bytes"] += len(body)
        return Response(b"", media_type="application/x-protobuf")

    async def stats(request: Request) -> Response:
        return JSONResponse(counts)

    return Starlette(routes=[Route("/v1/traces", traces, methods=["POST"]), Route("/stats", stats)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0, help="sink answers after S seconds")
    args = parser.parse_args(argv)
    sink = LocalSink(api_key="phc_bench")
    sink.faults.delay_s = args.delay
    sink.start()
    recorder = ThreadedServer(recorder_app()).start()
    # a stalled sink's client gives up (or its process ends) mid-request: expected here
    # (after start: uvicorn configures its loggers when it starts)
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    info: dict[str, Any] = {"sink": sink.url, "api_key": sink.api_key, "recorder": recorder.url}
    print(json.dumps(info), flush=True)
    sys.stdin.read()  # until the suite closes our stdin (or exits)
    recorder.stop()
    sink.stop()


if __name__ == "__main__":
    main()
