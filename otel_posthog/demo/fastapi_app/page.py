"""The example's browser page: ``/`` with posthog-js and ``otel-posthog.js``.

Every file the page serves is package data, read through :mod:`importlib.resources`, so the
page works from an installed wheel: its own ``static/`` files, the browser helper, and a
vendored copy of posthog-js' ``module.full.js`` (``vendor/posthog-js/``, the version that
``package.json`` pins; ``tests/test_vendored_posthog_js.py`` keeps them equal).

Environment (all optional):

* ``EXAMPLE_PAGE_POSTHOG_KEY`` / ``EXAMPLE_PAGE_POSTHOG_HOST``: posthog-js' project key and
  ``api_host`` (default: ``POSTHOG_API_KEY`` / ``POSTHOG_HOST``, the bridge's own).
* ``EXAMPLE_API_BASE``: the API origin when it is not the page's (cross-origin setups).
* ``EXAMPLE_POSTHOG_OPTIONS``: JSON merged into ``posthog.init()``'s options.
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

HERE = resources.files("otel_posthog.demo.fastapi_app")
STATIC = HERE / "static"
POSTHOG_JS = HERE / "vendor" / "posthog-js"
# the posthog-js build that bundles the tracing-headers code (the lazy builds fetch it from
# api_host after init(), so the first API call would go out without the session headers)
VENDOR_FILES = ("module.full.js",)
PAGE_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
# regexes (searched in the full URL) that keep page assets out of the api_request events
PAGE_URLS = r"//[^/]+/(\?.*)?$,/static/,/vendor/,/otel-posthog\.js"


@functools.cache
def vendored(name: str) -> bytes:
    """One vendored posthog-js file (read once)."""
    return (POSTHOG_JS / name).read_bytes()


def page_config() -> dict[str, object]:
    """What the page's script needs, from the environment."""
    options = json.loads(os.environ.get("EXAMPLE_POSTHOG_OPTIONS") or "{}")
    return {
        "posthogKey": os.environ.get("EXAMPLE_PAGE_POSTHOG_KEY")
        or os.environ.get("POSTHOG_API_KEY", "phc_example"),
        "posthogHost": os.environ.get("EXAMPLE_PAGE_POSTHOG_HOST")
        or os.environ.get("POSTHOG_HOST", "http://127.0.0.1:8765"),
        "apiBase": os.environ.get("EXAMPLE_API_BASE", ""),
        "posthogOptions": options,
    }


def add_page(app: FastAPI) -> None:
    """Serve ``/``, the page's static files, ``/otel-posthog.js`` and posthog-js."""

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        config = json.dumps(page_config()).replace("<", "\\u003c")
        html = (STATIC / "index.html").read_text().replace("__CONFIG__", config)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in PAGE_FILES:
            raise HTTPException(404)
        body = (STATIC / name).read_bytes()
        return Response(body, media_type=PAGE_FILES[name], headers={"Cache-Control": "no-store"})

    @app.get("/otel-posthog.js", include_in_schema=False)
    async def helper() -> Response:
        text = (resources.files("otel_posthog") / "static" / "otel-posthog.js").read_text()
        return Response(text, media_type="text/javascript")

    @app.get("/vendor/posthog-js/{name}", include_in_schema=False)
    async def vendor(name: str) -> Response:
        if name not in VENDOR_FILES:
            raise HTTPException(404)
        return Response(vendored(name), media_type="text/javascript")
