"""``make bench``: every scenario in one run, one table with absolute figures and ratios.

Phases (each scenario in a fresh process, the sink and recorder in another):

1. CPU µs per request, in process (ASGI calls, no network), process CPU time of all
   threads including the final flush of every exporter; median of ``--repeat`` runs,
   the scenarios interleaved so drifting machine load hits them alike.
2. Instructions per request under ``valgrind --tool=callgrind`` (deterministic): each
   scenario at two request counts, the difference divided by the difference in count, so
   start-up and the final flush's fixed part cancel; all threads counted.
3. Requests/s and p50/p99 latency under :mod:`benchmarks.loadgen` against uvicorn on
   loopback (bounded in count and time), and the server's peak RSS.
4. Exporter throughput alone: pre-built request spans -> events -> gzip ``/batch/``
   posts into the sink, events per CPU-second of the exporting process, against the
   same events through ``posthog.capture``.
5. PostHog stalled (the sink answers after 5 s) or down (nothing listening): p99 of
   scenario 4 against scenario 2.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .loadgen import LoadResult, load
from .scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass
class Servers:
    proc: subprocess.Popen[str]
    sink: str
    api_key: str
    recorder: str

    @classmethod
    def start(cls, delay_s: float = 0.0) -> Servers:
        proc = subprocess.Popen(
            [PY, "-m", "benchmarks.servers", "--delay", str(delay_s)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        return cls(proc, info["sink"], info["api_key"], info["recorder"])

    def args(self) -> list[str]:
        return ["--sink", self.sink, "--api-key", self.api_key, "--recorder", self.recorder]

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _result(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return dict(json.loads(line[len("BENCH-RESULT ") :]))
    raise RuntimeError(f"worker printed no result:\n{stdout[-2000:]}")


def _worker(args: list[str], timeout_s: float = 900, prefix: list[str] | None = None) -> str:
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(
        [*(prefix or []), PY, "-m", "benchmarks.worker", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


@dataclass
class Row:
    cpu_us: list[float] = field(default_factory=list)
    exported: int | None = None
    requests: int = 0
    instr: float | None = None
    load: LoadResult | None = None
    rss_mb: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)


# -- phases ------------------------------------------------------------------------------
def phase_cpu(rows: dict[str, Row], servers: Servers, opts: argparse.Namespace) -> None:
    for rep in range(opts.repeat):
        for name in rows:
            out = _result(
                _worker(
                    [
                        "inproc",
                        "--scenario",
                        name,
                        "--requests",
                        str(opts.requests),
                        "--warmup",
                        str(opts.warmup),
                        *servers.args(),
                    ]
                )
            )
            row = rows[name]
            row.cpu_us.append(out["cpu_us"])
            row.exported, row.requests = out["exported"], out["requests"]
            row.stats = out.get("stats") or {}
            _progress(f"cpu {rep + 1}/{opts.repeat} scenario {name}: {out['cpu_us']:.1f} µs")


def _callgrind_instructions(name: str, count: int, servers: Servers, warmup: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "callgrind.out"
        _worker(
            [
                "inproc",
                "--scenario",
                name,
                "--requests",
                str(count),
                "--warmup",
                str(warmup),
                *servers.args(),
            ],
            timeout_s=1800,
            prefix=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "-q"],
        )
        for line in out_file.read_text().splitlines():
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind output")


def phase_callgrind(rows: dict[str, Row], servers: Servers, opts: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        _progress("valgrind not found: instruction counts skipped (apt-get install valgrind)")
        return
    low, high = opts.callgrind_requests
    jobs = [(name, n) for name in rows for n in (low, high)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=opts.callgrind_jobs) as pool:
        futures = {
            job: pool.submit(_callgrind_instructions, job[0], job[1], servers, opts.warmup)
            for job in jobs
        }
        counts = {job: f.result() for job, f in futures.items()}
    for name, row in rows.items():
        row.instr = (counts[(name, high)] - counts[(name, low)]) / (high - low)
        _progress(f"callgrind scenario {name}: {row.instr:,.0f} instructions/request")


def _free_port() -> int:
    from otel_posthog.sink.server import free_port

    return free_port()


def _serve_and_load(
    name: str, servers_args: list[str], opts: argparse.Namespace
) -> tuple[LoadResult, float | None]:
    port = _free_port()
    proc = subprocess.Popen(
        [PY, "-m", "benchmarks.worker", "serve", "--scenario", name, "--port", str(port)]
        + servers_args,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        load(url, connections=opts.connections, max_requests=opts.warmup, max_seconds=5)
        result = load(
            url,
            connections=opts.connections,
            max_requests=opts.load_requests,
            max_seconds=opts.load_seconds,
        )
        return result, _peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"server exited early:\n{err[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on {url} did not start")


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def phase_load(rows: dict[str, Row], servers: Servers, opts: argparse.Namespace) -> None:
    for name, row in rows.items():
        row.load, row.rss_mb = _serve_and_load(name, servers.args(), opts)
        _progress(
            f"load scenario {name}: {row.load.rps:,.0f} req/s, "
            f"p99 {row.load.percentile(0.99):.2f} ms"
        )


def phase_exporter(servers: Servers, opts: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out = {}
    for path in ("otel-posthog", "capture"):
        out[path] = _result(
            _worker(["exporter", "--path", path, "--events", str(opts.events), *servers.args()])
        )
        _progress(f"exporter {path}: {out[path]['events_per_cpu_s']:,.0f} events/CPU-s")
    return out


def phase_faults(servers: Servers, opts: argparse.Namespace) -> dict[str, LoadResult]:
    """Scenario 4 with PostHog healthy, stalled and down, next to scenario 2, back to back."""
    stalled = Servers.start(delay_s=5.0)
    try:
        down = ["--sink", f"http://127.0.0.1:{_free_port()}", "--api-key", "phc_bench"]
        results = {
            "2 (baseline)": _serve_and_load("2", servers.args(), opts)[0],
            "4, PostHog healthy": _serve_and_load("4", servers.args(), opts)[0],
            "4, PostHog stalled (5 s replies)": _serve_and_load("4", stalled.args(), opts)[0],
            "4, PostHog down (refused)": _serve_and_load("4", down, opts)[0],
        }
    finally:
        stalled.stop()
    for label, r in results.items():
        _progress(f"faults {label}: p99 {r.percentile(0.99):.2f} ms")
    return results


# -- report --------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(value: float | None, base: float | None) -> str:
    return "n/a" if value is None or not base else f"{value / base:.2f}x"


def render(
    rows: dict[str, Row],
    exporter: dict[str, dict[str, Any]] | None,
    faults: dict[str, LoadResult] | None,
    opts: argparse.Namespace,
) -> str:
    def cpu(name: str) -> float | None:
        r = rows.get(name)
        return statistics.median(r.cpu_us) if r and r.cpu_us else None

    def instr(name: str) -> float | None:
        r = rows.get(name)
        return r.instr if r else None

    def rps(name: str) -> float | None:
        r = rows.get(name)
        return r.load.rps if r and r.load else None

    lines = [
        "| scenario | CPU µs/req | x1 | x2 | instr/req | x1 | x2 | req/s | x2 | p50 ms | p99 ms "
        "| peak RSS MB | spans to no-op exporter |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, row in rows.items():
        ld = row.load
        exported = (
            "n/a"
            if row.exported is None or name in ("1", "6")
            else (f"{row.exported}/{row.requests}")
        )
        lines.append(
            f"| {name}. {SCENARIOS[name]} | {_fmt(cpu(name), '.1f')} | "
            f"{_ratio(cpu(name), cpu('1'))} | {_ratio(cpu(name), cpu('2'))} | "
            f"{_fmt(instr(name))} | {_ratio(instr(name), instr('1'))} | "
            f"{_ratio(instr(name), instr('2'))} | {_fmt(rps(name))} | "
            f"{_ratio(rps(name), rps('2'))} | "
            f"{_fmt(ld.percentile(0.5) if ld else None, '.2f')} | "
            f"{_fmt(ld.percentile(0.99) if ld else None, '.2f')} | "
            f"{_fmt(row.rss_mb, '.1f')} | {exported} |"
        )
    text = "\n".join(lines)
    if exporter:
        ours, theirs = exporter["otel-posthog"], exporter["capture"]
        text += (
            "\n\n| exporter alone (spans -> events -> gzip /batch/ -> sink) | events | "
            "delivered | events/s per core (CPU) | events/s (wall) | x capture |\n"
            "|---|--:|--:|--:|--:|--:|\n"
        )
        for label, r in (("otel-posthog pipeline", ours), ("posthog.capture()", theirs)):
            text += (
                f"| {label} | {r['events']:,} | {r['delivered']:,} | "
                f"{r['events_per_cpu_s']:,.0f} | {r['events_per_s']:,.0f} | "
                f"{_ratio(r['events_per_cpu_s'], theirs['events_per_cpu_s'])} |\n"
            )
    if faults:
        base = faults["2 (baseline)"]
        text += (
            "\n| PostHog fault (load on uvicorn) | req/s | p50 ms | p99 ms | p99 x2 | errors |\n"
        )
        text += "|---|--:|--:|--:|--:|--:|\n"
        for label, fr in faults.items():
            text += (
                f"| {label} | {fr.rps:,.0f} | {fr.percentile(0.5):.2f} | "
                f"{fr.percentile(0.99):.2f} | "
                f"{_ratio(fr.percentile(0.99), base.percentile(0.99))} | {fr.errors} |\n"
            )
    low, high = opts.callgrind_requests
    text += (
        f"\nin process: {opts.requests} requests after {opts.warmup} warm-up, median of "
        f"{opts.repeat}; callgrind: ({high} - {low} requests) difference; load: "
        f"{opts.connections} connections, at most {opts.load_requests} requests / "
        f"{opts.load_seconds:g} s; machine: {machine()}\n"
    )
    return text


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


PHASES = ("cpu", "callgrind", "load", "exporter", "faults")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="e.g. 2,4")
    p.add_argument("--skip", default="", help=f"comma-separated phases to skip: {PHASES}")
    p.add_argument("--requests", type=int, default=3000, help="in-process requests per run")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--callgrind-requests",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=(100, 400),
        help="the two request counts under callgrind, e.g. 100,400",
    )
    p.add_argument("--callgrind-jobs", type=int, default=2)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--load-requests", type=int, default=6000)
    p.add_argument("--load-seconds", type=float, default=10.0)
    p.add_argument("--events", type=int, default=20_000, help="exporter throughput events")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--quick", action="store_true", help="tiny counts (the test suite's smoke run)")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.requests, opts.warmup, opts.repeat = 30, 5, 1
        opts.callgrind_requests = (5, 10)
        opts.load_requests, opts.load_seconds, opts.events = 50, 3.0, 300
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    skip = {s for s in opts.skip.split(",") if s}
    unknown = skip - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {sorted(unknown)}")
    names = [n.strip() for n in opts.scenarios.split(",") if n.strip()]
    rows = {n: Row() for n in sorted(names) if n in SCENARIOS}
    exporter = faults = None
    servers = Servers.start()
    try:
        # instruction counts first (deterministic, slow): the timed phases run last, when
        # a shared machine is most likely to have quietened down
        if "callgrind" not in skip:
            phase_callgrind(rows, servers, opts)
        if "cpu" not in skip:
            phase_cpu(rows, servers, opts)
        if "load" not in skip:
            phase_load(rows, servers, opts)
        if "exporter" not in skip:
            exporter = phase_exporter(servers, opts)
        if "faults" not in skip:
            faults = phase_faults(servers, opts)
    finally:
        servers.stop()
    table = render(rows, exporter, faults, opts)
    print(table)
    if opts.json:
        raw = {
            "rows": {
                n: {
                    "cpu_us": r.cpu_us,
                    "instr": r.instr,
                    "rps": r.load.rps if r.load else None,
                    "p50_ms": r.load.percentile(0.5) if r.load else None,
                    "p99_ms": r.load.percentile(0.99) if r.load else None,
                    "rss_mb": r.rss_mb,
                    "exported": r.exported,
                    "requests": r.requests,
                    "stats": r.stats,
                }
                for n, r in rows.items()
            },
            "exporter": exporter,
            "faults": {k: {"rps": v.rps, "p99_ms": v.percentile(0.99)} for k, v in faults.items()}
            if faults
            else None,
            "machine": machine(),
            "table": table,
        }
        Path(opts.json).write_text(json.dumps(raw, indent=2))
    return 0
