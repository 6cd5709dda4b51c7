"""The durable spool: events that cannot be delivered now wait on disk, oldest first.

One SQLite database (``spool.sqlite3``) in ``OTEL_POSTHOG_SPOOL_DIR``, in WAL mode. Every
row is one event's full JSON, so a re-sent event keeps its original ``uuid`` and
``timestamp`` (PostHog deduplicates on ``uuid``).

* **Durability / fsync policy**: ``PRAGMA synchronous=NORMAL`` in WAL mode. A committed
  write survives the process being killed (``SIGKILL``, OOM, crash) at any moment; on a
  power loss or OS crash the last commits before the latest WAL checkpoint may be lost,
  but the database is never corrupted. ``Spool(..., fsync=True)`` selects
  ``synchronous=FULL`` (an ``fsync`` per commit).
* **Bounded**: the JSON bytes held never exceed ``OTEL_POSTHOG_SPOOL_MAX_MB``; a write
  that would pass the cap first deletes the oldest events, which are counted as
  ``dropped`` (and ``spool_dropped``). Freed pages are reused and returned to the file
  system (``auto_vacuum=INCREMENTAL``), the WAL is checkpointed and truncated
  at about 1 MB.
* **Several processes, one directory**: SQLite's file locks serialise writers (each
  write is one ``BEGIN IMMEDIATE`` transaction). A sender *claims* a batch with a lease
  before posting it and deletes it once PostHog accepted it; a claim whose process died
  expires after the lease and the batch is sent again (same uuids, so no double count).
* **Fork**: connections are per process. Before a fork (``os.register_at_fork``) the
  spool waits for the operation in progress on another thread (at most 30 s) and closes
  its connection, so the child inherits none of SQLite's in-process lock state for the
  file; parent and child each open a new connection on first use (gunicorn ``--preload``
  with a spool: the master's sender thread may be inside a transaction when it forks).
  A child forked while an operation outlasted that wait cannot use the spool and
  delivers from memory (logged).
* **Corruption**: a file SQLite reports as corrupt or not a database (at start or while
  running) is moved aside as ``spool.sqlite3.corrupt-<UTC time>`` (kept for inspection,
  counted in ``spool_quarantined``, logged) and a new one is started. Other errors (a
  read-only or full disk) are raised with SQLite's own message; the sender then delivers
  from memory (see :mod:`otel_posthog.delivery.sender`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid as uuid_mod
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.settings import Settings
from ..counters import STATS

log = logging.getLogger("otel_posthog")

FILENAME = "spool.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    size INTEGER NOT NULL,
    claimed_until REAL NOT NULL DEFAULT 0,
    claim TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('bytes', 0);
"""
_ORPHANED: list[sqlite3.Connection] = []  # a parent's connections, never used in a child
_FORK_WAIT_S = 30.0  # at fork, wait at most this long for a spool operation to end


@dataclass(frozen=True)
class Claim:
    """A batch taken from the spool; :meth:`Spool.ack` or :meth:`Spool.release` it."""

    token: str
    ids: tuple[int, ...]
    events: list[dict[str, Any]]


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, default=str, separators=(",", ":"))


