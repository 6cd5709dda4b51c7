"""The code stays typed and formatted: ruff and mypy, as `make lint` runs them."""

from __future__ import annotations

import subprocess

from .helpers import ROOT, VENV_BIN

PATHS = ["otel_posthog", "tests", "examples", "benchmarks"]


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
