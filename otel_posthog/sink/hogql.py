"""A small, safe HogQL subset for the local sink: parse, then compile to parameterised SQLite.

Supported: ``SELECT [DISTINCT] expr [AS alias], ... FROM events [WHERE] [GROUP BY] [HAVING]
[ORDER BY ... ASC|DESC] [LIMIT n [OFFSET m]]``; comparisons, ``AND``/``OR``/``NOT``, ``IN``
(a list or a one-column sub-select over events), ``LIKE``/``ILIKE``, ``IS [NOT] NULL``,
arithmetic, ``INTERVAL n unit``; the columns ``event``, ``distinct_id``, ``timestamp``,
``uuid``, ``properties.x`` (and ``person_id``/``person``: on the sink, the distinct_id a
``$identify`` merged it into, else the distinct_id; a JSON boolean property reads as
``'true'``/``'false'``, as in PostHog); placeholders ``{variables.name}`` and
``{filters}``; a whitelist of functions (:data:`FUNCTIONS`, :data:`AGGREGATES`). Anything
else raises :class:`NotComputed`.

No text of the query reaches SQL: literals, property names and variable values are bound
parameters, column and function names come from fixed tables, and aliases are generated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

MAX_ROWS = 1000
MAX_QUERY = 20000


class NotComputed(Exception):
    """A query or construct the sink does not compute (the tile says so, with this reason)."""


# ---------------------------------------------------------------------------------------
# tokens

KEYWORDS = {
    "select", "distinct", "from", "where", "group", "by", "having", "order", "asc", "desc",
    "limit", "offset", "and", "or", "not", "in", "as", "is", "null", "like", "ilike",
    "interval", "true", "false", "between", "nulls", "first", "last",
    "join", "union", "with", "prefetch", "sample", "array", "settings", "window", "over",
    "inner", "left", "right", "full", "cross", "qualify",
}  # fmt: skip
UNSUPPORTED = {"join", "union", "with", "prefetch", "sample", "array", "settings", "window"}
UNSUPPORTED |= {"over", "inner", "left", "right", "full", "cross", "qualify"}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*)
  | (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\d*\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^'\\]|\\.|'')*')
  | (?P<qid>"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`)
  | (?P<id>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<placeholder>\{[^{}]*\})
  | (?P<op><=|>=|!=|<>|==|\|\||[-+*/%=<>(),.\[\]])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"', "`": "`"}


@dataclass(frozen=True)
class Token:
    kind: str  # num, str, id, kw, placeholder, op, end
    value: str
    pos: int


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        elif c == "'" and body[i : i + 2] == "''":
            out.append("'")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_QUERY:
        raise NotComputed(f"query longer than {MAX_QUERY} characters")
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise NotComputed(f"HogQL syntax: unexpected {text[pos : pos + 10]!r} at {pos}")
        kind = m.lastgroup or ""
        raw = m.group()
        if kind == "ws":
            pass
        elif kind == "str":
            tokens.append(Token("str", _unescape(raw[1:-1]), pos))
        elif kind == "qid":
            tokens.append(Token("id", _unescape(raw[1:-1]), pos))
        elif kind == "id" and raw.lower() in KEYWORDS:
            tokens.append(Token("kw", raw.lower(), pos))
        else:
            tokens.append(Token(kind, raw, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------------------------------
# syntax tree


@dataclass(frozen=True)
class Const:
    value: Any


@dataclass(frozen=True)
class Col:
    chain: tuple[str, ...]


@dataclass(frozen=True)
class Placeholder:
    name: str


@dataclass(frozen=True)
class Star:
    pass


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    params: tuple[Expr, ...] | None = None  # quantile(0.95)(x): params (0.95,), args (x,)
    distinct: bool = False


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Unary:
    op: str  # not, neg
    operand: Expr


@dataclass(frozen=True)
class InExpr:
    operand: Expr
    items: tuple[Expr, ...] | Select
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    operand: Expr
    negated: bool = False


@dataclass(frozen=True)
class Interval:
    amount: Expr
    unit: str


@dataclass(frozen=True)
class Between:
    operand: Expr
    low: Expr
    high: Expr
    negated: bool = False


Expr = (
    Const | Col | Placeholder | Star | Call | BinOp | Unary | InExpr | IsNull | Interval | Between
)


@dataclass(frozen=True)
class Select:
    columns: tuple[tuple[Expr, str], ...]  # (expression, name shown)
    aliases: tuple[tuple[str, Expr], ...]
    table_alias: str | None = None
    where: Expr | None = None
    group_by: tuple[Expr, ...] = ()
    having: Expr | None = None
    order_by: tuple[tuple[Expr, bool], ...] = ()  # (expression, descending)
    limit: int | None = None
    offset: int | None = None
    distinct: bool = False


INTERVAL_UNITS = {
    "second": "seconds", "minute": "minutes", "hour": "hours", "day": "days", "week": "weeks",
    "month": "months", "year": "years",
}  # fmt: skip


class Parser:
    """Recursive descent over :func:`tokenize`'s tokens."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # helpers
    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def at(self, kind: str, value: str | None = None, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok.kind == kind and (value is None or tok.value == value)

    def accept(self, kind: str, value: str | None = None) -> Token | None:
        if self.at(kind, value):
            return self.next()
        return None

    def expect(self, kind: str, value: str | None = None) -> Token:
        tok = self.accept(kind, value)
        if tok is None:
            got = self.peek()
            want = value or kind
            raise NotComputed(f"HogQL syntax: expected {want!r} at {got.pos}, got {got.value!r}")
        return tok

    def done(self) -> None:
        if not self.at("end"):
            tok = self.peek()
            if tok.kind == "kw" and tok.value in UNSUPPORTED:
                raise NotComputed(f"{tok.value.upper()} is not computed locally")
            raise NotComputed(f"HogQL syntax: unexpected {tok.value!r} at {tok.pos}")

    # statements
    def select(self) -> Select:
        if self.at("kw", "with"):
            raise NotComputed("WITH is not computed locally")
        self.expect("kw", "select")
        distinct = bool(self.accept("kw", "distinct"))
        columns: list[tuple[Expr, str]] = []
        aliases: list[tuple[str, Expr]] = []
        while True:
            start = self.peek().pos
            expr = self.expr()
            end = self.peek().pos
            name = self.text[start:end].strip()
            if self.accept("kw", "as"):
                name = self.ident()
                aliases.append((name, expr))
            elif self.at("id"):
                name = self.ident()
                aliases.append((name, expr))
            columns.append((expr, name))
            if not self.accept("op", ","):
                break
        table_alias = None
        self.expect("kw", "from")
        table = self.ident()
        if table != "events":
            raise NotComputed(f"only the events table is computed locally, not {table!r}")
        if self.accept("kw", "as") or self.at("id"):
            table_alias = self.ident()
        sel: dict[str, Any] = {}
        if self.accept("kw", "where"):
            sel["where"] = self.expr()
        if self.accept("kw", "group"):
            self.expect("kw", "by")
            sel["group_by"] = tuple(self.expr_list())
        if self.accept("kw", "having"):
            sel["having"] = self.expr()
        if self.accept("kw", "order"):
            self.expect("kw", "by")
            sel["order_by"] = tuple(self.order_list())
        if self.accept("kw", "limit"):
            sel["limit"] = self.integer()
            if self.accept("kw", "offset"):
                sel["offset"] = self.integer()
            elif self.accept("op", ","):  # LIMIT offset, n
                sel["offset"], sel["limit"] = sel["limit"], self.integer()
        return Select(tuple(columns), tuple(aliases), table_alias, distinct=distinct, **sel)

    def integer(self) -> int:
        tok = self.expect("num")
        if not tok.value.isdigit():
            raise NotComputed(f"HogQL syntax: LIMIT/OFFSET takes an integer, not {tok.value!r}")
        return int(tok.value)

    def ident(self) -> str:
        tok = self.peek()
        if tok.kind == "id" or (tok.kind == "kw" and tok.value not in UNSUPPORTED):
            if tok.kind == "kw" and tok.value in {"from", "where", "group", "order", "limit"}:
                raise NotComputed(f"HogQL syntax: expected a name at {tok.pos}")
            self.i += 1
            return tok.value
        raise NotComputed(f"HogQL syntax: expected a name at {tok.pos}, got {tok.value!r}")

    def expr_list(self) -> list[Expr]:
        items = [self.expr()]
        while self.accept("op", ","):
            items.append(self.expr())
        return items

    def order_list(self) -> list[tuple[Expr, bool]]:
        items = []
        while True:
            expr = self.expr()
            desc = False
            if self.accept("kw", "desc"):
                desc = True
            else:
                self.accept("kw", "asc")
            if self.accept("kw", "nulls"):
                if not (self.accept("kw", "first") or self.accept("kw", "last")):
                    raise NotComputed("HogQL syntax: NULLS FIRST or NULLS LAST")
            items.append((expr, desc))
            if not self.accept("op", ","):
                return items

    # expressions, lowest precedence first
    def expr(self) -> Expr:
        left = self.and_expr()
        while self.accept("kw", "or"):
            left = BinOp("or", left, self.and_expr())
        return left

    def and_expr(self) -> Expr:
        left = self.not_expr()
        while self.accept("kw", "and"):
            left = BinOp("and", left, self.not_expr())
        return left

    def not_expr(self) -> Expr:
        if self.accept("kw", "not"):
            return Unary("not", self.not_expr())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.additive()
        negated = False
        if self.at("kw", "not") and self.peek(1).kind == "kw":
            if self.peek(1).value in ("in", "like", "ilike", "between"):
                self.next()
                negated = True
        tok = self.peek()
        if tok.kind == "op" and tok.value in ("=", "==", "!=", "<>", "<", "<=", ">", ">="):
            self.next()
            op = {"==": "=", "<>": "!="}.get(tok.value, tok.value)
            return BinOp(op, left, self.additive())
        if self.accept("kw", "in"):
            return InExpr(left, self.in_items(), negated)
        for word in ("like", "ilike"):
            if self.accept("kw", word):
                expr: Expr = BinOp(word, left, self.additive())
                return Unary("not", expr) if negated else expr
        if self.accept("kw", "between"):
            low = self.additive()
            self.expect("kw", "and")
            return Between(left, low, self.additive(), negated)
        if self.accept("kw", "is"):
            neg = bool(self.accept("kw", "not"))
            self.expect("kw", "null")
            return IsNull(left, neg)
        if negated:
            raise NotComputed(f"HogQL syntax: NOT at {tok.pos}")
        return left

    def in_items(self) -> tuple[Expr, ...] | Select:
        if self.accept("op", "["):
            items = self.expr_list() if not self.at("op", "]") else []
            self.expect("op", "]")
            return tuple(items)
        self.expect("op", "(")
        if self.at("kw", "select"):
            sub = self.select()
            self.expect("op", ")")
            return sub
        items = self.expr_list()
        self.expect("op", ")")
        return tuple(items)

    def additive(self) -> Expr:
        left = self.multiplicative()
        while self.peek().kind == "op" and self.peek().value in ("+", "-", "||"):
            op = self.next().value
            left = BinOp(op, left, self.multiplicative())
        return left

    def multiplicative(self) -> Expr:
        left = self.unary()
        while self.peek().kind == "op" and self.peek().value in ("*", "/", "%"):
            op = self.next().value
            left = BinOp(op, left, self.unary())
        return left

    def unary(self) -> Expr:
        if self.accept("op", "-"):
            return Unary("neg", self.unary())
        if self.accept("op", "+"):
            return self.unary()
        return self.postfix(self.primary())

    def postfix(self, expr: Expr) -> Expr:
        while self.accept("op", "["):
            key = self.expr()
            self.expect("op", "]")
            if not isinstance(expr, Col) or not isinstance(key, Const):
                raise NotComputed("only properties['name'] indexing is computed locally")
            expr = Col(expr.chain + (str(key.value),))
        return expr

    def primary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "num":
            self.next()
            text = tok.value
            return Const(float(text) if any(c in text for c in ".eE") else int(text))
        if tok.kind == "str":
            self.next()
            return Const(tok.value)
        if tok.kind == "placeholder":
            self.next()
            return Placeholder(tok.value[1:-1].strip())
        if tok.kind == "op" and tok.value == "*":
            self.next()
            return Star()
        if tok.kind == "op" and tok.value == "(":
            self.next()
            if self.at("kw", "select"):
                raise NotComputed("a sub-select is computed locally only after IN")
            inner = self.expr()
            if self.at("op", ","):
                raise NotComputed("tuples are not computed locally")
            self.expect("op", ")")
            return inner
        if tok.kind == "op" and tok.value == "[":
            raise NotComputed("arrays are computed locally only after IN")
        if tok.kind == "kw":
            if tok.value in ("true", "false"):
                self.next()
                return Const(tok.value == "true")
            if tok.value == "null":
                self.next()
                return Const(None)
            if tok.value == "interval":
                self.next()
                amount = self.unary()
                unit = self.ident().lower().rstrip("s")
                if unit not in INTERVAL_UNITS:
                    raise NotComputed(f"INTERVAL unit {unit!r} is not computed locally")
                return Interval(amount, unit)
            if tok.value in UNSUPPORTED:
                raise NotComputed(f"{tok.value.upper()} is not computed locally")
        if tok.kind in ("id", "kw"):
            name = self.ident()
            if self.at("op", "("):
                return self.call(name)
            chain = [name]
            while self.at("op", ".") and self.peek(1).kind in ("id", "kw", "num"):
                self.next()
                chain.append(self.next().value)
            return Col(tuple(chain))
        raise NotComputed(f"HogQL syntax: unexpected {tok.value!r} at {tok.pos}")

    def call(self, name: str) -> Call:
        self.expect("op", "(")
        distinct = bool(self.accept("kw", "distinct"))
        args: list[Expr] = [] if self.at("op", ")") else self.expr_list()
        self.expect("op", ")")
        if self.at("op", "("):  # parametric aggregate: quantile(0.95)(x)
            self.next()
            inner = [] if self.at("op", ")") else self.expr_list()
            self.expect("op", ")")
            return Call(name, tuple(inner), tuple(args), distinct)
        return Call(name, tuple(args), None, distinct)


def parse_select(text: str) -> Select:
    parser = Parser(text)
    sel = parser.select()
    parser.done()
    return sel


def parse_expr(text: str) -> tuple[Expr, str | None]:
    """One expression (an EventsQuery column or filter); returns it and its ``-- label``."""
    label = None
    m = re.search(r"--([^\n]*)$", text)
    if m and "'" not in text[m.start() :]:
        label = m.group(1).strip() or None
    parser = Parser(text)
    expr = parser.expr()
    parser.done()
    return expr, label


def parse_order(text: str) -> tuple[Expr, bool]:
    parser = Parser(text)
    items = parser.order_list()
    parser.done()
    if len(items) != 1:
        raise NotComputed("one expression per orderBy entry")
    return items[0]


# ---------------------------------------------------------------------------------------
# compilation to SQLite

COLUMNS = {
    "event": "event",
    "distinct_id": "distinct_id",
    "timestamp": "timestamp",
    "uuid": "uuid",
    "person_id": "hq_person(distinct_id)",
    "person": "hq_person(distinct_id)",
    "person_display_name": "hq_person(distinct_id)",
    "created_at": "received_at",
}
AGGREGATES = {"count", "countif", "sum", "avg", "min", "max", "quantile", "median", "uniq"}
AGGREGATES |= {"uniqexact", "any", "sumif", "avgif", "groupuniqarray"}
TIME_FORMATS = {
    "tostartofminute": "%Y-%m-%dT%H:%M:00+00:00",
    "tostartofhour": "%Y-%m-%dT%H:00:00+00:00",
    "tostartofday": "%Y-%m-%dT00:00:00+00:00",
    "tostartofmonth": "%Y-%m-01T00:00:00+00:00",
    "todate": "%Y-%m-%d",
}
NUMERIC = {"tofloat", "tofloat64", "tofloatornull", "tofloat64ornull", "tofloatorzero"}
INTEGER = {"toint", "toint64", "toint32", "tointornull", "toint64ornull", "tointorzero"}
FUNCTIONS = (
    NUMERIC | INTEGER | set(TIME_FORMATS) | {"tostartofweek", "now", "today", "tostring"}
) | {"lower", "upper", "length", "coalesce", "ifnull", "round", "concat", "if", "abs"}
FUNCTIONS |= {"isnull", "isnotnull", "floor", "ceil", "tounixtimestamp", "datediff"}
MAX_PLACEHOLDER_VALUE = 1000


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def shift(dt: datetime, amount: float, unit: str) -> datetime:
    """``dt`` moved by ``amount`` ``unit``s (calendar months and years)."""
    if unit in ("month", "year"):
        months = int(amount) * (12 if unit == "year" else 1)
        y, m = divmod(dt.month - 1 + months, 12)
        year, month = dt.year + y, m + 1
        days = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30]
        days += [31, 30, 31, 31, 30, 31, 30, 31]
        return dt.replace(year=year, month=month, day=min(dt.day, days[month - 1]))
    return dt + timedelta(**{INTERVAL_UNITS[unit]: amount})


