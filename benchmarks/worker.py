"""One measurement in a fresh process; prints one JSON line. Started by :mod:`benchmarks.suite`.

Modes:

* ``inproc``: ``--warmup`` requests, a flush, then ``--requests`` ASGI calls and a final
  flush (the export threads' work included), timed with process CPU time (all threads).
  The same mode runs under ``valgrind --tool=callgrind`` for instruction counts.
* ``serve``: the scenario's app under uvicorn on ``--port`` until killed.
* ``exporter``: exporter throughput alone: ``--events`` pre-built request spans through
  the otel-posthog pipeline (spans -> events -> gzip ``/batch/`` posts into the sink), or
  the same events through ``posthog.capture`` (``--path capture``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import time
from typing import Any

from .scenarios import Targets, build


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inproc(args: argparse.Namespace, targets: Targets) -> dict[str, Any]:
    from .driver import run_requests

    scenario = build(args.scenario, targets, size_batching=True)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(run_requests(scenario.app, args.warmup))
    scenario.flush()
    exported_before = scenario.exported[0]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    loop.run_until_complete(run_requests(scenario.app, args.requests, start=args.warmup))
    scenario.flush()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    out = {
        "scenario": args.scenario,
        "requests": args.requests,
        "cpu_us": (cpu1 - cpu0) / args.requests * 1e6,
        "wall_us": (wall1 - wall0) / args.requests * 1e6,
        "exported": scenario.exported[0] - exported_before,
        "rss_mb": _rss_mb(),
        "stats": _jsonable(scenario.stats()),
    }
    scenario.shutdown()
    loop.close()
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def serve(args: argparse.Namespace, targets: Targets) -> None:
    import uvicorn

    scenario = build(args.scenario, targets, size_batching=False)
    uvicorn.run(
        scenario.app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


# -- exporter throughput ---------------------------------------------------------------
def _real_server_span_attributes() -> tuple[dict[str, Any], Any]:
    """Attributes (and resource) of a real FastAPI server span, from one in-process request."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .driver import run_requests
    from .scenarios import SERVICE, make_app

    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": SERVICE, "deployment.environment.name": "bench"})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    app = make_app()
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["send", "receive"]
    )
    asyncio.run(run_requests(app, 1))
    span = next(s for s in memory.get_finished_spans() if s.kind.name == "SERVER")
    return dict(span.attributes or {}), provider.resource


def _request_spans(count: int) -> list[Any]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    attrs, res = _real_server_span_attributes()
    tracer = TracerProvider(resource=res).get_tracer("bench")
    spans = []
    for i in range(count):
        span_attrs = dict(attrs)
        span_attrs["http.target"] = f"/api/items/{i}"
        span = tracer.start_span("GET /api/items/{item_id}", kind=trace.SpanKind.SERVER)
        span.set_attributes(span_attrs)
        span.end()
        spans.append(span)
    return spans


def request_states(spans: list[Any]) -> list[Any]:
    """The request state the propagator would have made for each span (posthog-js headers)."""
    from otel_posthog.sdk.request_state import RequestState

    from .driver import DISTINCT_ID, SESSION_ID

    states = []
    for span in spans:
        state = RequestState()
        state.session_id, state.header_distinct_id = SESSION_ID, DISTINCT_ID
        state.span_id, state.trace_id = span.context.span_id, span.context.trace_id
        states.append(state)
    return states


def _freeze_fixtures() -> None:
    """Keep the garbage collector from rescanning the pre-built spans and events: they
    are the benchmark's fixture, and would make every full collection cost as much as
    a heap of tens of thousands of live spans."""
    gc.collect()
    gc.freeze()


def exporter(args: argparse.Namespace, targets: Targets) -> dict[str, Any]:
    from .driver import DISTINCT_ID

    spans = _request_spans(args.events)
    if args.path == "otel-posthog":
        from otel_posthog.core.settings import resolve_settings
        from otel_posthog.counters import STATS
        from otel_posthog.sdk.pipeline import Pipeline

        settings = resolve_settings(
            api_key=targets.api_key,
            host=targets.sink_url,
            max_queue_size=args.events + 10,
        )
        pipeline = Pipeline(settings).acquire()
        states = request_states(spans)
        _freeze_fixtures()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for span, state in zip(spans, states, strict=True):
            pipeline.submit(span, state)
        ok = pipeline.flush(120)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        delivered = int(STATS.snapshot()["sent"])  # type: ignore[arg-type]
        pipeline.release()
    else:
        import posthog

        from otel_posthog.core.mapping import map_span
        from otel_posthog.core.settings import Settings
        from otel_posthog.sdk.sdk_span import view_from_sdk_span

        # the same events, built before the clock starts: only capture() and delivery count
        events = [map_span(view_from_sdk_span(s), Settings())[0] for s in spans]
        client = posthog.Posthog(
            targets.api_key, host=targets.sink_url, max_queue_size=args.events + 10
        )
        sent = [0]

        def on_error(exc: Exception, batch: list[Any]) -> None:
            sent[0] -= len(batch)

        client.on_error = on_error
        _freeze_fixtures()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for e in events:
            client.capture(
                e["event"],
                distinct_id=DISTINCT_ID,
                properties=e["properties"],
                timestamp=e["timestamp"],
                uuid=e["uuid"],
            )
        client.flush()
        cpu1, wall1 = time.process_time(), time.perf_counter()
        ok = True
        delivered = args.events + sent[0]
        client.shutdown()
    cpu, wall = cpu1 - cpu0, wall1 - wall0
    return {
        "path": args.path,
        "events": args.events,
        "delivered": delivered,
        "ok": bool(ok),
        "cpu_s": cpu,
        "wall_s": wall,
        "events_per_cpu_s": args.events / cpu if cpu else 0.0,
        "events_per_s": args.events / wall if wall else 0.0,
        "rss_mb": _rss_mb(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("mode", choices=["inproc", "serve", "exporter"])
    parser.add_argument("--scenario", default="2")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--path", choices=["otel-posthog", "capture"], default="otel-posthog")
    parser.add_argument("--sink", default=os.environ.get("BENCH_SINK", "http://127.0.0.1:9"))
    parser.add_argument("--api-key", default="phc_bench")
    parser.add_argument("--recorder", default="http://127.0.0.1:9")
    args = parser.parse_args(argv)
    targets = Targets(sink_url=args.sink, api_key=args.api_key, recorder_url=args.recorder)
    if args.mode == "serve":
        serve(args, targets)
        return
    result = inproc(args, targets) if args.mode == "inproc" else exporter(args, targets)
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
