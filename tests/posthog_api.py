"""A strict stand-in for PostHog's REST API (the subset ``otel-posthog dashboards`` uses).

As strict as the real one or stricter: the bearer key is required (401), scopes are checked
(403 naming the scope, as PostHog does), an unknown project is 404, unknown or legacy fields
are rejected (400), every insight query is validated against PostHog's query schema with the
independent ``jsonschema`` library, HogQL ``{variables.x}`` must be declared in the query's
``variables`` map with a known variable id, lists are paginated (small pages, ``next`` URLs),
hard deletes of soft-deleted kinds are refused (405), and stored queries are rewritten as
PostHog does (keys added) so a client comparing naively would see drift. Knobs for faults: a
429 once, a 502 after committing a create, and a hold after N writes (to kill a client then).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jsonschema
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otel_posthog.dashboards.schema import definitions

SCOPES = {
    "dashboards": "dashboard",
    "insights": "insight",
    "cohorts": "cohort",
    "alerts": "alert",
    "insight_variables": "insight_variable",
}
WRITABLE = {
    "dashboards": {"name", "description", "pinned", "tags", "restriction_level"}
    | {"breakdown_colors", "data_color_theme_id", "quick_filter_ids", "use_template"}
    | {"use_dashboard", "delete_insights", "filters", "variables", "tiles", "deleted"},
    "insights": {"name", "description", "query", "tags", "dashboards", "favorited", "saved"}
    | {"deleted"},
    "cohorts": {"name", "description", "filters", "query", "is_static", "cohort_type", "deleted"},
    "alerts": {"insight", "name", "subscribed_users", "threshold", "condition", "config"}
    | {"detector_config", "calculation_interval", "enabled", "skip_weekend", "snoozed_until"}
    | {"schedule_restriction"},
    "insight_variables": {"name", "type", "default_value", "values"},
}
SOFT_DELETED = {"dashboards", "insights", "cohorts"}
VARIABLE = re.compile(r"\{variables\.(\w+)\}")
USER = {"id": 7, "uuid": "0190f1c2-0000-7000-8000-000000000007", "email": "dev@example.com"}


class Invalid(Exception):
    def __init__(self, detail: str, attr: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.attr = detail, attr


@dataclass
class FakePostHog:
    """State and knobs; ``app`` is the Starlette application."""

    key: str = "phx_test_key_0123456789"
    project_id: str = "1"
    page_size: int = 3
    scopes: set[str] | None = None  # None: every scope
    rate_limit_once: str | None = None  # e.g. "GET dashboards": one 429 for the first such call
    error_once: str | None = None  # e.g. "GET insights": one 503 for the first such call
    lose_answer_once: str | None = None  # e.g. "POST insights": commit, then answer 502 once
    hold_after_writes: int | None = None  # the write after N is committed, then held
    next_origin: str | None = None  # e.g. "http://203.0.113.9:1": `next` URLs point elsewhere
    drop_tags: bool = False  # as PostHog without the paid tagging feature: tags silently dropped
    drop_descriptions: bool = False  # a PostHog that would drop descriptions too
    objects: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)
    requests: list[tuple[float, str, str, int]] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    next_id: int = 100

    def __post_init__(self) -> None:
        for name in SCOPES:
            self.objects.setdefault(name, {})
        self._validators: dict[str, Any] = {}
        base = "/api/projects/{project_id}"
        self.app = Starlette(
            routes=[
                Route("/api/users/@me/", self.me, methods=["GET"]),
                Route(base + "/{collection}/", self.collection, methods=["GET", "POST"]),
                Route(
                    base + "/{collection}/{object_id}/",
                    self.item,
                    methods=["GET", "PATCH", "DELETE"],
                ),
            ]
        )

    # -- helpers for tests ----------------------------------------------------------------
    def live(self, collection: str) -> list[dict[str, Any]]:
        return [o for o in self.objects[collection].values() if not o.get("deleted")]

    def seed(self, collection: str, **row: Any) -> dict[str, Any]:
        """An object made by someone else (no otel-posthog marker unless given)."""
        self.next_id += 1
        stored = {"id": self.next_id, "deleted": False, "tags": [], "description": "", **row}
        self.objects[collection][self.next_id] = stored
        return stored

    # -- checks ---------------------------------------------------------------------------
    def _validator(self, kind: str) -> Any:
        if kind not in self._validators:
            schema = {"$ref": f"#/definitions/{kind}", "definitions": definitions()}
            self._validators[kind] = jsonschema.Draft7Validator(schema)
        return self._validators[kind]

    def _check_schema(self, value: Any, kind: str, attr: str) -> None:
        if kind not in definitions():
            raise Invalid(f"unknown query kind {kind!r}", attr)
        errors = list(self._validator(kind).iter_errors(value))
        if errors:
            raise Invalid(f"{attr} is invalid: {errors[0].message}", attr)

    def _check_query(self, query: Any) -> None:
        if not isinstance(query, dict):
            raise Invalid("query must be an object", "query")
        kind = query.get("kind")
        if kind not in ("InsightVizNode", "DataTableNode", "DataVisualizationNode"):
            raise Invalid(f"unsupported insight query kind {kind!r}", "query")
        self._check_schema(query, kind, "query")
        source = query["source"]
        if source.get("kind") == "HogQLQuery":
            declared = source.get("variables") or {}
            known = {str(v["id"]): v for v in self.live("insight_variables")}
            for name in VARIABLE.findall(source["query"]):
                entries = [v for v in declared.values() if v.get("code_name") == name]
                if not entries:
                    raise Invalid(f"Variable {name} is missing from query", "query")
                for entry in entries:
                    var = known.get(str(entry["variableId"]))
                    if var is None or var["code_name"] != name:
                        raise Invalid(f"Variable {entry['variableId']} does not exist", "query")

    def _check(self, collection: str, body: Any, creating: bool) -> None:
        if not isinstance(body, dict):
            raise Invalid("the body must be a JSON object")
        for name in body:
            if name not in WRITABLE[collection]:
                raise Invalid(f"Unknown field {name!r}", name)
        if creating and collection != "insights" and not body.get("name"):
            raise Invalid("This field is required.", "name")
        if "tags" in body and not all(isinstance(t, str) for t in body["tags"]):
            raise Invalid("tags must be strings", "tags")
        if collection == "dashboards" and len(body.get("name") or "") > 400:
            raise Invalid("name too long", "name")
        if collection == "insights":
            if creating and "query" not in body:
                raise Invalid("an insight needs a query (legacy filters are not accepted)")
            if "query" in body:
                self._check_query(body["query"])
            if len(body.get("description") or "") > 400:
                raise Invalid("Ensure this field has no more than 400 characters.", "description")
            for dashboard in body.get("dashboards", []):
                if not isinstance(dashboard, int) or dashboard not in self.objects["dashboards"]:
                    raise Invalid(f"dashboard {dashboard!r} does not exist", "dashboards")
        if collection == "cohorts":
            if len(body.get("description") or "") > 1000:
                raise Invalid("Ensure this field has no more than 1000 characters.", "description")
            groups = (body.get("filters") or {}).get("properties", {})
            if "filters" in body and groups.get("type") not in ("AND", "OR"):
                raise Invalid("filters.properties must be a property group", "filters")
        if collection == "alerts":
            self._check_alert(body, creating)
        if collection == "insight_variables" and body.get("type") not in (
            None,
            "String",
            "Number",
            "Boolean",
            "List",
            "Date",
        ):
            raise Invalid("bad variable type", "type")

    def _check_alert(self, body: dict[str, Any], creating: bool) -> None:
        if creating:
            for name in ("insight", "subscribed_users", "threshold", "condition"):
                if name not in body:
                    raise Invalid("This field is required.", name)
        if "insight" in body and body["insight"] not in self.objects["insights"]:
            raise Invalid("insight does not exist", "insight")
        if "subscribed_users" in body and (
            not body["subscribed_users"] or any(u != USER["id"] for u in body["subscribed_users"])
        ):
            raise Invalid("subscribed_users must be users of this organization", "subscribed_users")
        if "threshold" in body:
            configuration = (body["threshold"] or {}).get("configuration")
            self._check_schema(configuration, "InsightThreshold", "threshold")
            if not configuration.get("bounds"):
                raise Invalid("a threshold needs bounds", "threshold")
        if "condition" in body:
            self._check_schema(body["condition"], "AlertCondition", "condition")
        config = body.get("config")
        if isinstance(config, dict) and config.get("type") == "TrendsAlertConfig":
            self._check_schema(config, "TrendsAlertConfig", "config")
        elif config is not None and (config or {}).get("type") != "HogQLAlertConfig":
            raise Invalid("unknown alert config type", "config")

    # -- what PostHog stores and answers ----------------------------------------------------
    @staticmethod
    def _rewrite_query(query: dict[str, Any]) -> dict[str, Any]:
        """As PostHog does: versions and defaults added to the stored query."""
        stored = copy.deepcopy(query)

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if "kind" in node:
                    node.setdefault("version", 2)
                if node.get("kind") in ("TrendsQuery", "FunnelsQuery"):
                    node.setdefault("filterTestAccounts", False)
                    node.setdefault("properties", [])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(stored)
        return stored

    def _store(self, collection: str, row: dict[str, Any], body: dict[str, Any]) -> None:
        for name, value in body.items():
            if name == "query":
                value = self._rewrite_query(value)
            if name == "tags":
                value = [] if self.drop_tags else sorted({t.strip().lower() for t in value})
            if name == "description" and self.drop_descriptions:
                value = ""
            row[name] = copy.deepcopy(value)
        if collection == "insight_variables":
            row["code_name"] = re.sub(r"[^a-z0-9]+", "_", row["name"].lower()).strip("_")
        if collection == "insights":
            row.setdefault("short_id", f"s{row['id']:07d}")
            row["last_modified_at"] = time.time()
        if collection == "alerts":
            row["state"] = "Not firing"

    def _render(self, collection: str, row: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(row)
        if collection == "alerts":
            insight = self.objects["insights"].get(row["insight"], {})
            out["insight"] = {"id": row["insight"], "short_id": insight.get("short_id")}
            out["subscribed_users"] = [dict(USER) for _ in row["subscribed_users"]]
            out["threshold"] = {"id": f"t{row['id']}", **row["threshold"]}
        return out

    # -- handlers ---------------------------------------------------------------------------
    async def _gate(self, request: Request, collection: str | None, write: bool) -> None:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.key}":
            raise _Answer(401, {"type": "authentication_error", "detail": "Invalid token."})
        if collection is None:
            return
        if request.path_params["project_id"] != self.project_id:
            raise _Answer(404, {"type": "invalid_request", "detail": "Not found."})
        if collection not in SCOPES:
            raise _Answer(404, {"detail": "Not found."})
        scope = f"{SCOPES[collection]}:{'write' if write else 'read'}"
        granted = self.scopes
        if (
            granted is not None
            and scope not in granted
            and (write or f"{SCOPES[collection]}:write" not in granted)
        ):
            detail = f"API key missing required scope '{scope}'"
            raise _Answer(
                403, {"type": "authentication_error", "code": "permission_denied", "detail": detail}
            )
        what = f"{request.method} {collection}"
        if self.error_once == what:
            self.error_once = None
            raise _Answer(503, {"detail": "Service unavailable"})
        if self.rate_limit_once == what:
            self.rate_limit_once = None
            raise _Answer(429, {"detail": "Request was throttled."}, {"Retry-After": "1"})

    async def _respond(self, request: Request, handler: Any) -> Response:
        collection = request.path_params.get("collection")
        try:
            await self._gate(request, collection, request.method != "GET")
            response = await handler()
        except _Answer as answer:
            response = JSONResponse(answer.body, answer.status, headers=answer.headers)
        except Invalid as exc:
            body = {"type": "validation_error", "code": "invalid_input", "detail": exc.detail}
            response = JSONResponse({**body, "attr": exc.attr}, 400)
        self.requests.append(
            (time.monotonic(), request.method, request.url.path, response.status_code)
        )
        return response

    async def _write_done(self, request: Request, collection: str) -> None:
        self.writes.append((request.method, collection))
        if self.hold_after_writes is not None and len(self.writes) > self.hold_after_writes:
            self.held.set()
            deadline = time.monotonic() + 60
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            raise _Answer(503, {"detail": "held"})
        if self.lose_answer_once == f"{request.method} {collection}":
            self.lose_answer_once = None
            raise _Answer(502, {"detail": "Bad gateway"})

    async def me(self, request: Request) -> Response:
        async def handler() -> Response:
            return JSONResponse(USER)

        return await self._respond(request, handler)

    async def collection(self, request: Request) -> Response:
        name = request.path_params["collection"]

        async def handler() -> Response:
            if request.method == "GET":
                return self._list(request, name)
            body = await _json(request)
            self._check(name, body, creating=True)
            self.next_id += 1
            row: dict[str, Any] = {"id": self.next_id, "deleted": False}
            if name in ("dashboards", "insights"):
                row["tags"] = []
            self._store(name, row, body)
            self.objects[name][row["id"]] = row
            await self._write_done(request, name)
            return JSONResponse(self._render(name, row), 201)

        return await self._respond(request, handler)

    def _list(self, request: Request, name: str) -> Response:
        rows = sorted(self.live(name), key=lambda r: r["id"])
        search = request.query_params.get("search", "").lower()
        if search:
            rows = [
                r
                for r in rows
                if search in " ".join([str(r.get("name")), str(r.get("description"))]).lower()
                or any(search in t for t in r.get("tags", []))
            ]
        limit = min(int(request.query_params.get("limit", self.page_size)), self.page_size)
        offset = int(request.query_params.get("offset", 0))
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        query = {**request.query_params, "limit": str(limit), "offset": str(offset + limit)}
        next_url = str(request.url.replace(query=urlencode(query)))
        if self.next_origin:
            next_url = self.next_origin + next_url.split(str(request.base_url).rstrip("/"), 1)[1]
        results = [self._render(name, r) for r in page]
        if name == "dashboards":
            for r in results:
                r.pop("tiles", None)
        return JSONResponse(
            {
                "count": len(rows),
                "next": next_url if more else None,
                "previous": None,
                "results": results,
            }
        )

    async def item(self, request: Request) -> Response:
        name = request.path_params["collection"]

        async def handler() -> Response:
            try:
                row = self.objects[name][int(request.path_params["object_id"])]
            except (KeyError, ValueError):
                raise _Answer(404, {"detail": "Not found."}) from None
            if request.method == "GET":
                return JSONResponse(self._render(name, row))
            if request.method == "DELETE":
                if name in SOFT_DELETED:
                    raise _Answer(405, {"detail": 'Method "DELETE" not allowed.'})
                del self.objects[name][row["id"]]
                await self._write_done(request, name)
                return Response(status_code=204)
            if row.get("deleted"):
                raise _Answer(404, {"detail": "Not found."})
            body = await _json(request)
            self._check(name, body, creating=False)
            self._store(name, row, body)
            await self._write_done(request, name)
            return JSONResponse(self._render(name, row))

        return await self._respond(request, handler)


class _Answer(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


async def _json(request: Request) -> Any:
    if request.headers.get("content-type", "").split(";")[0] != "application/json":
        raise Invalid("Unsupported media type; send application/json")
    try:
        return json.loads(await request.body())
    except ValueError:
        raise Invalid("JSON parse error") from None
