"""The package's import graph: no circle, and a pure core below everything else.

Built from the source with ``ast``; every import counts, at module level, inside
functions (lazy imports) and under ``TYPE_CHECKING`` alike.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "otel_posthog"
# the layers, lowest first: a module may import its own layer and the ones below it only.
# A name is a module or a package (its modules); the package's __init__ is the top.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("otel_posthog.core", "otel_posthog._version")),
    ("compat", ("otel_posthog.compat", "otel_posthog.counters")),
    ("delivery", ("otel_posthog.delivery",)),
    ("sdk", ("otel_posthog.sdk", "otel_posthog.api", "otel_posthog.cors")),
    ("launcher", ("otel_posthog.launcher",)),
    ("receiver", ("otel_posthog.receiver",)),
    ("sink", ("otel_posthog.sink", "otel_posthog.dashboards")),
    ("cli", ("otel_posthog.cli", "otel_posthog.demo")),
]
# the lower layers that receiver and sink (out-of-process adapters) may use: never the SDK
OUT_OF_PROCESS = {
    "receiver": {"core", "compat", "delivery", "receiver"},
    "sink": {"core", "compat", "sink"},
}


def _layer(module: str) -> int | None:
    for rank, (_, names) in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return rank
    return None


def _core(known: dict[str, pathlib.Path]) -> set[str]:
    return {m for m in known if _layer(m) == 0}


# these import no opentelemetry package at all
NO_OTEL = {
    "otel_posthog.core.mapping",
    "otel_posthog.core.properties",
    "otel_posthog.core.spanview",
    "otel_posthog.core.settings",
}
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
            submodules = {f"{module}.{a.name}" for a in node.names} & set(known)
            out.update(submodules)  # ``from . import compat``: a submodule
            if len(submodules) < len(node.names):
                out.add(module)
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


def test_every_module_has_a_layer_and_imports_only_below_it():
    graph = _graph()
    names = [name for name, _ in LAYERS]
    for module, imported in sorted(graph.items()):
        if module == PACKAGE:
            continue
        rank = _layer(module)
        assert rank is not None, f"{module}: in no layer (tests/test_layers.py LAYERS)"
        allowed = OUT_OF_PROCESS.get(names[rank])
        for other in imported - {PACKAGE}:
            other_rank = _layer(other)
            assert other_rank is not None and other_rank <= rank, (module, other)
            if allowed is not None:
                assert names[other_rank] in allowed, (module, other)


def test_every_package_import_names_a_module_or_name_that_exists():
    """A relative import left behind by a move fails here, not only when its code runs
    (mypy is told to ignore missing imports)."""
    import importlib

    known = _modules()
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = name.split(".")
                drop = node.level - (1 if is_package else 0)
                base = base[: len(base) - drop] if drop else base
                module = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == PACKAGE:
                module = node.module or ""
            else:
                continue
            assert module in known, (name, node.lineno, module)
            source = known[module].read_text()
            for alias in node.names:
                spelled = (
                    f"{module}.{alias.name}" in known
                    or f"def {alias.name}(" in source
                    or f"class {alias.name}" in source
                    or f"{alias.name} =" in source
                    or f"{alias.name}:" in source
                    or f'"{alias.name}"' in source  # a lazily resolved public name
                    or f"import {alias.name}" in source
                    or f", {alias.name}" in source
                )
                assert spelled, (name, node.lineno, module, alias.name)
    assert importlib.import_module(PACKAGE)


def test_the_checker_sees_a_circle_and_lazy_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _graph()
    assert "otel_posthog.core.mapping" in graph["otel_posthog.sdk.pipeline"]
    assert (
        "otel_posthog.sdk.span_scrub" in graph["otel_posthog.sdk.pipeline"]
    )  # a function-level import


def test_the_core_imports_no_adapter_no_sdk_and_does_no_io():
    known = _modules()
    CORE = _core(known)
    core = sorted(CORE)
    assert {
        "otel_posthog.core.mapping",
        "otel_posthog.core.spanview",
        "otel_posthog.core.settings",
    } <= set(core)
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


# delivery sits on the core, the counters and compat; inside it, each part only on the ones below
DELIVERY_ORDER = ["poster", "spool", "before_send", "policy", "sender"]


def test_delivery_imports_no_adapter_and_its_parts_are_layered():
    known = _modules()
    delivery = {m for m in known if m.startswith(PACKAGE + ".delivery")}
    assert {f"{PACKAGE}.delivery.{m}" for m in DELIVERY_ORDER} | {PACKAGE + ".delivery"} == delivery
    below = _core(known) | {"otel_posthog.compat", "otel_posthog.counters"}
    for name in sorted(delivery):
        imported = _imports(name, known[name], known)
        inside = {m for m in imported if m.startswith(PACKAGE + ".") or m == PACKAGE}
        assert inside <= below | delivery, (name, inside - below - delivery)
        assert not [m for m in imported if m.startswith("opentelemetry.sdk")], name
    for i, part in enumerate(DELIVERY_ORDER):
        name = f"{PACKAGE}.delivery.{part}"
        higher = {f"{PACKAGE}.delivery.{m}" for m in DELIVERY_ORDER[i + 1 :]}
        imported = _imports(name, known[name], known)
        assert not imported & (higher | {PACKAGE + ".delivery"}), (name, imported & higher)


def _literals(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def _homes(needle: str, exact: bool = False) -> set[str]:
    """The modules whose code (not docstrings or comments) spells ``needle`` (or, exact,
    has a string constant that is ``needle``, any case)."""
    found = set()
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.lower()
                if id(node) not in docstrings and (text == needle if exact else needle in text):
                    found.add(name)
            elif isinstance(node, ast.Attribute) and node.attr == needle:
                found.add(name)
    return found


def test_each_rule_has_one_home():
    # environment variable names: SETTINGS_ENV only (validation messages look them up)
    settings = ROOT / PACKAGE / "core" / "settings.py"
    source = settings.read_text()
    validate = source[source.index("def _validate(") : source.index("def resolve_settings(")]
    assert "POSTHOG_" not in validate
    # the headers the bridge reads and writes, their limits and the CORS lists
    clients = {"otel_posthog.demo.command"}  # the demo's user agent sends them
    assert _homes("x-posthog-session-id") - clients == {"otel_posthog.core.headers"}
    assert _homes("traceresponse") == {"otel_posthog.core.headers"}
    # bearer tokens, bounded gunzip, exception events -> ExceptionInfo
    # (the scrubber's keyword and the receiver's 401 challenge are not parsing)
    assert _homes("bearer", exact=True) - {
        "otel_posthog.core.scrub",
        "otel_posthog.receiver.app",
    } == {"otel_posthog.core.headers"}
    assert _homes("decompressobj") == {"otel_posthog.core.bounded_gzip"}
    assert _homes("exception.type") == {"otel_posthog.core.spanview"}


def test_a_spool_that_cannot_open_fails_the_receiver_but_never_the_app(tmp_path):
    """One home for "sender with optional spool": the receiver's start fails naming the
    problem, the in-process bridge counts it and delivers from memory."""
    import pytest

    from otel_posthog.core.settings import resolve_settings
    from otel_posthog.counters import STATS
    from otel_posthog.delivery.spool import Spool, open_spool

    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    settings = resolve_settings(api_key="phc_x", spool_dir=str(blocked / "spool"))
    with pytest.raises(OSError):
        open_spool(settings, required=True)
    before = STATS.snapshot(gauges=False)["errors"]
    assert open_spool(settings, required=False) is None
    assert STATS.snapshot(gauges=False)["errors"] == before + 1
    assert open_spool(resolve_settings(api_key="phc_x"), required=True) is None
    fine = open_spool(resolve_settings(api_key="phc_x", spool_dir=str(tmp_path)), required=True)
    assert isinstance(fine, Spool)
    fine.close()


def test_shared_rules_behave_as_their_callers_did():
    import gzip

    import pytest

    from otel_posthog.core.bounded_gzip import GzipError, gunzip
    from otel_posthog.core.headers import bearer_token

    assert bearer_token("Bearer  abc ") == "abc" and bearer_token("bearer abc") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token("Bearer ") is None
    assert gunzip(gzip.compress(b"x" * 10), 10) == b"x" * 10
    for data, kind in (
        (gzip.compress(b"x" * 11), "too_large"),
        (gzip.compress(b"x" * 5)[:-8], "truncated"),
        (b"not gzip", "invalid"),
    ):
        with pytest.raises(GzipError) as err:
            gunzip(data, 10)
        assert err.value.kind == kind


def test_nothing_in_the_package_imports_the_demo_app():
    """The example app runs in its own processes (``otel-posthog demo``), never imported."""
    app = "otel_posthog.demo.fastapi_app"
    graph = _graph()
    assert app in graph and f"{app}.app" in graph  # the checker sees the app's modules
    importers = {
        name
        for name, imported in graph.items()
        if not name.startswith(app) and any(m == app or m.startswith(app + ".") for m in imported)
    }
    assert importers == set()


def test_the_architecture_page_names_every_package_and_top_level_module():
    page = (ROOT / "docs" / "architecture.md").read_text()
    tree = page[page.index("```\notel_posthog/") :]
    tree = tree[: tree.index("```", 4)]
    top = ROOT / PACKAGE
    for entry in sorted(top.iterdir()):
        if entry.is_dir() and (entry / "__init__.py").exists():
            assert f"{entry.name}/" in tree, entry.name
        elif entry.suffix == ".py" and entry.name not in {"__init__.py", "_version.py"}:
            assert entry.name in tree, entry.name
