"""Compute a stored PostHog insight query over the sink's events, as PostHog would.

Handles ``InsightVizNode`` with ``TrendsQuery`` (math total, dau, unique_session, avg, sum,
min, max, median, p75/p90/p95/p99 on a property; property filters; a breakdown by event
property or HogQL; intervals; date ranges) and ``FunnelsQuery`` (ordered steps with property
filters, conversion window, by person or by ``funnelAggregateByHogQL``); ``DataTableNode``
with ``EventsQuery`` or ``HogQLQuery``; ``DataVisualizationNode`` with ``HogQLQuery`` (the
:mod:`.hogql` subset, variables included). Anything else is a :class:`NotComputed` result
with its reason, never a guess.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from . import hogql
from .hogql import NotComputed
from .store import EventStore

Result = dict[str, Any]
MAX_BUCKETS = 500
BREAKDOWN_LIMIT = 25
NULL_BREAKDOWN = "(none)"
OTHER_BREAKDOWN = "(other)"


# ---------------------------------------------------------------------------------------
# SQL functions the compiled queries use


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    try:
        out = float(str(value).strip())
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def quantile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (ClickHouse's ``quantileExact``-like)."""
    if not values:
        return None
    values = sorted(values)
    pos = p * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


class _Quantile:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.p = 0.5

    def step(self, value: Any, p: float) -> None:
        self.p = float(p)
        num = _num(value)
        if num is not None:
            self.values.append(num)

    def finalize(self) -> float | None:
        return quantile(self.values, self.p)


_LIKE_CACHE: dict[str, re.Pattern[str]] = {}


def _like(value: Any, pattern: Any) -> int | None:
    if value is None or pattern is None:
        return None
    pat = str(pattern)
    rx = _LIKE_CACHE.get(pat)
    if rx is None:
        parts = []
        for ch in pat:
            parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        rx = re.compile("".join(parts), re.DOTALL)
        if len(_LIKE_CACHE) < 1000:
            _LIKE_CACHE[pat] = rx
    return int(rx.fullmatch(str(value)) is not None)


def preparer(persons: Mapping[str, str]) -> Callable[[sqlite3.Connection], None]:
    """Registers the SQL functions; ``hq_person(distinct_id)`` is the person a distinct_id
    was merged into by ``$identify`` (``persons``), else the distinct_id itself."""

    def person(distinct_id: Any) -> Any:
        return persons.get(distinct_id, distinct_id) if isinstance(distinct_id, str) else None

    def prepare(conn: sqlite3.Connection) -> None:
        conn.create_function("hq_num", 1, _num, deterministic=True)
        conn.create_function("hq_like", 2, _like, deterministic=True)
        conn.create_function("hq_person", 1, person, deterministic=True)
        conn.create_aggregate("hq_quantile", 2, _Quantile)  # type: ignore[arg-type]

    return prepare


prepare = preparer({})
MERGES = (
    "SELECT distinct_id, json_extract(properties, '$.\"$anon_distinct_id\"') FROM events "
    "WHERE event = '$identify'"
)


def persons_of(store: EventStore) -> dict[str, str]:
    """anonymous distinct_id -> the identified one, as PostHog merges persons on $identify."""
    merged: dict[str, str] = {}
    for did, anon in store.select(MERGES, {}, prepare):
        if isinstance(anon, str) and anon and anon != did:
            merged[anon] = str(did)
    for anon in list(merged):  # follow chains (anon -> id -> later id), bounded
        seen = {anon}
        while merged[anon] in merged and merged[anon] not in seen and len(seen) < 10:
            seen.add(merged[anon])
            merged[anon] = merged[merged[anon]]
    return merged


