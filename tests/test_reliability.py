"""Fault injection against real parts: the real SDK, the real posthog request layer, the
local sink stopped (connections refused), answering 500/503/429 with ``Retry-After``,
stalling, flapping; real uvicorn and gunicorn processes stopped with SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
import requests

import otel_posthog
from otel_posthog.core.settings import resolve_settings
from otel_posthog.counters import STATS, register_metrics
from otel_posthog.delivery import spool as spool_module
from otel_posthog.delivery.sender import EventSender
from otel_posthog.delivery.spool import Spool

from .helpers import ROOT, VENV_BIN, AppProcess, bridge_env, listening_socket
from .reliability_fixtures import (
    InsideTransaction,
    Outage,
    SpanDriver,
    make_events,
    stats_delta,
    wait_child,
)


def _record_calls(sink) -> list[float]:
    """Times at which the sink was asked to capture (its fault hook runs on each)."""
    calls: list[float] = []
    take = sink.faults.take

    def recording_take():
        calls.append(time.monotonic())
        return take()

    sink.faults.take = recording_take
    return calls


@pytest.fixture
def outage(tmp_path):
    o = Outage(str(tmp_path / "sink.db"))
    yield o
    o.stop()


# -- outages ------------------------------------------------------------------------------
@pytest.mark.slow
def test_10k_requests_through_a_30s_outage_arrive_exactly_once(outage, tmp_path):
    """PostHog refuses connections for 30 s while 10,000 requests end: all land, once each."""
    before = STATS.snapshot(gauges=False)
    driver = SpanDriver(outage.url, outage.api_key, spool_dir=str(tmp_path / "spool"))
    try:
        driver.requests(500)  # PostHog up
        assert outage.wait_for_uuids(driver.expected, 10) >= driver.expected
        outage.down()
        down_at = time.monotonic()
        for _ in range(20):  # 10,000 requests spread over the outage
            driver.requests(500)
            time.sleep(max(0.0, down_at + 1.2 * (_ + 1) - time.monotonic()))
        assert len(driver.expected) == 10_500
        spooled = stats_delta(before)["spooled"]
        time.sleep(max(0.0, down_at + 30 - time.monotonic()))
        outage.up()
        up_at = time.monotonic()
        got = outage.wait_for_uuids(driver.expected, 60)
        drained_s = time.monotonic() - up_at
    finally:
        driver.shutdown()
    delta = stats_delta(before)
    assert got == driver.expected  # every event, nothing else
    assert outage.received == len(driver.expected)  # none posted twice
    assert delta["dropped"] == 0 and spooled >= 10_000
    print(
        f"\n10k outage: spooled {spooled}, delivered all {len(got)} {drained_s:.1f}s after recovery"
    )


def test_500s_are_retried_in_memory_without_a_spool(sink):
    sink.faults.status, sink.faults.remaining = 500, 2
    before = STATS.snapshot(gauges=False)
    driver = SpanDriver(sink.url, sink.api_key)
    try:
        driver.requests(20)
        got = sink.wait_for(lambda evs: len(evs) >= 20, 15)
    finally:
        driver.shutdown()
    assert {e.uuid for e in got} == driver.expected
    assert stats_delta(before)["retried"] >= 20


@pytest.mark.parametrize("status", [503, 429])
@pytest.mark.parametrize("spool", [False, True])
def test_retry_after_is_honoured(sink, tmp_path, status, spool):
    calls = _record_calls(sink)
    sink.faults.status, sink.faults.retry_after, sink.faults.remaining = status, "2", 1
    settings = {"spool_dir": str(tmp_path)} if spool else {}
    driver = SpanDriver(sink.url, sink.api_key, **settings)
    try:
        driver.requests(10)
        got = sink.wait_for(lambda evs: len(evs) >= 10, 15)
    finally:
        driver.shutdown()
    assert {e.uuid for e in got} == driver.expected
    assert len(calls) >= 2 and calls[1] - calls[0] >= 2.0  # nothing sent before Retry-After


def test_flapping_posthog_loses_nothing(sink, tmp_path):
    """A partial outage: 503 on and off every 0.3 s while 3,000 requests end."""
    stop = threading.Event()

    def flap():
        while not stop.is_set():
            sink.faults.status = 503 if sink.faults.status is None else None
            stop.wait(0.3)
        sink.faults.clear()

    flapper = threading.Thread(target=flap)
    flapper.start()
    driver = SpanDriver(sink.url, sink.api_key, spool_dir=str(tmp_path), batch_size=100)
    try:
        for _ in range(30):
            driver.requests(100)
            time.sleep(0.05)
        stop.set()
        flapper.join()
        got = sink.wait_for(lambda evs: {e.uuid for e in evs} >= driver.expected, 30)
    finally:
        stop.set()
        driver.shutdown()
    assert {e.uuid for e in got} == driver.expected


def test_stalled_posthog_events_arrive_once_it_answers_again(sink, tmp_path):
    """PostHog answers after 5 s (past our 1 s timeout): events go to the spool, then land."""
    sink.faults.delay_s = 5.0
    driver = SpanDriver(sink.url, sink.api_key, spool_dir=str(tmp_path), request_timeout_ms=1000)
    try:
        started = time.monotonic()
        driver.requests(300)
        request_path_s = time.monotonic() - started
        time.sleep(2)
        sink.faults.clear()
        got = sink.wait_for(lambda evs: {e.uuid for e in evs} >= driver.expected, 30)
    finally:
        driver.shutdown()
    assert {e.uuid for e in got} == driver.expected  # a timed-out post that landed: deduplicated
    assert request_path_s < 3  # ending 300 spans never waited on the stalled PostHog


# -- shutdown -------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", ["refused", "stalled"])
def test_shutdown_is_bounded_and_leftovers_are_spooled(outage, tmp_path, failure):
    spool_dir = str(tmp_path / "spool")
    if failure == "refused":
        outage.down()
    else:
        outage.sink.faults.delay_s = 5.0
    driver = SpanDriver(
        outage.url,
        outage.api_key,
        spool_dir=spool_dir,
        shutdown_timeout_ms=1000,
        request_timeout_ms=2000,
        batch_size=100,
    )
    driver.requests(2000)
    started = time.monotonic()
    driver.shutdown()
    took = time.monotonic() - started
    assert took < 2.5, took  # OTEL_POSTHOG_SHUTDOWN_TIMEOUT_MS=1000 (+ the join grace)
    assert Spool(path=spool_dir).depth() >= 2000 - 100 * (failure == "stalled")
    if failure == "refused":
        outage.up()
    else:
        outage.sink.faults.clear()
    restarted = SpanDriver(outage.url, outage.api_key, spool_dir=spool_dir)  # drains at start
    try:
        got = outage.wait_for_uuids(driver.expected, 30)
    finally:
        restarted.shutdown()
    assert got == driver.expected
    print(f"\nshutdown with PostHog {failure}: {took * 1000:.0f} ms for 2000 queued events")


def test_shutdown_without_a_spool_is_bounded_and_counts_the_loss(outage):
    outage.down()
    before = STATS.snapshot(gauges=False)
    driver = SpanDriver(outage.url, outage.api_key, shutdown_timeout_ms=500)
    driver.requests(300)
    started = time.monotonic()
    driver.shutdown()
    assert time.monotonic() - started < 2.0
    delta = stats_delta(before)
    assert delta["dropped"] == 300 and delta["sent"] == 0


def _app_env(outage: Outage, spool_dir: str) -> dict[str, str]:
    class _Sink:  # bridge_env wants a sink; the outage's sink may be down right now
        api_key, url = outage.api_key, outage.url

    return bridge_env(
        _Sink, OTEL_POSTHOG_SPOOL_DIR=spool_dir, OTEL_POSTHOG_SHUTDOWN_TIMEOUT_MS="2000"
    )


def test_real_http_outage_then_back_delivers_every_event_once(outage, tmp_path):
    """Real uvicorn, real requests: PostHog refuses connections, then comes back."""
    env = _app_env(outage, str(tmp_path / "spool"))
    with AppProcess(env) as app:
        outage.down()
        session = requests.Session()
        request_ids = [str(uuid.uuid4()) for _ in range(300)]
        for rid in request_ids:
            r = session.get(app.url + "/api/popular/movies", headers={"X-Request-ID": rid})
            assert r.status_code == 200
        time.sleep(1)
        outage.up()
        got = outage.sink.wait_for(
            lambda evs: {e.properties.get("request_id") for e in evs} >= set(request_ids), 40
        )
    api_requests = [e for e in got if e.event == "api_request"]
    assert sorted(e.properties["request_id"] for e in api_requests) == sorted(request_ids)
    assert outage.received == len(got)  # each event posted once


@pytest.mark.slow
def test_sigterm_during_an_outage_then_restart_delivers_every_event(outage, tmp_path):
    """Real uvicorn: PostHog down, 300 requests, SIGTERM, PostHog back, app restarted."""
    env = _app_env(outage, str(tmp_path / "spool"))
    outage.down()
    app = AppProcess(env).start()
    request_ids = []
    try:
        for _ in range(300):
            rid = str(uuid.uuid4())
            r = requests.get(app.url + "/api/popular/movies", headers={"X-Request-ID": rid})
            assert r.status_code == 200
            request_ids.append(rid)
        started = time.monotonic()
        app.signal(signal.SIGTERM)
        app.wait(20)
        stopped_s = time.monotonic() - started
    finally:
        app.stop()
    assert stopped_s < 10, app.output()
    outage.up()
    with AppProcess(env):  # its sender re-sends the spool at start, before any traffic
        got = outage.sink.wait_for(
            lambda evs: {e.properties.get("request_id") for e in evs} >= set(request_ids), 20
        )
    api_requests = [e for e in got if e.event == "api_request"]
    assert sorted(e.properties["request_id"] for e in api_requests) == sorted(request_ids)
    print(f"\nSIGTERM during outage: process stopped in {stopped_s:.2f}s, all 300 delivered")


# -- fork safety -------------------------------------------------------------------------------
def test_sender_reinitialises_in_a_forked_child(sink, tmp_path):
    """The parent's worker thread is running at fork; the child gets its own and delivers."""
    settings = resolve_settings({}, api_key=sink.api_key, host=sink.url, flush_interval_ms=50)
    sender = EventSender(settings, list)
    parent_events, child_events = make_events(5, "parent"), make_events(5, "child")
    sender.submit("events", parent_events)
    assert sender.flush(5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = sender.submit("events", child_events) and sender.flush(5)
        os._exit(0 if ok and sender._thread is not None and sender._thread.is_alive() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    got = sink.wait_for(lambda evs: len(evs) >= 10, 10)
    assert {e.uuid for e in got} == {e["uuid"] for e in parent_events + child_events}
    sender.shutdown(1)


@pytest.mark.parametrize("fork_wait", ["waits", "outlasted"])
def test_a_child_forked_while_the_senders_thread_is_inside_a_spool_transaction_delivers(
    sink, tmp_path, monkeypatch, fork_wait
):
    """gunicorn --preload with a spool, made exact: the master's sender thread is inside a
    spool transaction (its first re-send of the spool) at the fork. The fork waits for it
    and the child's own sender delivers at once; it used to wait on SQLite locks only the
    parent's thread held, so a worker delivered nothing. When the transaction outlasts the
    fork's wait, the child leaves the spool alone and delivers from memory."""
    if fork_wait == "outlasted":
        monkeypatch.setattr(spool_module, "_FORK_WAIT_S", 0.2)
    settings = resolve_settings(
        {},
        api_key=sink.api_key,
        host=sink.url,
        flush_interval_ms=50,
        spool_dir=str(tmp_path / "spool"),
    )
    spool = Spool(settings)
    inside = InsideTransaction(spool)
    sender = EventSender(settings, list, spool=spool)  # its thread claims from the spool
    assert inside.entered.wait(10)
    child_events = make_events(5, "child")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            sent = STATS.snapshot(gauges=False)["sent"]
            ok = sender.submit("events", child_events) and sender.flush(10)
            deadline = time.monotonic() + 10  # posted by this child, not left in the spool
            while ok and STATS.snapshot(gauges=False)["sent"] < sent + 5:  # type: ignore[operator]
                if time.monotonic() > deadline:
                    ok = False
                time.sleep(0.05)
            os._exit(0 if ok else 1)
        finally:
            os._exit(2)
    inside.release()
    try:
        assert wait_child(pid, 20) == 0, "the child's sender hung (None) or did not deliver"
        got = sink.wait_for(lambda evs: len(evs) >= 5, 10)
        assert {e.uuid for e in got} == {e["uuid"] for e in child_events}
    finally:
        sender.shutdown(2)


@pytest.mark.slow
@pytest.mark.parametrize("spool", [False, True])
def test_gunicorn_preload_workers_deliver(sink, tmp_path, spool):
    """gunicorn --preload: the bridge is configured in the master, then 2 workers fork.

    With a spool the sender's thread already runs in the master (it drains the spool at
    start), so the fork happens with a live thread: each worker must start its own.
    """
    extra = {"OTEL_POSTHOG_SPOOL_DIR": str(tmp_path / "spool")} if spool else {}
    listener = listening_socket()  # bound here and handed over: no port race
    argv = [
        str(VENV_BIN / "gunicorn"),
        "--preload",
        "-w",
        "2",
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-b",
        f"fd://{listener.fileno()}",
        "--graceful-timeout",
        "10",
        "otel_posthog.demo.fastapi_app.app:app",
    ]
    request_ids = [str(uuid.uuid4()) for _ in range(200)]
    app = AppProcess(
        bridge_env(sink, **extra),
        argv=argv,
        port=listener.getsockname()[1],
        pass_fds=[listener.fileno()],
    )
    try:
        app.start(60)
    finally:
        listener.close()  # gunicorn holds its own copy
    try:
        session = requests.Session()
        for rid in request_ids:
            r = session.get(app.url + "/api/popular/movies", headers={"X-Request-ID": rid})
            assert r.status_code == 200
            requests.get(app.url + "/health")  # new connections: both workers serve
        got = sink.wait_for(
            lambda evs: {e.properties.get("request_id") for e in evs} >= set(request_ids), 20
        )
        deadline = time.monotonic() + 30  # both workers booted (logged by each at its start)
        while len(set(re.findall(r"Booting worker with pid: (\d+)", app.output()))) < 2:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        output = app.output()
    finally:
        app.stop()
    pids = set(re.findall(r"Booting worker with pid: (\d+)", output))
    assert len(pids) >= 2, output
    api_requests = [e for e in got if e.event == "api_request"]
    assert sorted(e.properties["request_id"] for e in api_requests) == sorted(request_ids)


# -- memory ---------------------------------------------------------------------------------------
_RSS_SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    from otel_posthog.sink.server import free_port
    from tests.reliability_fixtures import SpanDriver, rss_mb
    from otel_posthog.counters import STATS
    spool = sys.argv[1] == "spool"
    settings = {"spool_dir": tempfile.mkdtemp()} if spool else {}
    driver = SpanDriver(f"http://127.0.0.1:{free_port()}", "phc_x", request_timeout_ms=500,
                        **settings)
    samples = {}
    for k in range(1, 101):
        driver.requests(1000)
        driver.expected.clear()
        if k in (10, 25, 50, 75, 100):
            samples[k * 1000] = round(rss_mb(), 1)
    snap = STATS.snapshot()
    driver.shutdown()
    print(json.dumps({"rss_mb": samples, "stats": {k: snap[k] for k in
          ("queued", "spooled", "dropped", "spool_dropped", "queue_depth", "spool_depth")}}))
    """
)


@pytest.mark.slow
def test_rss_stays_bounded_over_100k_requests_with_posthog_down():
    """Spool on (the documented setup): memory holds at most the queue, the rest is on disk."""
    mode = "spool"  # run the script with "no-spool" for the other figure (docs/reliability.md)
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rss = {int(k): v for k, v in result["rss_mb"].items()}
    print(f"\nRSS over 100k requests, PostHog down, {mode}: {rss} MB; {result['stats']}")
    assert rss[100_000] - rss[10_000] < 40, rss  # bounded: the queue holds at most 10,000


# -- health -----------------------------------------------------------------------------------
def test_stats_count_and_one_line_a_minute_reports_drops(outage, caplog):
    outage.down()
    before = STATS.snapshot(gauges=False)
    driver = SpanDriver(outage.url, outage.api_key, max_queue_size=5, max_retries=0)
    caplog.set_level(logging.WARNING, logger="otel_posthog")
    STATS._last_report = float("-inf")
    try:
        for _ in range(5):
            driver.requests(50)
            time.sleep(0.1)
    finally:
        driver.shutdown()
    lines = [
        r.getMessage() for r in caplog.records if "dropped since the last report" in r.getMessage()
    ]
    assert len(lines) == 1, lines  # many drops, one line (the next one a minute later)
    stats = otel_posthog.stats()
    for key in ("queued", "sent", "retried", "spooled", "dropped", "errors", "queue_depth"):
        assert key in stats
    assert stats_delta(before)["dropped"] == 250


def test_counters_as_otel_metrics(sink):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    register_metrics(MeterProvider(metric_readers=[reader]))
    driver = SpanDriver(sink.url, sink.api_key)
    driver.requests(3)
    driver.processor.force_flush()
    driver.shutdown()
    data = reader.get_metrics_data()
    names = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert {"otel_posthog.events.sent", "otel_posthog.events.dropped"} <= set(names)
    sent = names["otel_posthog.events.sent"].data.data_points[0].value
    assert sent >= 3