class Spool:
    """Durable, bounded, multi-process FIFO of PostHog events (see the module docstring)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        path: str | None = None,
        max_bytes: int | None = None,
        fsync: bool = False,
        lease_s: float | None = None,
    ) -> None:
        s = settings or Settings()
        directory = path or s.spool_dir
        if not directory:
            raise ValueError("a spool needs a directory (OTEL_POSTHOG_SPOOL_DIR)")
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.path = os.path.join(directory, FILENAME)
        self.max_bytes = int(max_bytes if max_bytes is not None else s.spool_max_mb * 1024 * 1024)
        self.fsync = fsync
        self.lease_s = lease_s if lease_s is not None else s.request_timeout_ms / 1000 + 30
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._fork_held = False  # the lock was taken for a fork (see _before_fork)
        self._unusable_after_fork = False
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def before() -> None:
                spool = ref()
                if spool is not None:
                    spool._before_fork()

            def after_in_parent() -> None:
                spool = ref()
                if spool is not None:
                    spool._after_fork(child=False)

            def after_in_child() -> None:
                spool = ref()
                if spool is not None:
                    spool._after_fork(child=True)

            os.register_at_fork(
                before=before, after_in_parent=after_in_parent, after_in_child=after_in_child
            )
        self._inode: int | None = None
        with self._lock:
            self._guarded(lambda conn: None)  # fail fast on an unusable directory
            self._close()

    # -- fork ------------------------------------------------------------------------------
    def _before_fork(self) -> None:
        """Wait for the operation in progress (another thread's transaction) and close the
        connection, so the child inherits no SQLite state of this file: SQLite keeps its
        lock bookkeeping per process (the WAL write lock, the shared lock on the database),
        and a child that inherited it would wait for locks nobody releases, or believe it
        holds locks it does not."""
        self._fork_held = self._lock.acquire(timeout=_FORK_WAIT_S)
        if self._fork_held:
            self._close()

    def _after_fork(self, child: bool) -> None:
        held, self._fork_held = self._fork_held, False
        if not child:
            if held:
                self._lock.release()
            return
        self._lock = threading.Lock()
        if not held:
            # forked in the middle of another thread's operation (it outlasted
            # _FORK_WAIT_S): SQLite's state of this file is unusable in this process
            self._unusable_after_fork = True

    # -- connection ------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._unusable_after_fork:
            raise sqlite3.OperationalError(
                "the spool was in use by another thread when this process was forked; "
                "this process delivers from memory"
            )
        if self._conn is not None and self._pid == os.getpid():
            if self._same_file():
                return self._conn
            self._close()  # moved aside (or deleted) by another process: follow the path
        if self._conn is not None:  # inherited over fork: never touch it in the child
            _ORPHANED.append(self._conn)
        self._pid = os.getpid()
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only effective on a new file
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
            conn.execute("PRAGMA wal_autocheckpoint=256")  # checkpoint at ~1 MB of WAL
            conn.execute("PRAGMA journal_size_limit=1048576")  # and truncate it back to 1 MB
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            conn.close()
            raise
        self._conn = conn
        try:
            self._inode = os.stat(self.path).st_ino
        except OSError:
            self._inode = None
        return conn

    def _same_file(self) -> bool:
        """Whether the path still names the file our connection has open (one ``stat``)."""
        try:
            return self._inode is None or os.stat(self.path).st_ino == self._inode
        except OSError:
            return False

    def _guarded(self, operation: Any) -> Any:
        """Run ``operation(conn)`` (caller holds the lock); a corrupt file is moved aside
        and the operation runs once more on a new one."""
        try:
            return operation(self._connection())
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise
            self._quarantine(exc)
        return operation(self._connection())

    def _quarantine(self, exc: BaseException) -> None:
        """Move the corrupt database (and its WAL) aside, keep it, count it, log it."""
        inode = self._inode
        self._close()
        try:
            if inode is not None and os.stat(self.path).st_ino != inode:
                return  # another process already moved it aside: use its new file
        except OSError:
            return  # gone already
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = f"{self.path}.corrupt-{stamp}-{os.getpid()}"
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(self.path + suffix, target + suffix)
            except FileNotFoundError:
                pass
        STATS.add("spool_quarantined")
        log.warning(
            "otel_posthog: the spool file %s is unreadable (%s); moved aside to %s and a "
            "new spool started",
            self.path,
            exc,
            target,
        )

    def _close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
        elif self._conn is not None:  # inherited over fork: never touch it (not even close)
            _ORPHANED.append(self._conn)
        self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()

    # -- writing -----------------------------------------------------------------------------
    def write(self, events: Sequence[dict[str, Any]]) -> int:
        """Append events (oldest first); returns how many older events were dropped for room."""
        rows = []
        for event in events:
            try:
                body = encode(event)
            except (TypeError, ValueError, RecursionError) as exc:
                STATS.error("spool.encode", exc)
                STATS.add("dropped")
                continue
            rows.append((body, len(body.encode())))
        if not rows:
            return 0
        if sum(size for _, size in rows) > self.max_bytes:  # keep the newest that fit
            kept, total = [], 0
            for body, size in reversed(rows):
                if total + size > self.max_bytes:
                    break
                kept.append((body, size))
                total += size
            too_many = len(rows) - len(kept)
            STATS.add("dropped", too_many)
            STATS.add("spool_dropped", too_many)
            rows = kept[::-1]
        incoming = sum(size for _, size in rows)

        def write(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                held = conn.execute("SELECT value FROM meta WHERE key='bytes'").fetchone()[0]
                dropped = 0
                if held + incoming > self.max_bytes:
                    dropped = self._drop_oldest(conn, held + incoming - self.max_bytes)
                conn.executemany("INSERT INTO events (body, size) VALUES (?, ?)", rows)
                conn.execute("UPDATE meta SET value = value + ? WHERE key='bytes'", (incoming,))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            if dropped:
                conn.execute("PRAGMA incremental_vacuum")
            return dropped

        with self._lock:
            dropped: int = self._guarded(write)
        if dropped:
            STATS.add("dropped", dropped)
            STATS.add("spool_dropped", dropped)
        return dropped

    def _drop_oldest(self, conn: sqlite3.Connection, need: int) -> int:
        """Delete the oldest rows until ``need`` bytes are free (inside a transaction)."""
        freed = dropped = 0
        last_id = None
        for row_id, size in conn.execute("SELECT id, size FROM events ORDER BY id"):
            freed += size
            dropped += 1
            last_id = row_id
            if freed >= need:
                break
        if last_id is not None:
            conn.execute("DELETE FROM events WHERE id <= ?", (last_id,))
            conn.execute("UPDATE meta SET value = value - ? WHERE key='bytes'", (freed,))
        return dropped

    # -- re-sending --------------------------------------------------------------------------
    def claim(self, limit: int, max_bytes: int = 5 * 1024 * 1024) -> Claim | None:
        """Take up to ``limit`` of the oldest unclaimed events for sending, or None."""
        token = uuid_mod.uuid4().hex
        now = time.time()

        def claim(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows: list[tuple[int, str]] = []
                total = 0
                for row_id, body, size in conn.execute(
                    "SELECT id, body, size FROM events WHERE claimed_until < ? ORDER BY id LIMIT ?",
                    (now, limit),
                ):
                    if rows and total + size > max_bytes:
                        break
                    rows.append((row_id, body))
                    total += size
                if rows:
                    conn.execute(
                        "UPDATE events SET claimed_until = ?, claim = ? "
                        "WHERE id BETWEEN ? AND ? AND claimed_until < ?",
                        (now + self.lease_s, token, rows[0][0], rows[-1][0], now),
                    )
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return rows

        with self._lock:
            rows = self._guarded(claim)
        if not rows:
            return None
        events = []
        for _, body in rows:
            try:
                events.append(json.loads(body))
            except ValueError as exc:  # cannot happen unless the file was edited
                STATS.error("spool.decode", exc)
        return Claim(token, tuple(row_id for row_id, _ in rows), events)

    def ack(self, claim: Claim) -> None:
        """The claimed events landed: delete them."""

        def ack(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                freed = conn.execute(
                    "SELECT total(size) FROM events WHERE claim = ? AND id BETWEEN ? AND ?",
                    (claim.token, claim.ids[0], claim.ids[-1]),
                ).fetchone()[0]
                conn.execute(
                    "DELETE FROM events WHERE claim = ? AND id BETWEEN ? AND ?",
                    (claim.token, claim.ids[0], claim.ids[-1]),
                )
                conn.execute(
                    "UPDATE meta SET value = max(value - ?, 0) WHERE key='bytes'", (int(freed),)
                )
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

        with self._lock:
            self._guarded(ack)

    def release(self, claim: Claim) -> None:
        """The claimed events did not land: make them available again, in place."""
        with self._lock:
            self._guarded(
                lambda conn: conn.execute(
                    "UPDATE events SET claimed_until = 0, claim = NULL WHERE claim = ?",
                    (claim.token,),
                )
            )

    # -- inspection --------------------------------------------------------------------------
    def depth(self) -> int:
        """Events held (claimed or not)."""
        with self._lock:
            return int(
                self._guarded(lambda c: c.execute("SELECT count(*) FROM events").fetchone()[0])
            )

    def held_bytes(self) -> int:
        with self._lock:
            return int(
                self._guarded(
                    lambda c: c.execute("SELECT value FROM meta WHERE key='bytes'").fetchone()[0]
                )
            )

    def disk_bytes(self) -> int:
        """Bytes the spool's files take on disk (database, WAL, shared memory)."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back an open transaction; never hides the error being handled.

    SQLite may already have rolled back on its own (a full or read-only disk): a second
    ROLLBACK would raise "no transaction is active" and mask the real error.
    """
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


def is_corrupt(exc: BaseException) -> bool:
    """True when SQLite says the file is damaged or not a database (not a disk problem)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _CORRUPT_CODES
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def open_spool(settings: Settings, *, required: bool) -> Spool | None:
    """The spool of ``settings`` (``OTEL_POSTHOG_SPOOL_DIR``) for a sender, or None without one.

    A corrupt file is moved aside by :class:`Spool` itself; a spool that still cannot be
    opened (read-only or full disk, a file where the directory should be) raises when
    ``required`` (the OTLP receiver: its start fails, naming it), else is counted and
    logged and the sender delivers from memory only (the in-process bridge never fails
    the app for it).
    """
    if not settings.spool_dir:
        return None
    try:
        return Spool(settings)
    except Exception as exc:
        if required:
            raise
        STATS.error("spool.open", exc)
        log.warning(
            "otel_posthog: the spool in %s cannot be used (%s: %s); events are "
            "delivered from memory only",
            settings.spool_dir,
            exc.__class__.__name__,
            exc,
        )
        return None
