"""CLI subcommands of the local sink: ``sink``, ``journey``, ``slow``, ``errors``."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import EventStore

DEFAULT_DB = os.path.join(".otel-posthog", "events.db")
DB_ENV = "OTEL_POSTHOG_SINK_DB"


def default_db() -> str:
    return os.environ.get(DB_ENV) or DEFAULT_DB


def add_parser(subparsers: Any) -> None:
    """Register ``sink``, ``journey``, ``slow`` and ``errors``."""
    db_help = f"SQLite database of the sink (default ${DB_ENV} or {DEFAULT_DB})"

    p = subparsers.add_parser("sink", help="run the local PostHog-compatible capture server")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks one)")
    p.add_argument("--db", default=None, help=db_help)
    p.add_argument(
        "--api-key",
        default=None,
        help="project key to require (default: one generated and kept next to the database)",
    )
    p.set_defaults(func=run_sink)

    p = subparsers.add_parser("journey", help="a person's, request's or session's timeline")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="distinct_id of the person")
    who.add_argument("--request", help="request_id (the trace id) of one request")
    who.add_argument("--session", help="PostHog session id")
    p.add_argument("--event", action="append", default=None, metavar="NAME", help="only these")
    _common(p, db_help)
    p.set_defaults(func=run_journey)

    p = subparsers.add_parser("slow", help="slow requests, slowest first by duration_ms")
    p.add_argument("--user", help="only this person's")
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    _common(p, db_help)
    p.set_defaults(func=run_slow)

    p = subparsers.add_parser("errors", help="api_error events, oldest first")
    p.add_argument("--user", help="only this person's")
    p.add_argument("--limit", type=int, default=None, help="only the newest N")
    _common(p, db_help)
    p.set_defaults(func=run_errors)


def _common(p: argparse.ArgumentParser, db_help: str) -> None:
    p.add_argument("--since", default=None, metavar="ISO", help="only events at or after this")
    p.add_argument("--db", default=None, help=db_help)
    p.add_argument("--json", action="store_true", help="print a JSON array of events")


def api_key_for(db: str, given: str | None) -> str:
    """``given``, else the key kept next to ``db`` (created on first use)."""
    if given:
        return given
    if db == ":memory:":
        return "phc_local_" + secrets.token_hex(8)
    key_file = Path(db).resolve().parent / "api_key"
    if key_file.exists():
        key = key_file.read_text().strip()
        if key:
            return key
    key = "phc_local_" + secrets.token_hex(8)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    return key


def run_sink(args: argparse.Namespace) -> int:
    from .rest_api import apply_command
    from .server import LocalSink

    # before anything can print the banner: a stop right after start-up is a clean stop too
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    db = args.db or default_db()
    sink = LocalSink(db, api_key=api_key_for(db, args.api_key), host=args.host, port=args.port)
    try:
        sink.start()
    except RuntimeError as exc:
        print(f"otel-posthog sink: {exc} (is the port in use? try --port 0)", file=sys.stderr)
        return 1
    print(f"otel-posthog sink listening on {sink.url}")
    print(f"  api key:  {sink.api_key}")
    print(f"  database: {db}")
    print(f"  web view: {sink.url}/")
    print("Point the bridge at it:")
    print(f"  export POSTHOG_HOST={sink.url} POSTHOG_API_KEY={sink.api_key}")
    print(f"Dashboards ({sink.url}/dashboards): apply them to the sink with")
    print(f"  {apply_command(sink.url, sink.personal_api_key)}", flush=True)

    while not stopping and sink.thread.is_alive():
        time.sleep(0.2)
    sink.stop()
    return 0


def _open(args: argparse.Namespace) -> Any:
    from .store import EventStore

    db = args.db or default_db()
    try:
        return EventStore(db, readonly=True)
    except FileNotFoundError:
        print(
            f"otel-posthog: no database at {db} (start `otel-posthog sink` or pass --db)",
            file=sys.stderr,
        )
        return None


def _since(args: argparse.Namespace) -> str | None:
    from .journey import parse_since

    try:
        return parse_since(args.since) if args.since else None
    except ValueError as exc:
        raise SystemExit(
            f"otel-posthog {args.command}: bad --since {args.since!r}: {exc}"
        ) from None


def _print(events: list[Any], as_json: bool, show_person: bool, empty: str) -> None:
    from .journey import as_json as to_json
    from .journey import timeline

    if as_json:
        print(json.dumps(to_json(events), indent=2))
    elif not events:
        print(empty, file=sys.stderr)
    else:
        print("\n".join(timeline(events, show_person=show_person)))


def _query_and_print(
    args: argparse.Namespace, query: Callable[[EventStore, str | None], list], empty: str
) -> int:
    """Open the database read-only, run ``query(store, since)``, print the timeline or JSON."""
    since = _since(args)
    store = _open(args)
    if store is None:
        return 2
    try:
        found = query(store, since)
    finally:
        store.close()
    _print(found, args.json, args.user is None, empty)
    return 0


def run_journey(args: argparse.Namespace) -> int:
    from .journey import journey

    who = f"user {args.user}" if args.user else f"request {args.request}" if args.request else None
    who = who or f"session {args.session}"
    return _query_and_print(
        args,
        lambda store, since: journey(
            store,
            user=args.user,
            request=args.request,
            session=args.session,
            events=args.event,
            since=since,
        ),
        f"no events for {who}",
    )


def run_slow(args: argparse.Namespace) -> int:
    from .journey import slow_requests

    return _query_and_print(
        args,
        lambda store, since: slow_requests(store, user=args.user, limit=args.limit, since=since),
        "no slow requests",
    )


def run_errors(args: argparse.Namespace) -> int:
    from .journey import errors

    return _query_and_print(
        args,
        lambda store, since: errors(store, user=args.user, limit=args.limit, since=since),
        "no errors",
    )
