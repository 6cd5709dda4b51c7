"""The package is whole on its own: the wheel and the sdist carry every package data file,
and ``pip install 'otel-posthog[demo]'`` in a fresh venv outside the clone runs
``otel-posthog demo`` from an empty directory, with the example app, its page, posthog-js,
the local model server, the sink's web view and the dashboards.

Slow (a venv and an install from the package index, pip's cache makes it quick)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import requests

from otel_posthog.demo.fastapi_app import page
from tests.helpers import ROOT
from tests.test_demo import check_servers, kept_demo

pytestmark = pytest.mark.slow
PACKAGE = ROOT / "otel_posthog"
# what a build copies from the checkout: the package's tree and its build files
KEEP_OUT = (".*", "__pycache__", "node_modules", "build", "dist", "*.egg-info", "tests")


def package_data() -> set[str]:
    """Every file of the package in the checkout that is not Python source."""
    files = (path.relative_to(ROOT) for path in PACKAGE.rglob("*") if path.is_file())
    return {
        path.as_posix()
        for path in files
        if path.suffix not in (".py", ".pyc")
        and not any(part.startswith(".") or part == "__pycache__" for part in path.parts)
    }


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, and the wheel ``python -m build`` makes from it, from a copy of the tree
    (the build writes its egg-info and build/ beside the sources, not in the checkout)."""
    base = tmp_path_factory.mktemp("build")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*KEEP_OUT))
    out = base / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    # the SPDX license string: setuptools warns about none (the table form is deprecated)
    deprecations = [line for line in log.splitlines() if "deprecat" in line.lower()]
    assert not [line for line in deprecations if "licen" in line.lower()], deprecations
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_the_sdist_and_the_wheel_carry_the_package_data(dists: dict[str, Path]) -> None:
    data = package_data()
    for needed in (
        "otel_posthog/static/otel-posthog.js",
        "otel_posthog/dashboards/definitions.json",
        "otel_posthog/demo/fastapi_app/static/index.html",
        "otel_posthog/demo/fastapi_app/static/app.js",
        "otel_posthog/demo/fastapi_app/vendor/posthog-js/module.full.js",
        "otel_posthog/demo/fastapi_app/vendor/posthog-js/LICENSE",
    ):
        assert needed in data
    with tarfile.open(dists["sdist"]) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert data <= in_sdist, data - in_sdist
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        in_wheel = set(wheel.namelist())
    assert data <= in_wheel, data - in_wheel
    sources = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")}
    assert sources <= in_wheel and sources <= in_sdist, (sources - in_wheel) | (sources - in_sdist)
    licenses = {name.split("/licenses/", 1)[1] for name in in_wheel if "/licenses/" in name}
    assert {"LICENSE", "otel_posthog/demo/fastapi_app/vendor/posthog-js/LICENSE"} <= licenses


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a new user's shell: the venv's bin first, nothing of the clone."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "OTEL_", "POSTHOG_", "EXAMPLE_", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def test_the_wheel_runs_the_demo_outside_the_clone(dists: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=180)
    env = clean_env(venv)
    wheel = dists["wheel"]
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    pip += ["-c", str(ROOT / ".ci" / "test-constraints.txt")]
    proc = subprocess.run(
        [*pip, f"otel-posthog[demo] @ {wheel.as_uri()}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import otel_posthog; print(otel_posthog.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # not the clone's

    db = tmp_path / "events.db"
    argv = [str(venv / "bin" / "otel-posthog"), "demo", "--keep", "--db", str(db)]
    with kept_demo(argv, empty, env) as (out, sink_url, app_port):
        assert "model:" in out  # the local model server answered the chat send
        check_servers(sink_url, app_port)
        app = f"http://127.0.0.1:{app_port}"
        index = requests.get(app + "/", timeout=5)
        assert index.status_code == 200 and "/static/app.js" in index.text
        for path in ("/static/app.js", "/static/style.css", "/otel-posthog.js"):
            assert requests.get(app + path, timeout=5).status_code == 200, path
        posthog_js = requests.get(app + "/vendor/posthog-js/module.full.js", timeout=30)
        assert posthog_js.status_code == 200
        assert posthog_js.content == page.vendored("module.full.js")
    assert list(empty.iterdir()) == []  # nothing written where the user stood