@dataclass
class Ctx:
    """One computation: the store, its person merges, a fixed clock."""

    store: EventStore
    persons: Mapping[str, str]
    now: datetime

    def run(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        try:
            return self.store.select(sql, params, preparer(self.persons))
        except sqlite3.DatabaseError as exc:
            raise NotComputed(f"the local query failed: {exc}") from None


# ---------------------------------------------------------------------------------------
# dates

_RELATIVE = re.compile(r"^-?(\d+)([hdwmyqM])$")
_UNIT = {"h": "hour", "d": "day", "w": "week", "m": "month", "y": "year", "M": "minute"}


def parse_date(text: Any, now: datetime, end: bool = False) -> datetime | None:
    """PostHog's date strings: ``-7d``, ``-24h``, ``-1w``, ``-3m``, ``-1y``, ``dStart``,
    ``mStart``, ``yStart``, ``all``, or an ISO date/time. ``None`` means unbounded."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise NotComputed(f"date {text!r} is not computed locally")
    if text == "all":
        return None
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if text == "dStart":
        return midnight
    if text == "mStart":
        return midnight.replace(day=1)
    if text == "yStart":
        return midnight.replace(month=1, day=1)
    m = _RELATIVE.match(text)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        if unit == "q":
            return hogql.shift(now, -3 * n, "month")
        moved = hogql.shift(now, -n, _UNIT[unit])
        if unit in "dwmy" and not end:  # whole days, as PostHog's date filters
            moved = moved.replace(hour=0, minute=0, second=0, microsecond=0)
        return moved
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise NotComputed(f"date {text!r} is not computed locally") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
        if end and len(text) <= 10:
            parsed += timedelta(days=1) - timedelta(microseconds=1)
    return parsed


def truncate(dt: datetime, interval: str) -> datetime:
    if interval == "second":
        return dt.replace(microsecond=0)
    if interval == "minute":
        return dt.replace(second=0, microsecond=0)
    if interval == "hour":
        return dt.replace(minute=0, second=0, microsecond=0)
    day = dt.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "week":  # weeks start on Sunday, PostHog's default
        return day - timedelta(days=(day.weekday() + 1) % 7)
    if interval == "month":
        return day.replace(day=1)
    return day


def _bucket_sql(interval: str) -> str:
    fmt = {
        "second": "%Y-%m-%dT%H:%M:%S+00:00",
        "minute": "%Y-%m-%dT%H:%M:00+00:00",
        "hour": "%Y-%m-%dT%H:00:00+00:00",
        "day": "%Y-%m-%dT00:00:00+00:00",
        "month": "%Y-%m-01T00:00:00+00:00",
    }
    if interval == "week":
        return (
            "strftime('%Y-%m-%dT00:00:00+00:00', timestamp, "
            "'-' || strftime('%w', timestamp) || ' days')"
        )
    return f"strftime('{fmt[interval]}', timestamp)"


def _buckets(start: datetime, end: datetime, interval: str) -> list[datetime]:
    out, at = [], truncate(start, interval)
    while at <= end:
        out.append(at)
        if len(out) > MAX_BUCKETS:
            raise NotComputed(f"more than {MAX_BUCKETS} {interval}s in the date range")
        at = (
            hogql.shift(at, 1, "month")
            if interval == "month"
            else at + timedelta(**{hogql.INTERVAL_UNITS[interval]: 1})
        )
    return out


# ---------------------------------------------------------------------------------------
# property filters -> SQL


def _prop(compiler: hogql.Compiler, key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise NotComputed(f"property key {key!r} is not computed locally")
    return hogql.property_sql(compiler.bind(hogql.json_path([key])))


def property_filters(compiler: hogql.Compiler, filters: Any) -> list[str]:
    """SQL conditions (ANDed) for a list of property filters or a property group."""
    if not filters:
        return []
    if isinstance(filters, dict) and filters.get("type") in ("AND", "OR"):
        return [_group(compiler, filters)]
    if not isinstance(filters, list):
        raise NotComputed("properties must be a list or a property group")
    return [_one_filter(compiler, f) for f in filters]


def _group(compiler: hogql.Compiler, group: dict[str, Any]) -> str:
    parts = []
    for value in group.get("values") or []:
        if isinstance(value, dict) and value.get("type") in ("AND", "OR"):
            parts.append(_group(compiler, value))
        else:
            parts.append(_one_filter(compiler, value))
    if not parts:
        return "1"
    return "(" + f" {group['type']} ".join(parts) + ")"


def _one_filter(compiler: hogql.Compiler, f: Any) -> str:
    if not isinstance(f, dict):
        raise NotComputed("a property filter must be an object")
    kind = f.get("type", "event")
    if kind == "hogql":
        expr, _ = hogql.parse_expr(str(f.get("key", "")))
        return compiler.expr(expr, hogql.Scope())
    if kind != "event":
        raise NotComputed(f"{kind} property filters are not computed locally")
    column = _prop(compiler, f.get("key"))
    op = f.get("operator") or "exact"
    value = f.get("value")
    values = value if isinstance(value, list) else [value]
    if op in ("exact", "is_not", "in", "not_in"):
        neg = "NOT " if op in ("is_not", "not_in") else ""
        if not values:
            return "1"
        parts = []
        for v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                parts.append(f"hq_num({column}) = {compiler.bind(v)}")
            else:
                parts.append(f"CAST({column} AS TEXT) = {compiler.bind(_text(v))}")
        inner = " OR ".join(parts)
        if neg:
            return f"({column} IS NULL OR NOT ({inner}))"
        return f"({inner})"
    if op in ("gt", "gte", "lt", "lte"):
        sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        num = _num(values[0] if values else None)
        if num is None:
            raise NotComputed(f"operator {op} needs a number, not {value!r}")
        return f"(hq_num({column}) {sym} {compiler.bind(num)})"
    if op in ("icontains", "not_icontains"):
        needle = compiler.bind("%" + _text(values[0] if values else "").lower() + "%")
        test = f"hq_like(lower(CAST({column} AS TEXT)), {needle}) = 1"
        return f"({test})" if op == "icontains" else f"({column} IS NULL OR NOT ({test}))"
    if op == "is_set":
        return f"({column} IS NOT NULL)"
    if op == "is_not_set":
        return f"({column} IS NULL)"
    raise NotComputed(f"property operator {op!r} is not computed locally")


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def _range_sql(compiler: hogql.Compiler, start: datetime | None, end: datetime | None) -> list[str]:
    conds = []
    if start is not None:
        conds.append(f"timestamp >= {compiler.bind(start)}")
    if end is not None:
        conds.append(f"timestamp <= {compiler.bind(end)}")
    return conds


# ---------------------------------------------------------------------------------------
# entry point


def compute(
    store: EventStore,
    query: Any,
    variables: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Result:
    """The tile's result, or ``{"kind": "not_computed", "reason": ...}``."""
    try:
        ctx = Ctx(store, persons_of(store), now or datetime.now(timezone.utc))
        return _compute(ctx, query, variables or {})
    except NotComputed as exc:
        return {"kind": "not_computed", "reason": str(exc)}
    except sqlite3.DatabaseError as exc:
        return {"kind": "not_computed", "reason": f"the local query failed: {exc}"}
    except RecursionError:
        return {"kind": "not_computed", "reason": "the query is nested too deeply"}
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        # a stored query PostHog's schema would refuse (a user's edit): say so, never crash
        reason = f"the query has a value the sink does not understand ({type(exc).__name__})"
        return {"kind": "not_computed", "reason": reason}


def _compute(ctx: Ctx, query: Any, variables: Mapping[str, Any]) -> Result:
    if not isinstance(query, dict):
        raise NotComputed("the insight has no query")
    kind = query.get("kind")
    source = query.get("source")
    if kind in ("InsightVizNode", "DataTableNode", "DataVisualizationNode"):
        if not isinstance(source, dict):
            raise NotComputed(f"{kind} without a source")
        skind = source.get("kind")
        if kind == "InsightVizNode" and skind == "TrendsQuery":
            return trends(ctx, source)
        if kind == "InsightVizNode" and skind == "FunnelsQuery":
            return funnel(ctx, source)
        if kind == "DataTableNode" and skind == "EventsQuery":
            return events_query(ctx, source)
        if kind in ("DataTableNode", "DataVisualizationNode") and skind == "HogQLQuery":
            return hogql_query(ctx, source, variables, query)
        raise NotComputed(f"{kind} with {skind} is not computed locally")
    if kind in ("TrendsQuery", "FunnelsQuery", "HogQLQuery", "EventsQuery"):
        wrapper = "InsightVizNode" if kind in ("TrendsQuery", "FunnelsQuery") else "DataTableNode"
        return _compute(ctx, {"kind": wrapper, "source": query}, variables)
    raise NotComputed(f"{kind} is not computed locally")


# ---------------------------------------------------------------------------------------
# SQL queries and event tables


def hogql_query(
    ctx: Ctx, source: dict[str, Any], values: Mapping[str, Any], node: dict[str, Any]
) -> Result:
    text = source.get("query")
    if not isinstance(text, str):
        raise NotComputed("HogQLQuery without a query")
    compiler = hogql.Compiler(hogql.variable_resolver(source, values), ctx.now)
    sql, names = compiler.select(hogql.parse_select(text))
    rows = ctx.run(sql, compiler.params)
    display = node.get("display") if node.get("kind") == "DataVisualizationNode" else None
    return {"kind": "table", "columns": names, "rows": [list(r) for r in rows], "display": display}


def events_query(ctx: Ctx, source: dict[str, Any]) -> Result:
    now = ctx.now
    for unsupported in ("actionId", "personId", "source", "fixedProperties"):
        if source.get(unsupported):
            raise NotComputed(f"EventsQuery {unsupported} is not computed locally")
    select = source.get("select")
    if not isinstance(select, list) or not select:
        raise NotComputed("EventsQuery without select")
    compiler = hogql.Compiler(now=now)
    scope = hogql.Scope()
    cols, names, plain = [], [], []
    aggregated = False
    for i, item in enumerate(select):
        if item == "*":
            sql = (
                "json_object('uuid', uuid, 'event', event, 'distinct_id', distinct_id, "
                "'timestamp', timestamp, 'properties', json(properties))"
            )
            label = "*"
            expr: hogql.Expr | None = None
        else:
            expr, shown = hogql.parse_expr(str(item))
            sql = compiler.expr(expr, scope)
            label = shown or str(item)
        if expr is not None and hogql.has_aggregate(expr):
            aggregated = True
        else:
            plain.append(sql)
        cols.append(f"{sql} AS c{i}")
        names.append(label)
    where = []
    if source.get("event"):
        where.append(f"event = {compiler.bind(str(source['event']))}")
    if source.get("events"):
        events = [compiler.bind(str(e)) for e in source["events"]]
        where.append(f"event IN ({', '.join(events)})")
    # PostHog's defaults: the last 24 hours, and nothing from the future
    after = parse_date(source.get("after") or "-24h", now)
    before = parse_date(source.get("before"), now, end=True) or now + timedelta(seconds=5)
    where += _range_sql(compiler, after, before)
    where += property_filters(compiler, source.get("properties"))
    for cond in source.get("where") or []:
        expr, _ = hogql.parse_expr(str(cond))
        where.append(compiler.expr(expr, scope))
    sql = "SELECT " + ", ".join(cols) + " FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if aggregated and plain:
        sql += " GROUP BY " + ", ".join(plain)
    order = source.get("orderBy")
    if order:
        parts = []
        for entry in order:
            expr, desc = hogql.parse_order(str(entry))
            parts.append(compiler.order(expr, desc, scope))
        sql += " ORDER BY " + ", ".join(parts)
    elif not aggregated:
        sql += " ORDER BY timestamp DESC"
    limit = min(int(source.get("limit") or 100), hogql.MAX_ROWS)
    sql += f" LIMIT {limit} OFFSET {max(int(source.get('offset') or 0), 0)}"
    rows = ctx.run(sql, compiler.params)
    return {"kind": "table", "columns": names, "rows": [list(r) for r in rows], "display": None}


# ---------------------------------------------------------------------------------------
# trends

PROPERTY_MATH = {"avg", "sum", "min", "max", "median", "p75", "p90", "p95", "p99"}


def _math_sql(compiler: hogql.Compiler, node: dict[str, Any]) -> str:
    math_type = node.get("math") or "total"
    if math_type == "total":
        return "COUNT(*)"
    if math_type == "dau":
        return "COUNT(DISTINCT hq_person(distinct_id))"
    if math_type == "unique_session":
        return "COUNT(DISTINCT json_extract(properties, '$.\"$session_id\"'))"
    if math_type in PROPERTY_MATH:
        prop = node.get("math_property")
        if not prop:
            raise NotComputed(f"math {math_type} needs math_property")
        value = f"hq_num({_prop(compiler, prop)})"
        if math_type in ("avg", "sum", "min", "max"):
            return f"{math_type.upper()}({value})"
        level = 0.5 if math_type == "median" else int(math_type[1:]) / 100
        return f"hq_quantile({value}, {compiler.bind(level)})"
    if math_type == "hogql":
        expr, _ = hogql.parse_expr(str(node.get("math_hogql") or ""))
        if not hogql.has_aggregate(expr):
            raise NotComputed("math_hogql must aggregate")
        return compiler.expr(expr, hogql.Scope())
    raise NotComputed(f"math {math_type!r} is not computed locally")


def _breakdown(compiler: hogql.Compiler, source: dict[str, Any]) -> str | None:
    bf = source.get("breakdownFilter")
    if not bf:
        return None
    if not isinstance(bf, dict):
        raise NotComputed("breakdownFilter must be an object")
    specs: list[tuple[Any, str]] = []
    if bf.get("breakdowns"):
        specs = [(b.get("property"), b.get("type") or "event") for b in bf["breakdowns"]]
    elif bf.get("breakdown") is not None:
        specs = [(bf["breakdown"], bf.get("breakdown_type") or "event")]
    if not specs:
        return None
    if len(specs) > 1:
        raise NotComputed("more than one breakdown is not computed locally")
    prop, kind = specs[0]
    if isinstance(prop, list):
        if len(prop) != 1:
            raise NotComputed("more than one breakdown is not computed locally")
        prop = prop[0]
    if kind == "event":
        if prop == "$event" or prop == "event":
            return "event"
        return f"CAST({_prop(compiler, prop)} AS TEXT)"
    if kind == "hogql":
        expr, _ = hogql.parse_expr(str(prop))
        return f"CAST({compiler.expr(expr, hogql.Scope())} AS TEXT)"
    raise NotComputed(f"breakdown by {kind} is not computed locally")


def _series_label(node: dict[str, Any], i: int) -> str:
    name = node.get("custom_name") or node.get("name") or node.get("event") or "All events"
    math_type = node.get("math")
    if math_type and math_type != "total":
        prop = node.get("math_property")
        return f"{name} ({math_type}{' of ' + prop if prop else ''})"
    return str(name)


def trends(ctx: Ctx, source: dict[str, Any]) -> Result:
    now = ctx.now
    if source.get("aggregation_group_type_index") is not None:
        raise NotComputed("group aggregation is not computed locally")
    tf = source.get("trendsFilter") or {}
    if tf.get("formula") or tf.get("formulas") or tf.get("formulaNodes"):
        raise NotComputed("trend formulas are not computed locally")
    compare = source.get("compareFilter") or {}
    if compare.get("compare"):
        raise NotComputed("compare to previous period is not computed locally")
    series = source.get("series") or []
    if not series:
        raise NotComputed("TrendsQuery without series")
    interval = source.get("interval") or "day"
    if interval not in hogql.INTERVAL_UNITS or interval == "year":
        raise NotComputed(f"interval {interval!r} is not computed locally")
    date_range = source.get("dateRange") or {}
    start = parse_date(date_range.get("date_from") or "-7d", now)
    end = parse_date(date_range.get("date_to"), now, end=True) or now
    if start is None:
        start = _first_event(ctx) or now
    labels = _buckets(start, end, interval)
    index = {hogql.iso(b): i for i, b in enumerate(labels)}
    out_series = []
    for i, node in enumerate(series):
        if not isinstance(node, dict) or node.get("kind") != "EventsNode":
            raise NotComputed("only EventsNode series are computed locally")
        compiler = hogql.Compiler(now=now)
        agg = _math_sql(compiler, node)
        breakdown = _breakdown(compiler, source)
        where = _range_sql(compiler, start, end)
        if node.get("event") is not None:
            where.append(f"event = {compiler.bind(str(node['event']))}")
        where += property_filters(compiler, node.get("properties"))
        where += property_filters(compiler, source.get("properties"))
        cond = " WHERE " + " AND ".join(where)
        bd = breakdown or "NULL"
        # per bucket, then over the whole range (what a bar-value, pie or number shows)
        sql = f"SELECT {_bucket_sql(interval)}, {bd}, {agg} FROM events{cond} GROUP BY 1, 2"
        rows = ctx.run(sql, compiler.params)
        sql = f"SELECT {bd}, {agg} FROM events{cond} GROUP BY 1"
        totals = {r[0]: r[1] for r in ctx.run(sql, compiler.params)}
        per: dict[Any, list[Any]] = {}
        for bucket, value, metric in rows:
            data = per.setdefault(value, [0 if agg.startswith("COUNT") else None] * len(labels))
            if bucket in index:
                data[index[bucket]] = metric
        label = _series_label(node, i)
        keys = sorted(totals, key=lambda k: (-(_num(totals[k]) or 0), str(k)))
        limit = int((source.get("breakdownFilter") or {}).get("breakdown_limit") or BREAKDOWN_LIMIT)
        for key in keys[:limit] if breakdown else keys:
            entry: dict[str, Any] = {
                "label": label,
                "series": i,
                "data": per.get(key, [0] * len(labels)),
                "aggregated_value": totals[key],
            }
            if breakdown:
                entry["breakdown_value"] = NULL_BREAKDOWN if key is None else str(key)
                entry["label"] = entry["breakdown_value"]
            out_series.append(entry)
    return {
        "kind": "trends",
        "interval": interval,
        "display": tf.get("display") or "ActionsLineGraph",
        "labels": [hogql.iso(b) for b in labels],
        "series": out_series,
    }


def _first_event(ctx: Ctx) -> datetime | None:
    rows = ctx.run("SELECT MIN(timestamp) FROM events", {})
    if not rows or rows[0][0] is None:
        return None
    return datetime.fromisoformat(str(rows[0][0]))


# ---------------------------------------------------------------------------------------
# funnels

WINDOW_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


def funnel(ctx: Ctx, source: dict[str, Any]) -> Result:
    now = ctx.now
    ff = source.get("funnelsFilter") or {}
    if source.get("aggregation_group_type_index") is not None:
        raise NotComputed("group aggregation is not computed locally")
    if source.get("breakdownFilter") and (
        source["breakdownFilter"].get("breakdown") or source["breakdownFilter"].get("breakdowns")
    ):
        raise NotComputed("funnel breakdowns are not computed locally")
    if (ff.get("funnelVizType") or "steps") != "steps":
        raise NotComputed(f"funnel {ff.get('funnelVizType')} view is not computed locally")
    order = ff.get("funnelOrderType") or "ordered"
    if order != "ordered":
        raise NotComputed(f"{order} funnels are not computed locally")
    if ff.get("exclusions"):
        raise NotComputed("funnel exclusions are not computed locally")
    steps = source.get("series") or []
    if len(steps) < 2:
        raise NotComputed("a funnel needs two steps or more")
    unit = ff.get("funnelWindowIntervalUnit") or "day"
    if unit == "month":
        window = timedelta(days=30 * int(ff.get("funnelWindowInterval") or 14))
    elif unit in WINDOW_UNITS:
        window = timedelta(seconds=WINDOW_UNITS[unit] * int(ff.get("funnelWindowInterval") or 14))
    else:
        raise NotComputed(f"window unit {unit!r} is not computed locally")
    date_range = source.get("dateRange") or {}
    start = parse_date(date_range.get("date_from") or "-7d", now)
    end = parse_date(date_range.get("date_to"), now, end=True) or now

    compiler = hogql.Compiler(now=now)
    matches = []
    for node in steps:
        if not isinstance(node, dict) or node.get("kind") != "EventsNode":
            raise NotComputed("only EventsNode funnel steps are computed locally")
        if node.get("optionalInFunnel"):
            raise NotComputed("optional funnel steps are not computed locally")
        conds = property_filters(compiler, node.get("properties"))
        if node.get("event") is not None:
            conds.insert(0, f"event = {compiler.bind(str(node['event']))}")
        matches.append(" AND ".join(conds) if conds else "1")
    actor = "hq_person(distinct_id)"  # persons merged by $identify, as PostHog's
    by = ff.get("funnelAggregateByHogQL")
    if by and by not in ("person_id", "person.id"):
        expr, _ = hogql.parse_expr(str(by))
        actor = compiler.expr(expr, hogql.Scope())
    where = _range_sql(compiler, start, end)
    where += property_filters(compiler, source.get("properties"))
    flags = ", ".join(f"CASE WHEN {m} THEN 1 ELSE 0 END" for m in matches)
    sql = (
        f"SELECT {actor}, timestamp, {flags} FROM events WHERE "
        + " AND ".join(where + [f"{actor} IS NOT NULL", "(" + " OR ".join(matches) + ")"])
        + " ORDER BY 1, timestamp, rowid"
    )
    rows = ctx.run(sql, compiler.params)
    by_actor: dict[Any, list[tuple[datetime, tuple[int, ...]]]] = {}
    for row in rows:
        at = datetime.fromisoformat(str(row[1]))
        by_actor.setdefault(row[0], []).append((at, tuple(row[2:])))
    reached = [0] * len(steps)
    for events in by_actor.values():
        best = _furthest_step(events, len(steps), window)
        for k in range(best):
            reached[k] += 1
    out = []
    for k, node in enumerate(steps):
        name = node.get("custom_name") or node.get("name") or node.get("event") or "All events"
        first = reached[0]
        out.append(
            {
                "name": str(name),
                "count": reached[k],
                "conversion": (reached[k] / first * 100.0) if first else 0.0,
            }
        )
    return {"kind": "funnel", "steps": out, "aggregation": by or "person"}


def _furthest_step(
    events: list[tuple[datetime, tuple[int, ...]]], n: int, window: timedelta
) -> int:
    """How many steps one actor completed, in order, within the window of a first step.

    Each event advances the funnel by one step at most (PostHog's ordered funnel)."""
    best = 0
    for i, (start, flags) in enumerate(events):
        if not flags[0]:
            continue
        step = 1
        for at, later in events[i + 1 :]:
            if step == n or at - start > window:
                break
            if later[step]:
                step += 1
        best = max(best, step)
        if best == n:
            break
    return best
