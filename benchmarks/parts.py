"""Where scenario 4's extra instructions go: ``python -m benchmarks.parts``.

Two views, both under ``valgrind --tool=callgrind`` (deterministic), each at two counts so
start-up cancels:

* **request path**: scenario 4 in process (as ``make bench`` runs it) with parts of the
  bridge switched off in turn; the differences between rows are what each part costs
  per request (``nosubmit`` keeps the request path and drops the export path).
* **export path**: pre-built request spans through the pipeline's span -> events function
  (``map``) and then the ``/batch/`` encoder (``encode``: JSON + gzip), per event; ``none``
  is the fixture alone, subtracted from the others.

Slow (about 15 minutes on 2 cores); not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
from typing import Any

from .suite import PY, ROOT, Servers

# row -> (what is switched off in the worker, what the step from the row above removed)
REQUEST_ROWS = {
    "full": ("", ""),
    "nosubmit": ("nosubmit", "export path: span -> events -> JSON + gzip -> HTTP, per request"),
    "nosubmit,noresp": ("nosubmit,noresp", "response headers (X-Request-ID, traceresponse)"),
    "nosubmit,noprop": (
        "nosubmit,noprop",
        "reading the request headers (PostHogPropagator) and the identity span attributes",
    ),
    "nosubmit,noprop,noproc": (
        "nosubmit,noprop,noproc,noidgen",
        "span processor (request state, redaction check, queue hand-off) + id generator",
    ),
}
EXPORT_PARTS = ("none", "map", "encode")


def _switch_off(parts: set[str]) -> None:
    """Patch the bridge in this process so that ``parts`` do nothing."""
    from opentelemetry.sdk.trace import TracerProvider

    import otel_posthog.api as api
    import otel_posthog.sdk.pipeline as pipeline
    import otel_posthog.sdk.processor as processor
    import otel_posthog.sdk.propagator as propagator

    if "nosubmit" in parts:
        pipeline.Pipeline.submit = lambda self, span, state: None  # type: ignore[method-assign]
    if "noprop" in parts:
        api.install_propagators = lambda: None
    if "noresp" in parts:
        propagator.PostHogResponsePropagator.inject = (  # type: ignore[method-assign]
            lambda self, *a, **k: None
        )
    if "noidgen" in parts:
        api.install_request_id_generator = lambda provider: None
    if "noproc" in parts:
        add = TracerProvider.add_span_processor

        def add_others(self: TracerProvider, p: Any) -> None:
            if not isinstance(p, processor.PostHogSpanProcessor):
                add(self, p)

        TracerProvider.add_span_processor = add_others  # type: ignore[method-assign]


def export_fixture(count: int, part: str) -> None:
    """``count`` request spans through ``part`` of the export path (in this process)."""
    from otel_posthog.core.settings import Settings, resolve_settings
    from otel_posthog.delivery.poster import BatchPoster
    from otel_posthog.sdk.jwt_identity import JwtVerifier
    from otel_posthog.sdk.pipeline import Pipeline, SpanWork

    from .worker import _freeze_fixtures, _request_spans, request_states

    spans = _request_spans(count)
    settings = resolve_settings(api_key="phc_parts", host="http://127.0.0.1:9")
    pipeline = Pipeline(Settings())  # no API key: no sender thread
    pipeline.settings, pipeline.verifier = settings, JwtVerifier(settings)
    states = request_states(spans)
    _freeze_fixtures()
    if part == "none":
        return
    events = []
    for span, state in zip(spans, states, strict=True):
        events.extend(pipeline.map_work(SpanWork(span, state, 0)))
    if part == "encode":
        poster = BatchPoster(settings)
        for i in range(0, len(events), settings.batch_size):
            poster.encode(events[i : i + settings.batch_size])


def _instructions(argv: list[str], env: dict[str, str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q", PY, *argv],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": "0", **env},
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if proc.returncode:
            raise RuntimeError(f"{argv} failed:\n{proc.stderr[-3000:]}")
        with open(out) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind output")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.parts", description=__doc__)
    p.add_argument("--parallel", type=int, default=2, help="valgrind runs at once")
    p.add_argument("--request-counts", default="100,400", help="scenario 4 requests, two counts")
    p.add_argument("--event-counts", default="500,2500", help="export path events, two counts")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # parts off, then benchmarks.worker
    p.add_argument("--export", help=argparse.SUPPRESS)  # part,count: the export fixture
    opts, rest = p.parse_known_args(argv)
    if opts.worker is not None:
        _switch_off(set(filter(None, opts.worker.split(","))))
        from .worker import main as worker_main

        worker_main(rest)
        return
    if opts.export is not None:
        part, count = opts.export.split(",")
        export_fixture(int(count), part)
        return

    lo, hi = (int(n) for n in opts.request_counts.split(","))
    elo, ehi = (int(n) for n in opts.event_counts.split(","))
    servers = Servers.start()
    try:
        jobs: dict[tuple[str, int], Any] = {}
        with concurrent.futures.ThreadPoolExecutor(opts.parallel) as pool:
            for row, (off, _) in REQUEST_ROWS.items():
                for n in (lo, hi):
                    args = ["-m", "benchmarks.parts", f"--worker={off}", "inproc"]
                    args += ["--scenario", "4", "--requests", str(n), "--warmup", "200"]
                    jobs[(row, n)] = pool.submit(_instructions, args + servers.args(), {})
            for part in EXPORT_PARTS:
                for n in (elo, ehi):
                    args = ["-m", "benchmarks.parts", f"--export={part},{n}"]
                    jobs[(part, n)] = pool.submit(_instructions, args, {})
            results = {key: job.result() for key, job in jobs.items()}
    finally:
        servers.stop()
    print("| scenario 4, switched off | instr/req | the step removed | instr/req |")
    print("|---|--:|---|--:|")
    rows = list(REQUEST_ROWS)
    per_req = {r: (results[(r, hi)] - results[(r, lo)]) / (hi - lo) for r in rows}
    for prev, row in zip([None, *rows], rows, strict=False):
        cost = f"{per_req[prev] - per_req[row]:,.0f}" if prev else ""
        print(f"| {row or 'nothing'} | {per_req[row]:,.0f} | {REQUEST_ROWS[row][1]} | {cost} |")
    per_event = {x: (results[(x, ehi)] - results[(x, elo)]) / (ehi - elo) for x in EXPORT_PARTS}
    print("\n| export path, per event | instr |")
    print("|---|--:|")
    print(f"| span -> events (map) | {per_event['map'] - per_event['none']:,.0f} |")
    print(f"| JSON + gzip (encode) | {per_event['encode'] - per_event['map']:,.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
