"""The durable spool against real SQLite files, real processes and the real local sink."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from typing import Any

import pytest

from otel_posthog.core.settings import resolve_settings
from otel_posthog.counters import STATS
from otel_posthog.delivery.sender import EventSender
from otel_posthog.delivery.spool import Spool

from .reliability_fixtures import InsideTransaction, make_events, stats_delta, wait_child


def _events_only(item: object) -> list:
    return list(item)  # type: ignore[call-overload]


def test_claims_oldest_first_with_original_uuid_and_timestamp(tmp_path):
    spool = Spool(path=str(tmp_path))
    first, second = make_events(3, "a"), make_events(3, "b")
    spool.write(first)
    spool.write(second)
    claim = spool.claim(4)
    assert claim is not None
    assert claim.events == first + second[:1]  # whole events: uuid, timestamp, properties
    other = Spool(path=str(tmp_path)).claim(10)  # a claimed batch is not handed out twice
    assert other is not None and [e["uuid"] for e in other.events] == [
        e["uuid"] for e in second[1:]
    ]
    spool.release(claim)  # not delivered: back in place, still the oldest
    again = spool.claim(10)
    assert again is not None and again.events == first + second[:1]
    spool.ack(again)
    Spool(path=str(tmp_path)).ack(other)
    assert spool.depth() == 0 and spool.held_bytes() == 0


def test_a_dead_senders_claim_expires_and_is_sent_again(tmp_path):
    spool = Spool(path=str(tmp_path), lease_s=0.3)
    events = make_events(5)
    spool.write(events)
    assert spool.claim(10) is not None  # the claimer "dies": no ack, no release
    assert Spool(path=str(tmp_path)).claim(10) is None
    time.sleep(0.4)
    claim = Spool(path=str(tmp_path)).claim(10)
    assert claim is not None and claim.events == events


def test_at_its_cap_the_oldest_are_dropped_counted_and_disk_stays_bounded(tmp_path):
    cap = 1024 * 1024
    spool = Spool(path=str(tmp_path), max_bytes=cap)
    before = STATS.snapshot(gauges=False)
    batches = [make_events(100, f"b{i}", pad=400) for i in range(60)]  # ~3.2 MB of JSON
    peak_disk = 0
    for batch in batches:
        spool.write(batch)
        peak_disk = max(peak_disk, spool.disk_bytes())
        assert spool.held_bytes() <= cap
    delta = stats_delta(before)
    held = spool.depth()
    assert delta["spool_dropped"] == delta["dropped"] == 6000 - held > 0
    claim = spool.claim(100_000, max_bytes=10 * cap)
    assert claim is not None
    kept = [e["uuid"] for e in claim.events]
    written = [e["uuid"] for b in batches for e in b]
    assert kept == written[-held:]  # exactly the newest survive, in order
    # disk: database (pages, free pages returned) + WAL (checkpointed at ~1 MB)
    assert peak_disk < cap * 2 + 2 * 1024 * 1024, peak_disk
    print(f"\nspool cap {cap} B: held {spool.held_bytes()} B, peak on disk {peak_disk} B")


def test_one_write_larger_than_the_cap_keeps_its_newest_events(tmp_path):
    spool = Spool(path=str(tmp_path), max_bytes=20_000)
    events = make_events(200, pad=200)
    spool.write(events)
    claim = spool.claim(1000)
    assert claim is not None
    assert 0 < len(claim.events) < 200
    assert claim.events == events[-len(claim.events) :]


def test_a_written_event_survives_kill_9(tmp_path):
    code = textwrap.dedent(
        f"""
        import os, signal
        from otel_posthog.delivery.spool import Spool
        from tests.reliability_fixtures import make_events
        events = make_events(50, "killed")
        Spool(path={str(tmp_path)!r}).write(events)
        print(events[0]["uuid"], events[-1]["uuid"], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    first, last = proc.stdout.split()
    claim = Spool(path=str(tmp_path)).claim(100)
    assert claim is not None and len(claim.events) == 50
    assert (claim.events[0]["uuid"], claim.events[-1]["uuid"]) == (first, last)


def test_spooled_events_are_resent_with_their_uuid_and_timestamp(tmp_path, sink):
    spool = Spool(path=str(tmp_path))
    events = make_events(30, "resent", age_s=3600)  # an hour ago: spooled through an outage
    spool.write(events)
    settings = resolve_settings(
        {}, api_key=sink.api_key, host=sink.url, flush_interval_ms=50, spool_dir=str(tmp_path)
    )
    sender = EventSender(settings, _events_only, spool=Spool(settings))  # drains at once
    try:
        got = sink.wait_for(lambda evs: len(evs) >= 30, 10)
        by_uuid = {e.uuid: e for e in got}
        assert set(by_uuid) == {e["uuid"] for e in events}
        for e in events:
            stored = by_uuid[e["uuid"]]
            # the original time (PostHog-style clock-skew correction moves it by the latency)
            skew = datetime.fromisoformat(stored.timestamp) - datetime.fromisoformat(e["timestamp"])
            assert abs(skew.total_seconds()) < 1
            assert stored.properties["seq"] == e["properties"]["seq"]
        deadline = time.monotonic() + 5
        while spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool.depth() == 0
    finally:
        sender.shutdown(2)


def _writer(directory: str, tag: str, n: int, out: multiprocessing.Queue) -> None:
    spool = Spool(path=directory)
    uuids = []
    for i in range(0, n, 50):
        batch = make_events(50, f"{tag}{i}")
        spool.write(batch)
        uuids += [e["uuid"] for e in batch]
    out.put(uuids)


def _drainer(directory: str, host: str, api_key: str, stop: Any) -> None:
    settings = resolve_settings(
        {}, api_key=api_key, host=host, flush_interval_ms=50, spool_dir=directory, batch_size=200
    )
    sender = EventSender(settings, _events_only, spool=Spool(settings))
    stop.wait(60)
    sender.shutdown(1)


@pytest.mark.slow
def test_several_processes_share_one_spool_directory(tmp_path, sink):
    """4 forked writers and 2 forked senders on one directory: each event lands exactly once."""
    directory = str(tmp_path)
    parent = Spool(path=directory)
    parent.write(make_events(10, "parent"))  # an open connection in the parent before fork
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()
    stop = ctx.Event()
    drainers = [
        ctx.Process(target=_drainer, args=(directory, sink.url, sink.api_key, stop))
        for _ in range(2)
    ]
    writers = [ctx.Process(target=_writer, args=(directory, f"w{k}", 2000, out)) for k in range(4)]
    for p in drainers + writers:
        p.start()
    expected = {e for _ in writers for e in out.get(timeout=60)}
    for p in writers:
        p.join(30)
        assert p.exitcode == 0
    got = sink.wait_for(lambda evs: len(evs) >= 8010, 30)
    stop.set()
    for p in drainers:
        p.join(30)
        assert p.exitcode == 0
    uuids = {e.uuid for e in got}
    assert expected <= uuids and len(uuids) == 8010
    assert sink.app.state.stats["received"] == 8010  # no event posted twice
    assert Spool(path=directory).depth() == 0


def test_a_fork_during_another_threads_write_leaves_the_child_a_working_spool(tmp_path):
    """gunicorn --preload with a spool: the master's sender thread may be inside a spool
    transaction when a worker forks. The fork waits for it; the child writes and claims
    at once (it used to wait for SQLite locks that only the parent's thread held)."""
    spool = Spool(path=str(tmp_path))
    first, parents, childs = make_events(2, "p0"), make_events(3, "p1"), make_events(3, "c")
    spool.write(first)
    inside = InsideTransaction(spool)
    writer = threading.Thread(target=spool.write, args=(parents,))
    writer.start()
    assert inside.entered.wait(10)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            spool.write(childs)
            claim = spool.claim(100)
            ok = claim is not None and [e["uuid"] for e in claim.events] == [
                e["uuid"] for e in first + parents + childs
            ]
            os._exit(0 if ok else 1)
        finally:
            os._exit(2)
    inside.release()
    writer.join(10)
    code = wait_child(pid, 20)
    assert code == 0, "the child's spool hung (None) or held the wrong events"
    assert spool.depth() == 8  # the child's claim is unacknowledged: still held
