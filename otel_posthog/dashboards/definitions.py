"""The definitions file: load it, fill in its settings, check it, compile it to PostHog objects.

A definitions file is JSON (``definitions.json`` beside this module is the shipped one): a
``settings`` map, SQL ``variables``, and ``dashboards``, ``insights``, ``alerts`` and
``cohorts`` maps keyed by a definition key (the key is the object's identity in PostHog).
Everything is checked before anything is sent: a bad definition raises ``DefinitionError``
naming the key, and every compiled query is validated against PostHog's query schema.

Settings fill in the rest of the file: a string ``"${name}"`` becomes the setting's value
(any JSON); ``${name}`` inside a longer string its text (a list as ``a, b``); and
``${hogql:name}`` a HogQL literal (a string quoted and escaped, a list as a tuple).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .schema import Validator, definitions, query_errors

SHIPPED = "definitions.json"
KINDS = ("dashboard", "insight", "alert", "cohort")
KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SETTING = re.compile(r"\$\{(hogql:)?([A-Za-z_][A-Za-z0-9_]*)\}")
_VARIABLE = re.compile(r"\{variables\.([A-Za-z_][A-Za-z0-9_]*)\}")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
TOP_KEYS = {"$comment", "version", "settings", "variables", "dashboards", "insights"}
TOP_KEYS |= {"alerts", "cohorts"}
INSIGHT_KINDS = ("InsightVizNode", "DataTableNode", "DataVisualizationNode")
ALERT_INTERVALS = ("hourly", "daily", "weekly", "monthly")
VARIABLE_TYPES = ("String", "Number", "Boolean", "List", "Date")
# HogQLAlertConfig is not in the vendored schema subset; its shape, from PostHog's alerts API.
HOGQL_ALERT_CONFIG = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "column"],
    "properties": {
        "type": {"const": "HogQLAlertConfig"},
        "column": {"type": "string"},
        "evaluation": {"enum": ["last_row", "first_row", "any_row"]},
        "label_column": {"type": "string"},
    },
}
# Lengths PostHog enforces on descriptions; the marker is counted in.
MAX_DESCRIPTION = {"dashboard": 4000, "insight": 400, "cohort": 1000}
PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"


def marker(kind: str, key: str, digest: str) -> str:
    """The line that marks an object as ours in its description (with a hash of what we sent)."""
    return f"[otel-posthog:{kind}:{key} sha:{digest}] managed by `otel-posthog dashboards apply`"


class DefinitionError(ValueError):
    """An invalid definitions file; the message names the file and the key."""


@dataclass
class Desired:
    """One object as the definitions want it; references to other objects are by key."""

    kind: str
    key: str
    name: str
    description: str = ""
    query: dict[str, Any] | None = None  # insights
    dashboards: list[str] = field(default_factory=list)  # insights: dashboard keys
    insight: str = ""  # alerts: insight key
    alert: dict[str, Any] = field(default_factory=dict)  # alerts: threshold, condition, ...
    filters: dict[str, Any] | None = None  # cohorts
    variables: list[str] = field(default_factory=list)  # insights: SQL variable code names


@dataclass
class Definitions:
    """A checked, compiled definitions file."""

    source: str
    variables: dict[str, dict[str, Any]]
    objects: list[Desired]

    def of(self, kind: str) -> list[Desired]:
        return [o for o in self.objects if o.kind == kind]


def shipped_text() -> str:
    """The shipped definitions file, as text (what ``init`` writes)."""
    return resources.files(__package__).joinpath(SHIPPED).read_text(encoding="utf-8")


def load(path: str | Path | None = None) -> Definitions:
    """Read, check and compile ``path`` (the shipped definitions when None)."""
    source = str(path) if path else "the shipped definitions"
    if path is None:
        text = shipped_text()
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DefinitionError(f"{source}: cannot read: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError(
            f"{source}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    return compile_definitions(raw, source)


def _fail(source: str, where: str, what: str) -> DefinitionError:
    return DefinitionError(f"{source}: {where}: {what}")


def _hogql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, list) and value and all(isinstance(v, (str, int, float)) for v in value):
        return "(" + ", ".join(_hogql_literal(v) for v in value) + ")"
    raise ValueError("a HogQL literal must be a string, a number or a non-empty list of them")


def substitute(value: Any, settings: dict[str, Any], source: str, where: str) -> Any:
    """``value`` with every ``${setting}`` filled in (the rules: the module docstring)."""
    if isinstance(value, dict):
        return {
            k: substitute(v, settings, source, f"{where}.{k}")
            for k, v in value.items()
            if k != "$comment"
        }
    if isinstance(value, list):
        return [substitute(v, settings, source, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def lookup(match: re.Match[str]) -> Any:
        name = match.group(2)
        if name not in settings:
            raise _fail(source, where, f"unknown setting ${{{name}}} (settings has no {name!r})")
        return settings[name]

    whole = _SETTING.fullmatch(value)
    if whole and not whole.group(1):
        return lookup(whole)

    def text(match: re.Match[str]) -> str:
        found = lookup(match)
        if match.group(1):
            try:
                return _hogql_literal(found)
            except ValueError as exc:
                raise _fail(source, where, f"setting {match.group(2)!r}: {exc}") from None
        if isinstance(found, list) and all(isinstance(v, (str, int, float)) for v in found):
            return ", ".join(str(v) for v in found)
        if isinstance(found, (dict, list)) or found is None:
            raise _fail(source, where, f"setting {match.group(2)!r} is not text or a number")
        return str(found).lower() if isinstance(found, bool) else str(found)

    result = _SETTING.sub(text, value)
    if "${" in result:
        raise _fail(source, where, f"malformed ${{...}} in {value!r}")
    return result


def _map(raw: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise _fail(source, name, "must be an object keyed by definition key")
    for key in value:
        if not KEY.match(key):
            raise _fail(source, f"{name}.{key}", "a key is lowercase letters, digits, - and _")
    return value


def _entry(
    value: Any,
    source: str,
    where: str,
    required: Mapping[str, type],
    optional: Mapping[str, type],
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, where, "must be an object")
    allowed = {**required, **optional, "$comment": str}
    for name in value:
        if name not in allowed:
            raise _fail(source, f"{where}.{name}", f"unknown key (allowed: {', '.join(allowed)})")
    for name, kind in allowed.items():
        if name in required and name not in value:
            raise _fail(source, where, f"missing {name!r}")
        if name in value and not isinstance(value[name], kind):
            raise _fail(source, f"{where}.{name}", f"must be {kind.__name__}")
    return value


def _schema_check(value: Any, definition: str | dict, source: str, where: str) -> None:
    if isinstance(definition, dict):
        errors = Validator(definitions()).errors(value, definition)
    else:
        errors = query_errors(value, definition)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise _fail(source, where, f"does not match PostHog's schema: {errors[0]}{more}")


def _hogql_sources(query: dict[str, Any]) -> list[dict[str, Any]]:
    source = query.get("source")
    if isinstance(source, dict) and source.get("kind") == "HogQLQuery":
        return [source]
    return []


def _check_hogql(text: str, declared: dict[str, Any], source: str, where: str) -> list[str]:
    """The variables ``text`` uses; placeholders other than variables and filters fail."""
    used: list[str] = []
    for match in _PLACEHOLDER.finditer(text):
        inner = match.group(1).strip()
        var = _VARIABLE.fullmatch(match.group(0))
        if var:
            if var.group(1) not in declared:
                raise _fail(source, where, f"{{variables.{var.group(1)}}} is not in `variables`")
            if var.group(1) not in used:
                used.append(var.group(1))
        elif not (inner == "filters" or inner.startswith("filters.")):
            raise _fail(source, where, f"unknown placeholder {{{inner}}} in the HogQL")
    if text.count("(") != text.count(")"):
        raise _fail(source, where, "unbalanced parentheses in the HogQL")
    return used


def with_variables(query: dict[str, Any], names: list[str], ids: dict[str, str]) -> dict[str, Any]:
    """``query`` with its HogQL ``variables`` map declaring ``names`` (PostHog requires it)."""
    if not names:
        return query
    out = json.loads(json.dumps(query))
    for hogql in _hogql_sources(out):
        variables = dict(hogql.get("variables") or {})
        for name in names:
            vid = ids.get(name, PLACEHOLDER_ID)
            variables[vid] = {"variableId": vid, "code_name": name, "value": None}
        hogql["variables"] = variables
    return out


def _compile_insight(key: str, raw: Any, ctx: dict[str, Any], source: str) -> Desired:
    where = f"insights.{key}"
    entry = _entry(raw, source, where, {"name": str, "query": dict}, {"description": str})
    entry = substitute(entry, ctx["settings"], source, where)
    query = entry["query"]
    kind = query.get("kind")
    if kind not in INSIGHT_KINDS:
        raise _fail(source, f"{where}.query.kind", f"must be one of {', '.join(INSIGHT_KINDS)}")
    used: list[str] = []
    for hogql in _hogql_sources(query):
        if "variables" in hogql:
            raise _fail(source, f"{where}.query.source.variables", "is filled in by apply")
        text = hogql.get("query")
        if isinstance(text, str):
            used = _check_hogql(text, ctx["variables"], source, f"{where}.query.source.query")
    if used and kind != "DataVisualizationNode":
        raise _fail(source, where, "only SQL insights (DataVisualizationNode) take variables")
    _schema_check(with_variables(query, used, {}), kind, source, f"{where}.query")
    return Desired(
        "insight",
        key,
        entry["name"],
        entry.get("description", ""),
        query=query,
        variables=used,
    )


def _compile_alert(key: str, raw: Any, ctx: dict[str, Any], source: str) -> Desired:
    where = f"alerts.{key}"
    required = {"name": str, "insight": str, "threshold": dict, "condition": dict, "config": dict}
    optional = {"calculation_interval": str, "enabled": bool, "skip_weekend": bool}
    entry = substitute(raw, ctx["settings"], source, where)
    entry = _entry(entry, source, where, required, optional)
    insight = ctx["insights"].get(entry["insight"])
    if insight is None:
        raise _fail(source, f"{where}.insight", f"no insight {entry['insight']!r}")
    _schema_check(entry["threshold"], "InsightThreshold", source, f"{where}.threshold")
    if not (entry["threshold"].get("bounds") or {}):
        raise _fail(source, f"{where}.threshold.bounds", "needs a lower or an upper bound")
    _schema_check(entry["condition"], "AlertCondition", source, f"{where}.condition")
    config = entry["config"]
    source_kind = (insight.query or {}).get("source", {}).get("kind")
    if config.get("type") == "TrendsAlertConfig":
        _schema_check(config, "TrendsAlertConfig", source, f"{where}.config")
        if source_kind != "TrendsQuery":
            raise _fail(source, f"{where}.config", "TrendsAlertConfig needs a trends insight")
        series = (insight.query or {})["source"]["series"]
        if config["series_index"] >= len(series):
            raise _fail(source, f"{where}.config.series_index", "is past the insight's series")
    elif config.get("type") == "HogQLAlertConfig":
        _schema_check(config, HOGQL_ALERT_CONFIG, source, f"{where}.config")
        if source_kind != "HogQLQuery":
            raise _fail(source, f"{where}.config", "HogQLAlertConfig needs an SQL insight")
    else:
        raise _fail(source, f"{where}.config.type", "must be TrendsAlertConfig or HogQLAlertConfig")
    interval = entry.get("calculation_interval", "hourly")
    if interval not in ALERT_INTERVALS:
        raise _fail(source, f"{where}.calculation_interval", f"must be one of {ALERT_INTERVALS}")
    body = {
        "threshold": {"configuration": entry["threshold"]},
        "condition": entry["condition"],
        "config": config,
        "calculation_interval": interval,
        "enabled": entry.get("enabled", True),
    }
    if "skip_weekend" in entry:
        body["skip_weekend"] = entry["skip_weekend"]
    return Desired("alert", key, entry["name"], insight=entry["insight"], alert=body)


def _behavioral(node: dict[str, Any], days: int, negation: bool) -> dict[str, Any]:
    return {
        "type": "behavioral",
        "key": node["event"],
        "value": "performed_event",
        "event_type": "events",
        "time_value": days,
        "time_interval": "day",
        "negation": negation,
        "event_filters": node.get("properties", []),
    }


def _compile_cohort(key: str, raw: Any, ctx: dict[str, Any], source: str) -> Desired:
    where = f"cohorts.{key}"
    entry = substitute(raw, ctx["settings"], source, where)
    required = {"name": str, "performed": list, "days": int}
    entry = _entry(entry, source, where, required, {"description": str, "not_performed": list})
    if isinstance(entry["days"], bool) or not 0 < entry["days"] <= 3650:
        raise _fail(source, f"{where}.days", "must be a whole number of days, 1 to 3650")
    if not entry["performed"]:
        raise _fail(source, f"{where}.performed", "needs at least one event")
    values = []
    for name, negation in (("performed", False), ("not_performed", True)):
        for i, node in enumerate(entry.get(name, [])):
            _schema_check(node, "EventsNode", source, f"{where}.{name}[{i}]")
            if not node.get("event"):
                raise _fail(source, f"{where}.{name}[{i}].event", "a cohort step needs an event")
            for j, prop in enumerate(node.get("properties", [])):
                if prop.get("type") != "event":
                    raise _fail(source, f"{where}.{name}[{i}].properties[{j}]", "event only")
            values.append(_behavioral(node, entry["days"], negation))
    filters = {"properties": {"type": "OR", "values": [{"type": "AND", "values": values}]}}
    return Desired("cohort", key, entry["name"], entry.get("description", ""), filters=filters)


def compile_definitions(raw: Any, source: str = "definitions") -> Definitions:
    """Check ``raw`` (a parsed definitions file) and compile it; ``DefinitionError`` if bad."""
    if not isinstance(raw, dict):
        raise _fail(source, "(top level)", "must be a JSON object")
    for name in raw:
        if name not in TOP_KEYS:
            raise _fail(source, name, f"unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
    if raw.get("version", 1) != 1:
        raise _fail(source, "version", "this otel-posthog reads version 1")
    settings = raw.get("settings", {})
    if not isinstance(settings, dict):
        raise _fail(source, "settings", "must be an object")
    variables = _map(raw, "variables", source)
    for name, var in variables.items():
        where = f"variables.{name}"
        var = _entry(var, source, where, {"name": str, "type": str}, {"default_value": object})
        if re.sub(r"[^a-z0-9]+", "_", var["name"].lower()).strip("_") != name:
            raise _fail(source, f"{where}.name", f"PostHog must derive the code name {name!r}")
        if var["type"] not in VARIABLE_TYPES:
            raise _fail(source, f"variables.{name}.type", f"must be one of {VARIABLE_TYPES}")
    ctx: dict[str, Any] = {"settings": settings, "variables": variables, "insights": {}}
    objects: list[Desired] = []
    dashboards = _map(raw, "dashboards", source)
    on_dashboards: dict[str, list[str]] = {}
    for key, value in dashboards.items():
        where = f"dashboards.{key}"
        entry = _entry(value, source, where, {"name": str, "tiles": list}, {"description": str})
        entry = substitute(entry, settings, source, where)
        for i, tile in enumerate(entry["tiles"]):
            if not isinstance(tile, str):
                raise _fail(source, f"{where}.tiles[{i}]", "must be an insight key")
            if key in on_dashboards.setdefault(tile, []):
                raise _fail(source, f"{where}.tiles[{i}]", f"{tile!r} is listed twice")
            on_dashboards[tile].append(key)
        objects.append(Desired("dashboard", key, entry["name"], entry.get("description", "")))
    insights = _map(raw, "insights", source)
    for key, value in insights.items():
        insight = _compile_insight(key, value, ctx, source)
        insight.dashboards = on_dashboards.get(key, [])
        ctx["insights"][key] = insight
        objects.append(insight)
    for tile in on_dashboards:
        if tile not in insights:
            where = f"dashboards.{on_dashboards[tile][0]}.tiles"
            raise _fail(source, where, f"no insight {tile!r}")
    for key, value in _map(raw, "alerts", source).items():
        objects.append(_compile_alert(key, value, ctx, source))
    for key, value in _map(raw, "cohorts", source).items():
        objects.append(_compile_cohort(key, value, ctx, source))
    for obj in objects:
        if len(obj.name) > 400 or not obj.name.strip():
            raise _fail(source, f"{obj.kind}s.{obj.key}.name", "must be 1 to 400 characters")
        limit = MAX_DESCRIPTION.get(obj.kind)
        room = limit - len(marker(obj.kind, obj.key, "0" * 12)) - 2 if limit else 0
        if limit and len(obj.description.strip()) > room:
            where = f"{obj.kind}s.{obj.key}.description"
            raise _fail(source, where, f"longer than {room} characters (PostHog keeps {limit})")
    return Definitions(source, {k: dict(v) for k, v in variables.items()}, objects)
