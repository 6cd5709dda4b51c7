"""The spool never stops the app: a corrupt file is moved aside, an unusable disk degrades
to in-memory delivery, and the log names the real error.

Real uvicorn processes running the example app, the local sink as PostHog, and real
failures (tests run as root, where permissions stop nothing): a spool file of random
bytes, a spool "directory" whose parent is a regular file, and a full disk made real
with ``RLIMIT_FSIZE`` (writes past the limit fail with ``EFBIG`` for root too).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import requests

from otel_posthog.counters import STATS
from otel_posthog.delivery.spool import FILENAME, Spool

from .helpers import AppProcess, bridge_env
from .reliability_fixtures import make_events


def _garbage(n: int = 64 * 1024) -> bytes:
    return random.Random(16).randbytes(n)


def _request_ids(app: AppProcess, n: int, session: requests.Session) -> list[str]:
    ids = []
    for i in range(n):
        r = session.get(f"{app.url}/api/chat/{i}", timeout=10)
        assert r.status_code == 200
        ids.append(r.headers["x-request-id"])
    return ids


def _delivered(sink, ids: list[str], timeout_s: float = 30) -> set[str]:
    want = set(ids)
    deadline = time.monotonic() + timeout_s
    while True:
        got = {e.properties.get("request_id") for e in sink.events("api_request")} & want
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_a_corrupt_spool_file_is_moved_aside_and_the_app_starts_and_delivers(sink, tmp_path):
    garbage = _garbage()
    (tmp_path / FILENAME).write_bytes(garbage)
    app = AppProcess(bridge_env(sink, OTEL_POSTHOG_SPOOL_DIR=str(tmp_path)))
    try:
        app.start()  # the old code raised sqlite3.DatabaseError here: a crash loop
        with requests.Session() as session:
            ids = _request_ids(app, 20, session)
        assert _delivered(sink, ids) == set(ids)
        kept = [p for p in tmp_path.iterdir() if p.name.startswith(FILENAME + ".corrupt-")]
        assert [p.read_bytes() for p in kept if not p.name.endswith(("-wal", "-shm"))] == [
            garbage
        ]  # kept for inspection, byte for byte
        assert "moved aside" in app.output()
    finally:
        app.stop()


def test_corruption_while_running_is_moved_aside_and_the_spool_goes_on(tmp_path):
    spool = Spool(path=str(tmp_path))
    before = STATS.snapshot(gauges=False)["spool_quarantined"]
    spool.write(make_events(10, "before"))
    spool.close()
    for suffix in ("-wal", "-shm"):
        Path(spool.path + suffix).unlink(missing_ok=True)
    Path(spool.path).write_bytes(_garbage())  # the file goes bad under a running sender
    spool.write(make_events(5, "after"))  # moved aside, a new file, the write kept
    assert spool.depth() == 5
    claim = spool.claim(100)
    assert claim is not None and len(claim.events) == 5
    assert STATS.snapshot(gauges=False)["spool_quarantined"] == before + 1
    assert any(p.name.startswith(FILENAME + ".corrupt-") for p in tmp_path.iterdir())


def test_a_spool_file_moved_aside_by_another_process_is_followed(tmp_path):
    """Several processes share a directory: when one moves a corrupt file aside, the
    others write to the new file at the path, not on into the one moved away."""
    spool = Spool(path=str(tmp_path))
    spool.write(make_events(3, "old"))
    moved = tmp_path / "moved-aside.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        if Path(spool.path + suffix).exists():
            Path(spool.path + suffix).rename(str(moved) + suffix)
    spool.write(make_events(4, "new"))  # the connection still open on the moved file
    assert spool.depth() == 4
    assert Spool(path=str(tmp_path)).depth() == 4


def test_a_spool_that_cannot_be_created_degrades_to_memory_delivery(sink, tmp_path):
    """The spool's parent is a regular file: even root cannot make the directory."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the spool's parent should be")
    app = AppProcess(bridge_env(sink, OTEL_POSTHOG_SPOOL_DIR=str(blocker / "spool")))
    try:
        app.start()  # the old code failed in configure(): the app never started
        with requests.Session() as session:
            ids = _request_ids(app, 20, session)
        assert _delivered(sink, ids) == set(ids)
        out = app.output()
        assert "cannot be used" in out and "Not a directory" in out
    finally:
        app.stop()


_LIMITED_UVICORN = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
import uvicorn
uvicorn.run("otel_posthog.demo.fastapi_app.app:app", host="127.0.0.1", port={{port}})
"""


def test_a_full_disk_spool_degrades_to_memory_and_names_the_real_error(sink, tmp_path):
    """PostHog down fills the spool until the disk is "full"; with PostHog back, new
    events are delivered from memory and the log shows SQLite's error, not a ROLLBACK one."""
    script = _LIMITED_UVICORN.format(limit=300_000)
    env = bridge_env(sink, OTEL_POSTHOG_SPOOL_DIR=str(tmp_path / "spool"))
    app = AppProcess(env, argv=[sys.executable, "-c", script])
    sink.faults.status = 503
    try:
        app.start()
        with requests.Session() as session:
            full = False
            for _ in range(40):  # bounded: the spool fills within a few hundred events
                _request_ids(app, 50, session)
                if "spool.write" in app.output():  # the first failed write is logged
                    full = True
                    break
                time.sleep(0.2)
            assert full, app.output()[-3000:]
            sink.faults.clear()  # PostHog is back; the spool is still unwritable
            ids = _request_ids(app, 50, session)
        assert _delivered(sink, ids, 60) == set(ids)  # the old code dropped them all
        out = app.output()
        assert "disk I/O error" in out or "disk is full" in out  # SQLite's own error
        assert "cannot rollback" not in out
    finally:
        sink.faults.clear()
        app.stop()