@dataclass
class Scope:
    """What names mean while compiling one SELECT."""

    aliases: dict[str, Expr] = field(default_factory=dict)
    table_alias: str | None = None
    expanding: frozenset[str] = frozenset()


class Compiler:
    """Turns the syntax tree into SQL text over ``events`` plus named parameters.

    ``placeholder(name)`` resolves ``{variables.x}`` and friends to a Python value (bound as
    a parameter) or raises :class:`NotComputed`; ``now`` fixes the clock for one query.
    """

    def __init__(
        self,
        placeholder: Callable[[str], Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        self.params: dict[str, Any] = {}
        self.placeholder = placeholder or _no_placeholders
        self.now = now or datetime.now(timezone.utc)

    def bind(self, value: Any) -> str:
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, datetime):
            value = iso(value)
        elif value is not None and not isinstance(value, (int, float, str)):
            raise NotComputed(f"value of type {type(value).__name__} is not computed locally")
        name = f"p{len(self.params)}"
        self.params[name] = value
        return ":" + name

    # the SELECT statement
    def select(self, sel: Select, max_rows: int = MAX_ROWS) -> tuple[str, list[str]]:
        """SQL text and the column names shown."""
        scope = Scope(dict(sel.aliases), sel.table_alias)
        cols, names = [], []
        for i, (expr, name) in enumerate(sel.columns):
            if isinstance(expr, Star):
                raise NotComputed("SELECT * is not computed locally: name the columns")
            own = scope.expanding | {a for a, e in sel.aliases if e is expr}
            cols.append(f"{self.expr(expr, Scope(scope.aliases, scope.table_alias, own))} AS c{i}")
            names.append(name)
        sql = "SELECT " + ("DISTINCT " if sel.distinct else "") + ", ".join(cols) + " FROM events"
        if sel.where is not None:
            sql += " WHERE " + self.expr(sel.where, scope)
        if sel.group_by:
            sql += " GROUP BY " + ", ".join(self.expr(e, scope) for e in sel.group_by)
        if sel.having is not None:
            sql += " HAVING " + self.expr(sel.having, scope)
        if sel.order_by:
            sql += " ORDER BY " + ", ".join(self.order(e, d, scope) for e, d in sel.order_by)
        limit = min(sel.limit if sel.limit is not None else max_rows, max_rows)
        sql += f" LIMIT {int(limit)}"
        if sel.offset:
            sql += f" OFFSET {int(sel.offset)}"
        return sql, names

    def order(self, expr: Expr, desc: bool, scope: Scope) -> str:
        # ClickHouse sorts NULLs last both ways
        return f"{self.expr(expr, scope)} {'DESC' if desc else 'ASC'} NULLS LAST"

    # expressions
    def expr(self, e: Expr, scope: Scope) -> str:
        if isinstance(e, Const):
            return "NULL" if e.value is None else self.bind(e.value)
        if isinstance(e, Col):
            return self.column(e, scope)
        if isinstance(e, Placeholder):
            return self.placeholder_sql(e.name)
        if isinstance(e, Star):
            raise NotComputed("* is only computed locally in count(*)")
        if isinstance(e, Call):
            return self.call(e, scope)
        if isinstance(e, Unary):
            inner = self.expr(e.operand, scope)
            return f"(NOT {inner})" if e.op == "not" else f"(-{inner})"
        if isinstance(e, IsNull):
            return f"({self.expr(e.operand, scope)} IS {'NOT ' if e.negated else ''}NULL)"
        if isinstance(e, Between):
            x, lo, hi = (self.expr(v, scope) for v in (e.operand, e.low, e.high))
            if _is_number(e.low) and _is_number(e.high) and not _is_number(e.operand):
                x = f"hq_num({x})"
            return f"({x} {'NOT ' if e.negated else ''}BETWEEN {lo} AND {hi})"
        if isinstance(e, InExpr):
            return self.in_expr(e, scope)
        if isinstance(e, Interval):
            raise NotComputed("INTERVAL only computed locally added to or taken from a time")
        return self.binop(e, scope)

    def column(self, e: Col, scope: Scope) -> str:
        chain = e.chain
        if scope.table_alias and len(chain) > 1 and chain[0] == scope.table_alias:
            chain = chain[1:]
        if chain[0] == "events" and len(chain) > 1:
            chain = chain[1:]
        head = chain[0]
        if len(chain) == 1 and head in scope.aliases and head not in scope.expanding:
            return self.expr(
                scope.aliases[head],
                Scope(scope.aliases, scope.table_alias, scope.expanding | {head}),
            )
        if head == "properties":
            if len(chain) == 1:
                return "properties"
            return property_sql(self.bind(json_path(chain[1:])))
        if head == "$session_id" and len(chain) == 1:
            return property_sql(self.bind(json_path(chain)))
        if len(chain) == 1 and head in COLUMNS:
            return COLUMNS[head]
        if head in ("person", "pdi") and len(chain) > 1:
            raise NotComputed("person properties are not computed locally")
        raise NotComputed(f"unknown column {'.'.join(chain)!r}")

    def placeholder_sql(self, name: str) -> str:
        if name == "filters":
            return "1"  # dashboard filters are not applied locally
        value = self.placeholder(name)
        if isinstance(value, str) and len(value) > MAX_PLACEHOLDER_VALUE:
            raise NotComputed(f"value of {{{name}}} is too long")
        return "NULL" if value is None else self.bind(value)

    def in_expr(self, e: InExpr, scope: Scope) -> str:
        left = self.expr(e.operand, scope)
        neg = "NOT " if e.negated else ""
        if isinstance(e.items, Select):
            if len(e.items.columns) != 1:
                raise NotComputed("a sub-select after IN must have one column")
            inner, _ = self.select(e.items, max_rows=100000)
            return f"({left} {neg}IN ({inner}))"
        if not e.items:
            return "0" if not e.negated else "1"
        return f"({left} {neg}IN ({', '.join(self.expr(i, scope) for i in e.items)}))"

    def binop(self, e: BinOp, scope: Scope) -> str:
        op = e.op
        if op in ("and", "or"):
            return f"({self.expr(e.left, scope)} {op.upper()} {self.expr(e.right, scope)})"
        if op in ("+", "-") and isinstance(e.right, Interval):
            return self.time_shift(e.left, e.right, -1 if op == "-" else 1, scope)
        if op in ("like", "ilike"):
            left, right = self.expr(e.left, scope), self.expr(e.right, scope)
            if op == "like":
                return f"(hq_like({left}, {right}) = 1)"
            return f"(hq_like(lower({left}), lower({right})) = 1)"
        left, right = self.expr(e.left, scope), self.expr(e.right, scope)
        if op in ("=", "!=", "<", "<=", ">", ">="):
            # properties are JSON: a numeric literal compares numerically, like HogQL's toFloat
            if _is_number(e.right) and not _is_number(e.left):
                left = f"hq_num({left})"
            elif _is_number(e.left) and not _is_number(e.right):
                right = f"hq_num({right})"
            elif _is_bool(e.right) and is_property(left):
                right = self.bind("true" if e.right.value else "false")  # type: ignore[union-attr]
            elif _is_bool(e.left) and is_property(right):
                left = self.bind("true" if e.left.value else "false")  # type: ignore[union-attr]
            elif _is_text(e.right):
                left, right = self.against_text(left, str(e.right.value))  # type: ignore[union-attr]
            elif _is_text(e.left):
                right, left = self.against_text(right, str(e.left.value))  # type: ignore[union-attr]
            return f"({left} {op} {right})"
        if op == "/":
            return f"(CAST({left} AS REAL) / {right})"
        if op == "||":
            return f"({left} || {right})"
        if op in ("+", "-", "*", "%"):
            return f"(hq_num({left}) {op} hq_num({right}))"
        raise NotComputed(f"operator {op!r} is not computed locally")

    def against_text(self, other: str, text: str) -> tuple[str, str]:
        """``other`` and a string literal made comparable as in HogQL: a property compares as
        its text, a time with the literal read as a UTC time (``'2026-01-02 10:00'``)."""
        if is_property(other):
            return f"CAST({other} AS TEXT)", self.bind(text)
        if other == "timestamp" or (other.startswith("strftime(") and "+00:00" in other):
            try:
                when = datetime.fromisoformat(
                    text.strip().replace(" ", "T", 1).replace("Z", "+00:00")
                )
            except ValueError:
                raise NotComputed(f"{text!r} is not a time") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return other, self.bind(when)
        return other, self.bind(text)

    def time_shift(self, base: Expr, interval: Interval, sign: int, scope: Scope) -> str:
        amount = interval.amount
        if isinstance(amount, Unary) and amount.op == "neg" and isinstance(amount.operand, Const):
            amount, sign = amount.operand, -sign
        if not isinstance(amount, Const) or not isinstance(amount.value, (int, float)):
            raise NotComputed("INTERVAL takes a number")
        n = sign * amount.value
        if isinstance(base, Call) and base.name.lower() in ("now", "today") and not base.args:
            start = self.now if base.name.lower() == "now" else _midnight(self.now)
            return self.bind(shift(start, n, interval.unit))
        if interval.unit in ("month", "year"):
            n = int(n) * (12 if interval.unit == "year" else 1)
            modifier = f"{n:+d} months"
        else:
            seconds = n * {"second": 1, "minute": 60, "hour": 3600, "day": 86400}.get(
                interval.unit, 604800
            )
            modifier = f"{seconds:+f} seconds"
        inner = self.expr(base, scope)
        return f"strftime('%Y-%m-%dT%H:%M:%f+00:00', {inner}, {self.bind(modifier)})"

    def call(self, e: Call, scope: Scope) -> str:
        name = e.name.lower()
        if name in AGGREGATES:
            return self.aggregate(name, e, scope)
        if name not in FUNCTIONS:
            raise NotComputed(f"function {e.name}() is not computed locally")
        if e.params is not None:
            raise NotComputed(f"{e.name}(...)(...) is not computed locally")
        args = [self.expr(a, scope) for a in e.args]
        if name == "now":
            return self.bind(self.now)
        if name == "today":
            return self.bind(_midnight(self.now).date().isoformat())
        if not args:
            raise NotComputed(f"{e.name}() needs an argument")
        a = args[0]
        if name in NUMERIC:
            return f"hq_num({a})"
        if name in INTEGER:
            return f"CAST(hq_num({a}) AS INTEGER)"
        if name in TIME_FORMATS:
            return f"strftime('{TIME_FORMATS[name]}', {a})"  # a fixed format of ours
        if name == "tostartofweek":  # Sunday-based, ClickHouse's default mode 0
            return (
                f"strftime('%Y-%m-%dT00:00:00+00:00', {a}, '-' || strftime('%w', {a}) || ' days')"
            )
        if name == "tounixtimestamp":
            return f"CAST(strftime('%s', {a}) AS INTEGER)"
        if name == "tostring":
            return f"CAST({a} AS TEXT)"
        if name in ("lower", "upper", "length", "abs"):
            return f"{name}({a})"
        if name in ("floor", "ceil"):
            op = "<" if name == "floor" else ">"
            step = "-" if name == "floor" else "+"
            return (
                f"(CAST(hq_num({a}) AS INTEGER) {step} "
                f"(hq_num({a}) {op} CAST(hq_num({a}) AS INTEGER)))"
            )
        if name == "round":
            return f"round(hq_num({a}), {args[1] if len(args) > 1 else '0'})"
        if name in ("coalesce", "ifnull"):
            return f"coalesce({', '.join(args)})" if len(args) > 1 else a
        if name == "concat":
            return "(" + " || ".join(f"coalesce(CAST({x} AS TEXT), '')" for x in args) + ")"
        if name == "if":
            if len(args) != 3:
                raise NotComputed("if() takes three arguments")
            return f"(CASE WHEN {args[0]} THEN {args[1]} ELSE {args[2]} END)"
        if name == "isnull":
            return f"({a} IS NULL)"
        if name == "isnotnull":
            return f"({a} IS NOT NULL)"
        if name == "datediff":
            return self.date_diff(e, args)
        raise NotComputed(f"function {e.name}() is not computed locally")  # pragma: no cover

    def date_diff(self, e: Call, args: list[str]) -> str:
        unit = e.args[0]
        if len(args) != 3 or not isinstance(unit, Const) or unit.value not in INTERVAL_UNITS:
            raise NotComputed("dateDiff('unit', start, end) with a literal unit")
        seconds = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
        if unit.value not in seconds:
            raise NotComputed(f"dateDiff in {unit.value}s is not computed locally")
        span = f"((julianday({args[2]}) - julianday({args[1]})) * 86400.0)"
        return f"CAST({span} / {seconds[unit.value]} AS INTEGER)"

    def aggregate(self, name: str, e: Call, scope: Scope) -> str:
        if any(_has_aggregate(a) for a in e.args):
            raise NotComputed("nested aggregates are not computed locally")
        if name == "count":
            if not e.args or isinstance(e.args[0], Star):
                return "COUNT(*)"
            inner = self.expr(e.args[0], scope)
            return f"COUNT({'DISTINCT ' if e.distinct else ''}{inner})"
        args = [self.expr(a, scope) for a in e.args]
        if not args:
            raise NotComputed(f"{e.name}() needs an argument")
        a = args[0]
        if name in ("uniq", "uniqexact"):
            return f"COUNT(DISTINCT {a})"
        if name == "countif":
            return f"SUM(CASE WHEN {a} THEN 1 ELSE 0 END)"
        if name in ("sumif", "avgif"):
            if len(args) != 2:
                raise NotComputed(f"{e.name}(x, condition)")
            fn = "SUM" if name == "sumif" else "AVG"
            return f"{fn}(CASE WHEN {args[1]} THEN hq_num({a}) END)"
        if name in ("sum", "avg"):
            return f"{name.upper()}({'DISTINCT ' if e.distinct else ''}hq_num({a}))"
        if name in ("min", "max"):
            return f"{name.upper()}({a})"
        if name == "any":
            return f"MIN({a})"
        if name == "groupuniqarray":
            return f"json_group_array(DISTINCT {a})"
        if name == "median":
            return f"hq_quantile(hq_num({a}), 0.5)"
        # quantile(p)(x)
        params = e.params or ()
        if len(params) != 1 or not isinstance(params[0], Const):
            raise NotComputed("quantile(p)(x) with a literal p")
        p = params[0].value
        if not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise NotComputed("quantile level must be between 0 and 1")
        return f"hq_quantile(hq_num({a}), {self.bind(float(p))})"


def _is_number(e: Expr) -> bool:
    if isinstance(e, Unary) and e.op == "neg":
        return _is_number(e.operand)
    return (
        isinstance(e, Const) and isinstance(e.value, (int, float)) and not isinstance(e.value, bool)
    )


def _is_bool(e: Expr) -> bool:
    return isinstance(e, Const) and isinstance(e.value, bool)


def _is_text(e: Expr) -> bool:
    return isinstance(e, Const) and isinstance(e.value, str)


def _has_aggregate(e: Any) -> bool:
    if isinstance(e, Call):
        if e.name.lower() in AGGREGATES:
            return True
        return any(_has_aggregate(a) for a in e.args)
    if isinstance(e, BinOp):
        return _has_aggregate(e.left) or _has_aggregate(e.right)
    if isinstance(e, (Unary, IsNull)):
        return _has_aggregate(e.operand)
    if isinstance(e, Between):
        return any(_has_aggregate(x) for x in (e.operand, e.low, e.high))
    if isinstance(e, InExpr):
        return _has_aggregate(e.operand)
    return False


has_aggregate = _has_aggregate


def _midnight(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def _no_placeholders(name: str) -> Any:
    raise NotComputed(f"placeholder {{{name}}} has no value")


PROPERTY_SQL = "(CASE json_type(properties, "


def property_sql(path: str) -> str:
    """A property's value as PostHog reads it, for the bound JSON ``path``: a JSON boolean
    is the text ``'true'``/``'false'`` (SQLite's ``json_extract`` would give 1/0), anything
    else what ``json_extract`` gives."""
    return (
        f"{PROPERTY_SQL}{path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
        f"ELSE json_extract(properties, {path}) END)"
    )


def is_property(sql: str) -> bool:
    return sql.startswith(PROPERTY_SQL)


def json_path(keys: tuple[str, ...] | list[str]) -> str:
    """SQLite JSON path of nested property ``keys`` (bound as a parameter, never inlined)."""
    parts = []
    for key in keys:
        if '"' in key or "\\" in key:
            raise NotComputed(f"property name {key!r} is not computed locally")
        parts.append(f'."{key}"')
    return "$" + "".join(parts)


def variable_resolver(query: Mapping[str, Any], values: Mapping[str, Any]) -> Callable[[str], Any]:
    """``{variables.code_name}`` from ``values`` (already resolved by code_name), PostHog's
    "Variable x is missing from query" when the query's ``variables`` map lacks it."""
    declared = {
        str(v.get("code_name"))
        for v in (query.get("variables") or {}).values()
        if isinstance(v, dict)
    }

    def resolve(name: str) -> Any:
        if not name.startswith("variables."):
            raise NotComputed(f"placeholder {{{name}}} is not computed locally")
        code = name.split(".", 1)[1]
        if code not in declared:
            raise NotComputed(f"Variable {code} is missing from query")
        if code not in values or values[code] is None:
            raise NotComputed(f"pick a value for {{variables.{code}}}")
        value = values[code]
        if not isinstance(value, (str, int, float, bool)):
            raise NotComputed(f"variable {code} has a value the sink does not compute")
        return value

    return resolve
