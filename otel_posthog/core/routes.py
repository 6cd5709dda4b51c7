"""One route-template form for every framework (pure: no I/O, no framework imports).

* :func:`endpoint_template`: what ``endpoint`` shows. Always starts with ``/``; a
  framework's placeholders stay as it writes them (Django/Flask ``<int:pk>``, Starlette
  ``{id}`` / ``{id:int}``); a regular expression (Django ``re_path``) becomes a readable
  template: named groups as ``{name}``, unnamed groups as ``{0}``, ``{1}``…, other
  pattern pieces as ``*``, anchors dropped.
* :func:`match_key`: what ``OTEL_POSTHOG_SLOW_REQUEST_THRESHOLDS`` and
  ``OTEL_POSTHOG_EXCLUDED_ROUTES`` compare: the endpoint template with every placeholder
  written ``{name}``, so ``users/<int:pk>``, ``/users/<pk>``, ``/users/{pk}`` and
  ``/users/{pk:int}`` name the same route.

Both run once per route (settings at resolve time, endpoints in the mapping's per-route
cache), never per request.
"""

from __future__ import annotations

import re

_ANGLE = re.compile(r"<(?:[^<>:]*:)?([^<>:]+)>")  # <int:pk>, <pk>, <path:rest>
_BRACE = re.compile(r"\{([^{}:]+)(?::[^{}]*)?\}")  # {pk}, {pk:int}
_QUANTIFIERS = "?*+"


def looks_like_regex(route: str) -> bool:
    """A Django ``re_path`` pattern (or a route built from one by ``include()``)."""
    return route.startswith("^") or route.endswith("$") or "(?P<" in route or "\\" in route


def endpoint_template(route: str) -> str:
    """The ``endpoint`` form of a framework's route template (see the module doc)."""
    if not route:
        return route
    if looks_like_regex(route):
        try:
            route = regex_template(route)
        except (IndexError, ValueError):
            pass  # an unusual pattern: shown as written, still with a leading "/"
    if not route.startswith("/"):
        route = "/" + route
    return route


def match_key(route: str) -> str:
    """The form settings and endpoints are compared in: placeholders as ``{name}``."""
    template = endpoint_template(route.strip())
    if "<" in template:
        template = _ANGLE.sub(r"{\1}", template)
    if ":" in template:
        template = _BRACE.sub(r"{\1}", template)
    return template


def _skip_quantifier(pattern: str, i: int) -> int:
    """The index after a quantifier (``?``, ``*``, ``+``, ``{m,n}``, lazy ``?``) at ``i``."""
    n = len(pattern)
    if i < n and pattern[i] in _QUANTIFIERS:
        i += 1
    elif i < n and pattern[i] == "{":
        end = pattern.find("}", i)
        if end != -1 and re.fullmatch(r"\{\d*,?\d*\}", pattern[i : end + 1]):
            i = end + 1
    if i < n and pattern[i] == "?":  # lazy
        i += 1
    return i


def _group_end(pattern: str, start: int) -> int:
    """The index after the ``)`` closing the group opened at ``start``."""
    depth = 0
    i = start
    in_class = False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced group")


def _class_end(pattern: str, start: int) -> int:
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


def regex_template(pattern: str, _counter: list[int] | None = None) -> str:
    """A regular expression route as a readable template (``^items/(?P<pk>\\d+)/$`` ->
    ``items/{pk}/``); raises ValueError/IndexError on a malformed pattern."""
    counter = _counter if _counter is not None else [0]
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1]
            if nxt in "AZzbB":
                i += 2
            elif nxt.isalnum():  # \d, \w, \s...: a pattern piece
                out.append("*")
                i = _skip_quantifier(pattern, i + 2)
            else:
                out.append(nxt)  # an escaped literal: \. \- \/
                i += 2
        elif c in "^$":
            i += 1
        elif c == "(":
            end = _group_end(pattern, i)
            body = pattern[i + 1 : end - 1]
            if body.startswith(("?P<", "?<")) and not body.startswith(("?<=", "?<!")):
                start = 3 if body.startswith("?P<") else 2
                out.append("{" + body[start : body.index(">")] + "}")
            elif body.startswith("?:"):
                out.append(regex_template(body[2:], counter))
            elif not body.startswith("?"):
                out.append(f"{{{counter[0]}}}")
                counter[0] += 1
            # lookarounds, flags and comments add nothing to the template
            i = _skip_quantifier(pattern, end)
        elif c == "[":
            out.append("*")
            i = _skip_quantifier(pattern, _class_end(pattern, i))
        elif c == ".":
            out.append("*")
            i = _skip_quantifier(pattern, i + 1)
        elif c in _QUANTIFIERS:
            i += 1  # a quantifier on a literal ("items/?"): the literal stays
        else:
            out.append(c)
            i += 1
    text = "".join(out)
    while "**" in text:
        text = text.replace("**", "*")
    return text
