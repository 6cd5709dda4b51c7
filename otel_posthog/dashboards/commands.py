"""``otel-posthog dashboards apply | plan | destroy | init``: the guide's PostHog side as code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

KEY_ENV = "POSTHOG_PERSONAL_API_KEY"
PROJECT_ENV = "POSTHOG_PROJECT_ID"
HOST_ENV = "POSTHOG_HOST"
SYMBOL = {
    "create": "+",
    "update": "~",
    "restore": "~",
    "edited": "!",
    "unchanged": "=",
    "orphan": "?",
    "duplicate": "?",
    "delete": "-",
}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dashboards",
        help="apply the guide's dashboards, alerts and cohorts to a PostHog project",
        description=(
            "Dashboards, insights, alerts and cohorts from one definitions file, applied to a "
            f"PostHog project with a personal API key (${KEY_ENV}). Safe to rerun: objects are "
            "found by their marker, unchanged ones are not written, others are never touched."
        ),
    )
    sub = parser.add_subparsers(dest="dashboards_command", metavar="COMMAND")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--file", help="a definitions file (default: the shipped one; see init)")
        p.add_argument("--host", help=f"PostHog's app URL (default ${HOST_ENV}, else US Cloud)")
        p.add_argument("--project-id", help=f"the project id (default ${PROJECT_ENV})")

    apply = sub.add_parser("apply", help="create or update every object in the definitions")
    common(apply)
    apply.add_argument(
        "--restore",
        action="store_true",
        help="also put back objects of ours changed by hand in PostHog (default: report them)",
    )
    apply.set_defaults(func=run_apply)
    plan = sub.add_parser("plan", help="what apply would do; writes nothing")
    common(plan)
    plan.add_argument("--json", action="store_true", help="the plan as JSON on stdout")
    plan.set_defaults(func=run_plan)
    destroy = sub.add_parser("destroy", help="delete the objects otel-posthog created, only those")
    common(destroy)
    destroy.add_argument("--yes", action="store_true", help="do not ask first")
    destroy.set_defaults(func=run_destroy)
    init = sub.add_parser("init", help="write the shipped definitions to an editable file")
    init.add_argument("path", nargs="?", default="otel-posthog-dashboards.json")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=run_init)


class UsageError(Exception):
    """A missing or bad setting: one line, exit 2."""


def _fail(message: str, code: int = 1) -> int:
    print(f"otel-posthog dashboards: {message}", file=sys.stderr)
    return code


def _connect(args: argparse.Namespace) -> tuple[Any, Any]:
    from .api import Client, app_host
    from .definitions import load

    defs = load(args.file)  # invalid definitions fail before anything is sent
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise UsageError(f"set {KEY_ENV} to a personal API key (phx_...)")
    if key.startswith("phc_"):
        raise UsageError(
            f"{KEY_ENV} holds a project API key (phc_...), which only sends events; "
            "dashboards needs a personal API key (phx_...)"
        )
    project = (args.project_id or os.environ.get(PROJECT_ENV, "")).strip()
    if not project:
        raise UsageError(f"set {PROJECT_ENV} or --project-id to the project's id")
    if not project.isdigit():
        raise UsageError(f"the project id must be a number, not {project!r}")
    host = app_host(args.host or os.environ.get(HOST_ENV) or None)
    return Client(host, project, key), defs


def _run(args: argparse.Namespace, body: Any) -> int:
    from .api import ApiError
    from .definitions import DefinitionError

    try:
        return int(body(*_connect(args)))
    except UsageError as exc:
        return _fail(str(exc), 2)
    except DefinitionError as exc:
        return _fail(f"invalid definitions: {exc}", 2)
    except ApiError as exc:
        return _fail(str(exc))


def _line(action: Any) -> str:
    ident = f" (id {action.id})" if action.id is not None else ""
    text = f"{SYMBOL.get(action.action, ' ')} {action.action:<9} {action.kind:<9} {action.key}"
    text += f"  {action.name!r}{ident}"
    if action.reason:
        text += f": {action.reason}"
    if action.fields:
        text += f" [{', '.join(action.fields)}]"
    return text


def _summary(actions: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for action in actions:
        out[action.action] = out.get(action.action, 0) + 1
    return out


def run_plan(args: argparse.Namespace) -> int:
    from .engine import Engine, as_json

    def body(client: Any, defs: Any) -> int:
        actions = Engine(client, defs).plan()
        if args.json:
            doc = {
                "host": client.host,
                "project_id": client.project_id,
                "definitions": defs.source,
                "actions": as_json(actions),
                "summary": _summary(actions),
            }
            print(json.dumps(doc, indent=2))
            return 0
        print(f"Plan for project {client.project_id} at {client.host} ({defs.source}):")
        for action in actions:
            print("  " + _line(action))
        counts = ", ".join(f"{n} {what}" for what, n in _summary(actions).items())
        print(f"{counts}. Nothing was written.")
        return 0

    return _run(args, body)


def run_apply(args: argparse.Namespace) -> int:
    from .engine import Engine

    def body(client: Any, defs: Any) -> int:
        actions = Engine(client, defs, restore=args.restore).apply()
        print(f"Applied to project {client.project_id} at {client.host} ({defs.source}):")
        for action in actions:
            if action.action != "unchanged":
                print("  " + _line(action))
        counts = ", ".join(f"{n} {what}" for what, n in _summary(actions).items())
        print(f"{counts}; {client.writes} writes.")
        return 0

    return _run(args, body)


def run_destroy(args: argparse.Namespace) -> int:
    from .engine import Engine

    def body(client: Any, defs: Any) -> int:
        engine = Engine(client, defs)
        if not args.yes:
            targets = engine.targets()
            if not targets:
                print("Nothing of otel-posthog's in this project.")
                return 0
            if not sys.stdin.isatty():
                raise UsageError("destroy asks first; on no terminal, pass --yes")
            print(f"destroy deletes these {len(targets)} objects in project {client.project_id}:")
            for action in targets:
                print("  " + _line(action))
            answer = input("Delete them? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                print("Nothing deleted.")
                return 1
        actions = engine.destroy()
        for action in actions:
            print("  " + _line(action))
        print(f"{len(actions)} objects deleted (dashboards, insights, cohorts soft-deleted).")
        return 0

    return _run(args, body)


def run_init(args: argparse.Namespace) -> int:
    from .definitions import shipped_text

    path = Path(args.path)
    if path.exists() and not args.force:
        return _fail(f"{path} exists; pass --force to overwrite it", 2)
    try:
        path.write_text(shipped_text(), encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror or exc}", 2)
    print(f"Wrote {path}. Edit its settings, then: otel-posthog dashboards plan --file {path}")
    return 0
