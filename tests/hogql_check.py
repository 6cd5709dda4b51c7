"""Parse HogQL with PostHog's own grammar (``hogql-parser``), isolated in this process.

``hogql_parser`` imports ``posthog.hogql.errors`` from PostHog's server, which clashes with
posthog-python's ``posthog`` package; this script is run as its own process with stand-ins
for those modules (posthog-python is never imported here). Input on stdin: JSON
``[[kind, text], ...]`` with kind ``select`` or ``expr``; output: a JSON list of
``{"error": message or null, "tree": the parser's syntax tree or null}``.
"""

from __future__ import annotations

import json
import sys
import types


def _stand_ins() -> None:
    root = types.ModuleType("posthog")
    root.__path__ = []  # type: ignore[attr-defined]
    hogql = types.ModuleType("posthog.hogql")
    hogql.__path__ = []  # type: ignore[attr-defined]
    errors = types.ModuleType("posthog.hogql.errors")

    class BaseHogQLError(Exception):
        def __init__(self, message: str = "", **_: object) -> None:
            super().__init__(message)

    errors.BaseHogQLError = BaseHogQLError  # type: ignore[attr-defined]
    for name in ("ExposedHogQLError", "InternalHogQLError", "SyntaxError", "NotImplementedError"):
        setattr(errors, name, type(name, (BaseHogQLError,), {}))
    errors.ParsingError = errors.SyntaxError  # type: ignore[attr-defined]
    sys.modules.update({"posthog": root, "posthog.hogql": hogql, "posthog.hogql.errors": errors})


def main() -> None:
    if "posthog" in sys.modules:
        raise SystemExit("posthog-python is imported; run this script as its own process")
    _stand_ins()
    import hogql_parser

    out: list[dict[str, object]] = []
    for kind, text in json.load(sys.stdin):
        parse = hogql_parser.parse_select_json if kind == "select" else hogql_parser.parse_expr_json
        try:
            tree = json.loads(parse(text))
        except Exception as exc:  # the parser's own error classes are the stand-ins
            out.append({"error": f"{type(exc).__name__}: {exc}", "tree": None})
            continue
        if tree.get("error"):
            out.append({"error": tree.get("message") or "parse error", "tree": None})
        else:
            out.append({"error": None, "tree": tree})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
