"""The code stays typed and formatted: ruff and mypy, as `make lint` runs them."""

from __future__ import annotations

import subprocess

from .helpers import ROOT, VENV_BIN

PATHS = ["otel_posthog", "tests", "benchmarks"]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check_and_format():
    check = run(str(VENV_BIN / "ruff"), "check", *PATHS)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = run(str(VENV_BIN / "ruff"), "format", "--check", *PATHS)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy():
    result = run(str(VENV_BIN / "mypy"), "otel_posthog")
    assert result.returncode == 0, result.stdout + result.stderr


def _strict_paths() -> list[str]:
    """What pyproject.toml holds to mypy --strict's checks; `make lint`'s list agrees."""
    import re

    text = (ROOT / "pyproject.toml").read_text()
    block = text[text.index("[[tool.mypy.overrides]]") :]
    block = block[block.index("module = [") :]
    modules = re.findall(r'"(otel_posthog[a-z_.*]*)"', block[: block.index("]")])
    paths = [
        m.removesuffix(".*").replace(".", "/") + ("" if m.endswith(".*") else ".py")
        for m in modules
    ]
    make = re.search(r"^STRICT := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert make is not None
    assert make.group(1).split() == paths
    return paths


def test_mypy_strict_on_the_core():
    paths = _strict_paths()
    assert "otel_posthog/core" in paths  # the whole pure core
    files = [str(ROOT / path) for path in paths]
    result = run(str(VENV_BIN / "mypy"), "--strict", "--follow-imports=silent", *files)
    assert result.returncode == 0, result.stdout + result.stderr
