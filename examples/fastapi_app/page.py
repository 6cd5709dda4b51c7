"""The example's browser page: ``/`` with posthog-js (from npm) and ``otel-posthog.js``.

Environment (all optional):

* ``EXAMPLE_PAGE_POSTHOG_KEY`` / ``EXAMPLE_PAGE_POSTHOG_HOST``: posthog-js' project key and
  ``api_host`` (default: ``POSTHOG_API_KEY`` / ``POSTHOG_HOST``, the bridge's own).
* ``EXAMPLE_API_BASE``: the API origin when it is not the page's (cross-origin setups).
* ``EXAMPLE_POSTHOG_OPTIONS``: JSON merged into ``posthog.init()``'s options.
* ``EXAMPLE_NODE_MODULES``: where ``npm install`` put ``posthog-js`` (default: repo root).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

STATIC = Path(__file__).resolve().parent / "static"
REPO_ROOT = Path(__file__).resolve().parents[2]
# posthog-js builds that bundle the tracing-headers code (the lazy builds fetch it from
# api_host after init(), so the first API call would go out without the session headers)
VENDOR_FILES = ("module.full.js", "module.full.js.map", "array.full.js", "array.full.js.map")
PAGE_FILES = ("app.js", "style.css")
# regexes (searched in the full URL) that keep page assets out of the api_request events
PAGE_URLS = r"//[^/]+/(\?.*)?$,/static/,/vendor/,/otel-posthog\.js"


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
    """Serve ``/``, the page's static files, ``/otel-posthog.js`` and posthog-js' dist."""

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        config = json.dumps(page_config()).replace("<", "\\u003c")
        html = (STATIC / "index.html").read_text().replace("__CONFIG__", config)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        if name not in PAGE_FILES:
            raise HTTPException(404)
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    @app.get("/otel-posthog.js", include_in_schema=False)
    async def helper() -> Response:
        text = (resources.files("otel_posthog") / "static" / "otel-posthog.js").read_text()
        return Response(text, media_type="text/javascript")

    @app.get("/vendor/posthog-js/{name}", include_in_schema=False)
    async def vendor(name: str) -> FileResponse:
        root = Path(os.environ.get("EXAMPLE_NODE_MODULES") or REPO_ROOT / "node_modules")
        path = root / "posthog-js" / "dist" / name
        if name not in VENDOR_FILES or not path.is_file():
            raise HTTPException(404, "posthog-js not installed: run `npm install` (or `make`)")
        return FileResponse(path)
