"""The package's import graph: no circle, and a pure core below everything else.

Built from the source with ``ast``; every import counts, at module level, inside
functions (lazy imports) and under ``TYPE_CHECKING`` alike.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "otel_posthog"
# the pure core: span view -> events, settings, the header and UUID rules, secret scrubbing
CORE = {
    "otel_posthog.mapping",
    "otel_posthog.spanview",
    "otel_posthog.settings",
    "otel_posthog.headers",
    "otel_posthog.scrub",
    "otel_posthog.routes",
    "otel_posthog.genai",
    "otel_posthog.identity_hosts",  # the destination rule; reads a span's kind (API enum)
    "otel_posthog._version",
}
# these import no opentelemetry package at all
NO_OTEL = {"otel_posthog.mapping", "otel_posthog.spanview", "otel_posthog.settings"}
# nothing that reaches the network, a disk, another process or the OpenTelemetry SDK
NO_IO = (
    "socket",
    "http.client",
    "http.server",
    "urllib.request",
    "requests",
    "sqlite3",
    "subprocess",
    "shutil",
)
NO_IO_CALLS = {"open", "exec", "eval", "__import__"}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, known: dict[str, pathlib.Path]) -> set[str]:
    """Every module ``name`` imports (absolute names; package-internal ones resolved)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                drop = node.level - (1 if is_package else 0)
                base = base[: len(base) - drop] if drop else base
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            for alias in node.names:  # ``from . import compat``: a submodule
                if f"{module}.{alias.name}" in known:
                    out.add(f"{module}.{alias.name}")
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {
        name: {m for m in _imports(name, path, known) if m in known and m != name}
        for name, path in known.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_circle():
    graph = _graph()
    # the package's __init__ resolves its public names lazily: only the top may import it
    graph = {k: {m for m in v if m != PACKAGE} for k, v in graph.items()}
    assert _cycles(graph) == []


def test_the_checker_sees_a_circle_and_lazy_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _graph()
    assert "otel_posthog.mapping" in graph["otel_posthog.pipeline"]
    assert "otel_posthog.spool" in graph["otel_posthog.pipeline"]  # a function-level import


def test_the_core_imports_no_adapter_no_sdk_and_does_no_io():
    known = _modules()
    core = sorted(CORE & set(known))
    assert {"otel_posthog.mapping", "otel_posthog.spanview", "otel_posthog.settings"} <= set(core)
    for name in core:
        imported = _imports(name, known[name], known)
        inside = {m for m in imported if m.startswith(PACKAGE + ".") or m == PACKAGE}
        assert inside <= CORE, (name, inside - CORE)
        outside = imported - inside
        otel = [m for m in outside if m.startswith("opentelemetry")]
        assert not [m for m in otel if m.startswith("opentelemetry.sdk")], (name, otel)
        assert not (otel and name in NO_OTEL), (name, otel)
        assert not [m for m in outside if m in NO_IO or m.split(".")[0] in NO_IO], name
        tree = ast.parse(known[name].read_text())
        calls = {
            n.func.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        }
        assert not calls & NO_IO_CALLS, (name, calls & NO_IO_CALLS)
