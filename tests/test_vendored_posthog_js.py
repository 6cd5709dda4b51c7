"""The example page's vendored posthog-js is the npm release ``package.json`` pins, unchanged."""

from __future__ import annotations

import json

from otel_posthog.demo.fastapi_app import page
from tests.helpers import ROOT

NPM = ROOT / "node_modules" / "posthog-js"
VENDORED = ROOT / "otel_posthog" / "demo" / "fastapi_app" / "vendor" / "posthog-js"


def test_the_vendored_version_is_the_pinned_one():
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["posthog-js"]
    installed = json.loads((NPM / "package.json").read_text())["version"]
    assert (VENDORED / "VERSION").read_text().strip() == pinned == installed


def test_the_vendored_files_equal_the_npm_package():
    for name in page.VENDOR_FILES:
        assert (VENDORED / name).read_bytes() == (NPM / "dist" / name).read_bytes(), name
        assert page.vendored(name) == (NPM / "dist" / name).read_bytes(), name
    assert (VENDORED / "LICENSE").read_bytes() == (NPM / "LICENSE").read_bytes()
