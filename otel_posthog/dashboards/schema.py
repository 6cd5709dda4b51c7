"""PostHog's query JSON schema (a vendored subset) and a small draft-07 validator for it.

The validator implements exactly the keywords the subset uses (``$ref`` to local definitions,
``type``, ``enum``, ``const``, ``properties``, ``required``, ``additionalProperties``,
``propertyNames``, ``items``, ``minItems``/``maxItems``, ``anyOf``, ``oneOf``, ``allOf``,
``not``) and ignores only annotations (``default``, ``format``, ``description``, ...). A
keyword it does not know is an error, never silently accepted.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "query-schema-subset.json"

# Annotations: they describe, they never reject.
_ANNOTATIONS = frozenset(
    {"$comment", "$schema", "default", "deprecated", "description", "discriminator", "format"}
    | {"title", "examples", "definitions", "propertyName"}
)
_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (
        isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()
    ),
}


class SchemaError(ValueError):
    """A value does not match the schema; ``str()`` names the path and the rule."""


@lru_cache(maxsize=1)
def definitions() -> dict[str, Any]:
    """The vendored definitions (PostHog's ``schema.json`` subset; notice beside the file)."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return dict(json.loads(text)["definitions"])


def _path(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "."


def _equal(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0 but True != 1
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


class Validator:
    """Validates instances against one definition of a ``definitions`` map."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def errors(self, value: Any, schema: Any, path: tuple[str | int, ...] = ()) -> list[str]:
        """Every violation, as ``"<path>: <what>"``; empty when ``value`` matches."""
        if schema is True or schema == {}:
            return []
        if schema is False:
            return [f"{_path(path)}: not allowed"]
        out: list[str] = []
        for key, rule in schema.items():
            check = getattr(self, "_k_" + key.lstrip("$"), None)
            if check is not None:
                out += check(value, rule, schema, path)
            elif key not in _ANNOTATIONS and key not in ("additionalProperties", "required"):
                raise SchemaError(f"schema keyword {key!r} is not supported by this validator")
        return out

    def _k_ref(self, value: Any, ref: str, _s: Any, path: tuple) -> list[str]:
        prefix = "#/definitions/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in self.defs:
            raise SchemaError(f"unresolvable $ref {ref!r}")
        return self.errors(value, self.defs[ref[len(prefix) :]], path)

    def _k_type(self, value: Any, rule: Any, _s: Any, path: tuple) -> list[str]:
        names = rule if isinstance(rule, list) else [rule]
        if any(_TYPES[name](value) for name in names):
            return []
        return [f"{_path(path)}: expected {' or '.join(names)}, got {json.dumps(value)[:60]}"]

    def _k_enum(self, value: Any, rule: list[Any], _s: Any, path: tuple) -> list[str]:
        if any(_equal(value, option) for option in rule):
            return []
        return [f"{_path(path)}: {json.dumps(value)[:60]} is not one of {json.dumps(rule)[:200]}"]

    def _k_const(self, value: Any, rule: Any, _s: Any, path: tuple) -> list[str]:
        return [] if _equal(value, rule) else [f"{_path(path)}: must be {json.dumps(rule)}"]

    def _k_properties(self, value: Any, rule: dict, schema: dict, path: tuple) -> list[str]:
        if not isinstance(value, dict):
            return []
        out: list[str] = []
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{_path(path)}: missing required key {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in rule:
                out += self.errors(item, rule[name], (*path, name))
            elif extra is False:
                out.append(f"{_path(path)}: unknown key {name!r}")
            else:
                out += self.errors(item, extra, (*path, name))
        return out

    def _k_additionalProperties(self, value: Any, rule: Any, schema: dict, path: tuple) -> list:
        if "properties" in schema or not isinstance(value, dict):
            return []  # checked with the properties
        return self._k_properties(value, {}, schema, path)

    def _k_required(self, value: Any, rule: list[str], schema: dict, path: tuple) -> list[str]:
        if "properties" in schema or "additionalProperties" in schema:
            return []
        if not isinstance(value, dict):
            return []
        return [f"{_path(path)}: missing required key {n!r}" for n in rule if n not in value]

    def _k_propertyNames(self, value: Any, rule: Any, _s: Any, path: tuple) -> list[str]:
        if not isinstance(value, dict):
            return []
        return [e for name in value for e in self.errors(name, rule, (*path, name))]

    def _k_items(self, value: Any, rule: Any, _s: Any, path: tuple) -> list[str]:
        if not isinstance(value, list):
            return []
        if isinstance(rule, list):  # draft-07 tuple form
            pairs = list(zip(value, rule, strict=False))  # extra items: allowed
            return [e for i, (v, r) in enumerate(pairs) for e in self.errors(v, r, (*path, i))]
        return [e for i, v in enumerate(value) for e in self.errors(v, rule, (*path, i))]

    def _k_maxItems(self, value: Any, rule: int, _s: Any, path: tuple) -> list[str]:
        if isinstance(value, list) and len(value) > rule:
            return [f"{_path(path)}: more than {rule} items"]
        return []

    def _k_minItems(self, value: Any, rule: int, _s: Any, path: tuple) -> list[str]:
        if isinstance(value, list) and len(value) < rule:
            return [f"{_path(path)}: fewer than {rule} items"]
        return []

    def _k_anyOf(self, value: Any, rule: list[Any], _s: Any, path: tuple) -> list[str]:
        results = []
        for option in rule:
            errors = self.errors(value, option, path)
            if not errors:
                return []
            results.append(errors)
        return [_closest(results, path, "any of")]

    def _k_oneOf(self, value: Any, rule: list[Any], _s: Any, path: tuple) -> list[str]:
        results = [self.errors(value, option, path) for option in rule]
        matches = sum(1 for r in results if not r)
        if matches == 1:
            return []
        if matches > 1:
            return [f"{_path(path)}: matches {matches} alternatives of oneOf, must match one"]
        return [_closest(results, path, "one of")]

    def _k_allOf(self, value: Any, rule: list[Any], _s: Any, path: tuple) -> list[str]:
        return [e for option in rule for e in self.errors(value, option, path)]

    def _k_not(self, value: Any, rule: Any, _s: Any, path: tuple) -> list[str]:
        return [] if self.errors(value, rule, path) else [f"{_path(path)}: matches a `not` rule"]


def _closest(results: list[list[str]], path: tuple, what: str) -> str:
    """The anyOf/oneOf failure: the alternative with the fewest errors explains it best."""
    best = min(results, key=len)
    if len(best) == 1:
        return best[0]
    return f"{_path(path)}: matches none of {what} {len(results)} alternatives ({best[0]}, ...)"


def query_errors(query: Any, definition: str | None = None) -> list[str]:
    """Violations of ``query`` against the definition named by its ``kind`` (or ``definition``)."""
    defs = definitions()
    name = definition or (query.get("kind") if isinstance(query, dict) else None)
    if not isinstance(name, str) or name not in defs:
        return [f".kind: {json.dumps(name)} is not a query kind this schema knows"]
    return Validator(defs).errors(query, {"$ref": f"#/definitions/{name}"})
