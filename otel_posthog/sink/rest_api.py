"""The subset of PostHog's REST API that ``otel-posthog dashboards apply`` uses, on the sink.

``/api/projects/1/{dashboards,insights,cohorts,alerts,insight_variables}/`` (list with
``limit``/``offset`` and ``next``, create, retrieve, ``PATCH``, soft delete by
``PATCH {"deleted": true}``; alerts are deleted with ``DELETE``), ``GET /api/projects/1/``
and ``GET /api/users/@me/``. Strict: a personal API key of the sink's own as the bearer,
loopback clients only, unknown or mistyped fields are a 400 naming the field, errors in
PostHog's shape (``type``, ``code``, ``detail``, ``attr``).
"""

from __future__ import annotations

import importlib
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.headers import bearer_token
from .dashboards_store import ObjectStore, now_iso

PROJECT_ID = 1
USER_ID = 1
PAGE_SIZE = 10
MAX_PAGE = 100
KEY_PREFIX = "phx_local_"
LOOPBACK = ("127.0.0.1", "::1")


def personal_key_for(db: str, given: str | None = None) -> str:
    """``given``, else the sink's personal API key kept next to ``db`` (made on first use)."""
    if given:
        return given
    if db == ":memory:":
        return KEY_PREFIX + secrets.token_hex(16)
    key_file = Path(db).resolve().parent / "personal_api_key"
    if key_file.exists():
        key = key_file.read_text().strip()
        if key:
            return key
    key = KEY_PREFIX + secrets.token_hex(16)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def apply_command(url: str, key: str) -> str:
    """The line the sink's banner prints."""
    return (
        f"POSTHOG_PERSONAL_API_KEY={key} otel-posthog dashboards apply "
        f"--host {url} --project-id {PROJECT_ID}"
    )


class ApiError(Exception):
    def __init__(
        self, status: int, detail: str, code: str = "invalid_input", attr: str | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.code, self.attr = status, detail, code, attr

    def response(self) -> Response:
        kind = {
            400: "validation_error",
            401: "authentication_error",
            403: "authentication_error",
        }.get(self.status, "invalid_request")
        body = {"type": kind, "code": self.code, "detail": self.detail, "attr": self.attr}
        return JSONResponse(body, self.status)


def _invalid(attr: str, detail: str) -> ApiError:
    return ApiError(400, detail, "invalid_input", attr)


# ---------------------------------------------------------------------------------------
# field validators: each returns the value to store or raises ApiError

Check = Callable[[str, Any], Any]


def text(max_len: int, nullable: bool = True) -> Check:
    def check(attr: str, v: Any) -> Any:
        if v is None and nullable:
            return None
        if not isinstance(v, str):
            raise _invalid(attr, "Not a valid string.")
        if len(v) > max_len:
            raise _invalid(attr, f"Ensure this field has no more than {max_len} characters.")
        return v

    return check


def boolean(attr: str, v: Any) -> Any:
    if not isinstance(v, bool):
        raise _invalid(attr, "Must be a valid boolean.")
    return v


def obj(nullable: bool = True) -> Check:
    def check(attr: str, v: Any) -> Any:
        if v is None and nullable:
            return None
        if not isinstance(v, dict):
            raise _invalid(
                attr, f'Expected a dictionary of items but got type "{type(v).__name__}".'
            )
        return v

    return check


def tags(attr: str, v: Any) -> Any:
    if not isinstance(v, list) or not all(isinstance(t, str) and t for t in v):
        raise _invalid(attr, "Expected a list of non-empty strings.")
    return list(dict.fromkeys(t.strip() for t in v))


def id_list(attr: str, v: Any) -> Any:
    if not isinstance(v, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in v
    ):
        raise _invalid(attr, "Expected a list of integer ids.")
    return v


def integer(nullable: bool = True) -> Check:
    def check(attr: str, v: Any) -> Any:
        if v is None and nullable:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            raise _invalid(attr, "A valid integer is required.")
        return v

    return check


def choice(*options: Any) -> Check:
    def check(attr: str, v: Any) -> Any:
        if v not in options:
            raise _invalid(attr, f'"{v}" is not a valid choice.')
        return v

    return check


def anything(attr: str, v: Any) -> Any:
    return v


def any_list(attr: str, v: Any) -> Any:
    if v is not None and not isinstance(v, list):
        raise _invalid(attr, f'Expected a list of items but got type "{type(v).__name__}".')
    return v


def query_node(attr: str, v: Any) -> Any:
    if v is None:
        return None
    if not isinstance(v, dict) or not isinstance(v.get("kind"), str):
        raise _invalid(attr, "query must be an object with a kind")
    if v["kind"] in ("InsightVizNode", "DataTableNode", "DataVisualizationNode"):
        source = v.get("source")
        if not isinstance(source, dict) or not isinstance(source.get("kind"), str):
            raise _invalid(attr, f"{v['kind']} needs a source with a kind")
    errors = schema_errors(v)
    if errors:
        raise _invalid(attr, f"query does not match PostHog's query schema: {errors[0]}")
    return v


def schema_errors(query: dict[str, Any]) -> list[str]:
    """Violations of PostHog's query schema, where the package ships it
    (``otel_posthog.dashboards.schema``) and knows the query's kind; else none."""
    try:
        schema = importlib.import_module("otel_posthog.dashboards.schema")
    except ImportError:
        return []
    if query.get("kind") not in schema.definitions():
        return []
    return list(schema.query_errors(query))


COMMON = {"_create_in_folder": text(1000), "deleted": boolean}
FIELDS: dict[str, dict[str, Check]] = {
    "dashboard": {
        **COMMON,
        "name": text(400),
        "description": text(10000),
        "pinned": boolean,
        "tags": tags,
        "restriction_level": choice(21, 37),
        "breakdown_colors": anything,
        "data_color_theme_id": integer(),
        "quick_filter_ids": any_list,
        "use_template": text(400),
        "use_dashboard": integer(),
        "delete_insights": boolean,
        "filters": obj(nullable=False),
        "variables": obj(),
        "tiles": any_list,
    },
    "insight": {
        **COMMON,
        "name": text(400),
        "derived_name": text(400),
        "description": text(400),
        "query": query_node,
        "tags": tags,
        "dashboards": id_list,
        "favorited": boolean,
        "saved": boolean,
        "filters": obj(),
        "order": integer(),
    },
    "cohort": {
        **COMMON,
        "name": text(400),
        "description": text(1000),
        "filters": obj(),
        "query": obj(),
        "is_static": boolean,
        "cohort_type": text(100),
        "groups": any_list,
    },
    "alert": {
        "insight": integer(nullable=False),
        "name": text(255),
        "subscribed_users": id_list,
        "threshold": obj(nullable=False),
        "condition": obj(nullable=False),
        "config": obj(),
        "detector_config": obj(),
        "calculation_interval": choice(
            "hourly", "daily", "weekly", "monthly", "real_time", "every_15_minutes"
        ),
        "enabled": boolean,
        "skip_weekend": boolean,
        "snoozed_until": text(100),
        "schedule_restriction": obj(),
    },
    "insight_variable": {
        "name": text(400, nullable=False),
        "type": choice("String", "Number", "Boolean", "List", "Date"),
        "default_value": anything,
        "values": any_list,
    },
}
REQUIRED = {
    "alert": ("insight", "subscribed_users", "threshold"),
    "insight_variable": ("name", "type"),
}
COLLECTIONS = {
    "dashboards": "dashboard",
    "insights": "insight",
    "cohorts": "cohort",
    "alerts": "alert",
    "insight_variables": "insight_variable",
}
TILE_FIELDS = {
    "id", "layouts", "color", "show_description", "transparent_background", "deleted", "text",
    "insight", "filters_overrides",
}  # fmt: skip


def check_tiles(tiles: Any) -> None:
    """A dashboard's ``tiles`` as PATCH takes them; checked whole before any is written."""
    for entry in tiles or []:
        if not isinstance(entry, dict):
            raise _invalid("tiles", "Each tile must be an object.")
        unknown = set(entry) - TILE_FIELDS
        if unknown:
            raise _invalid("tiles", f"Unknown tile field: {sorted(unknown)[0]!r}.")
        text_tile = entry.get("text")
        if text_tile is not None and (
            not isinstance(text_tile, dict) or not isinstance(text_tile.get("body"), str)
        ):
            raise _invalid("tiles", "A text tile needs a text body.")
        if text_tile is not None and len(text_tile["body"]) > 4000:
            raise _invalid("tiles", "Ensure the text body has no more than 4000 characters.")
        if "layouts" in entry and not isinstance(entry["layouts"], dict):
            raise _invalid("tiles", "layouts must be an object.")


def validate(kind: str, body: Any, creating: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "Expected a JSON object.", "parse_error")
    fields = FIELDS[kind]
    out = {}
    for key, value in body.items():
        check = fields.get(key)
        if check is None:
            raise _invalid(key, f"Unknown field: {key!r}.")
        out[key] = check(key, value)
    if creating:
        for key in REQUIRED.get(kind, ()):
            if out.get(key) in (None, [], ""):
                raise _invalid(key, "This field is required.")
    if kind == "dashboard":
        check_tiles(out.get("tiles"))
    return out


# ---------------------------------------------------------------------------------------
# representations


def user_basic() -> dict[str, Any]:
    return {
        "id": USER_ID,
        "uuid": "00000000-0000-4000-8000-000000000001",
        "distinct_id": "local-sink-user",
        "first_name": "Local",
        "last_name": "Sink",
        "email": "sink@localhost",
        "is_email_verified": True,
    }


class Api:
    """The handlers, over one :class:`ObjectStore`."""

    def __init__(self, objects: ObjectStore, personal_api_key: str) -> None:
        self.objects = objects
        self.key = personal_api_key
        self.writes = 0  # successful POST, PATCH, PUT and DELETE calls (a rerun makes none)

    # lookups used by the dashboards view too
    def tiles_of(self, dashboard_id: int) -> list[dict[str, Any]]:
        return [
            t
            for t in self.objects.all("tile")
            if t["dashboard"] == dashboard_id and not t.get("deleted")
        ]

    def live(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects.all(kind) if not o.get("deleted")]

    def insight_dashboards(self, insight_id: int) -> list[int]:
        live = {d["id"] for d in self.live("dashboard")}
        out = []
        for t in self.objects.all("tile"):
            if t.get("insight") == insight_id and not t.get("deleted") and t["dashboard"] in live:
                out.append(t["dashboard"])
        return sorted(set(out))

    def render(self, kind: str, o: dict[str, Any], detail: bool = True) -> dict[str, Any]:
        if kind == "insight":
            dashboards = self.insight_dashboards(o["id"])
            tiles = [
                {"id": t["id"], "dashboard_id": t["dashboard"], "deleted": False}
                for t in self.objects.all("tile")
                if t.get("insight") == o["id"] and not t.get("deleted")
                and t["dashboard"] in dashboards
            ]  # fmt: skip
            return {**o, "dashboards": dashboards, "dashboard_tiles": tiles}
        if kind == "dashboard":
            out = {k: v for k, v in o.items()}
            if detail:
                out["tiles"] = [self.render_tile(t) for t in self.tiles_of(o["id"])]
                out["tiles"] = [t for t in out["tiles"] if t is not None]
            return out
        if kind == "alert":
            insight = self.objects.get("insight", o["insight"]) or {}
            return {
                **o,
                "insight": {
                    "id": o["insight"],
                    "short_id": insight.get("short_id"),
                    "name": insight.get("name"),
                    "derived_name": insight.get("derived_name"),
                    "query": insight.get("query"),
                    "dashboards": self.insight_dashboards(o["insight"]),
                },
                "subscribed_users": [user_basic() for _ in o.get("subscribed_users", [])],
            }
        return o

    def render_tile(self, t: dict[str, Any]) -> dict[str, Any] | None:
        insight = None
        if t.get("insight") is not None:
            found = self.objects.get("insight", t["insight"])
            if found is None or found.get("deleted"):
                return None
            insight = self.render("insight", found)
        text_tile = t.get("text")
        return {
            "id": t["id"],
            "insight": insight,
            "text": text_tile,
            "layouts": t.get("layouts") or {},
            "color": t.get("color"),
            "show_description": t.get("show_description"),
            "transparent_background": t.get("transparent_background"),
            "deleted": False,
            "last_refresh": None,
            "is_cached": False,
        }

    # writes
    def create(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        stamp = now_iso()
        base: dict[str, Any] = {"created_at": stamp, "created_by": user_basic()}
        if kind == "dashboard":
            data.pop("use_template", None), data.pop("delete_insights", None)
            data.pop("_create_in_folder", None)
            tiles = data.pop("tiles", None)
            if data.pop("use_dashboard", None) is not None:
                raise _invalid("use_dashboard", "Duplicating dashboards is not supported locally.")
            base.update(
                name="", description="", pinned=False, tags=[], filters={}, variables={},
                restriction_level=21, effective_restriction_level=21,
                effective_privilege_level=37, deleted=False, creation_mode="default",
                breakdown_colors=[], data_color_theme_id=None, is_shared=False,
                last_accessed_at=None, team_id=PROJECT_ID, user_access_level="editor",
            )  # fmt: skip
            obj = self.objects.create(kind, {**base, **data})
            if tiles:
                self.patch_tiles(obj["id"], tiles)
            return obj
        if kind == "insight":
            dashboards = data.pop("dashboards", None)
            data.pop("_create_in_folder", None)
            self._check_dashboards(dashboards)
            base.update(
                name=None, derived_name=None, description="", query=None, tags=[],
                favorited=False, saved=True, deleted=False, filters={}, order=None,
                short_id=secrets.token_urlsafe(6)[:8], last_modified_at=stamp,
                last_modified_by=user_basic(), updated_at=stamp, result=None,
                last_refresh=None, is_sample=False, timezone="UTC",
                effective_restriction_level=21, effective_privilege_level=37,
                user_access_level="editor",
            )  # fmt: skip
            obj = self.objects.create(kind, {**base, **data})
            self._set_dashboards(obj["id"], dashboards or [])
            return obj
        if kind == "cohort":
            data.pop("_create_in_folder", None)
            base.update(
                name="", description="", filters={}, query=None, is_static=False,
                cohort_type=None, deleted=False, groups=[], count=None,
                is_calculating=False, last_calculation=None, errors_calculating=0,
            )  # fmt: skip
            return self.objects.create(kind, {**base, **data})
        if kind == "alert":
            self._check_alert(data)
            base.update(
                name="", config=None, detector_config=None, calculation_interval="daily",
                enabled=True, skip_weekend=False, snoozed_until=None, state="Not firing",
                last_notified_at=None, last_checked_at=None, next_check_at=None, checks=[],
                condition={"type": "absolute_value"}, schedule_restriction=None,
            )  # fmt: skip
            data["threshold"] = {
                "id": secrets.token_hex(8),
                "created_at": stamp,
                **data["threshold"],
            }
            return self.objects.create(kind, {**base, **data})
        # insight_variable
        name = data["name"]
        code = "".join(c if c.isalnum() else "_" for c in name.strip().lower()).strip("_")
        base.update(default_value=None, values=None, code_name=code)
        return self.objects.create(kind, {**base, **data})

    def update(self, kind: str, current: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        if kind == "dashboard":
            tiles = data.pop("tiles", None)
            for key in ("use_template", "use_dashboard", "delete_insights", "_create_in_folder"):
                data.pop(key, None)
            if tiles is not None:
                self.patch_tiles(current["id"], tiles)
        if kind == "insight":
            dashboards = data.pop("dashboards", None)
            data.pop("_create_in_folder", None)
            if dashboards is not None:
                self._check_dashboards(dashboards)
                self._set_dashboards(current["id"], dashboards)
            current["last_modified_at"] = current["updated_at"] = now_iso()
        if kind == "alert":
            self._check_alert({**current, **data})
            if "threshold" in data:
                data["threshold"] = {**current.get("threshold", {}), **data["threshold"]}
        if kind == "insight_variable" and "name" in data:
            data.pop("name")  # code_name stays what it was
        if kind == "cohort":
            data.pop("_create_in_folder", None)
        return self.objects.save(kind, {**current, **data})

    def _check_dashboards(self, ids: list[int] | None) -> None:
        live = {d["id"] for d in self.live("dashboard")}
        for i in ids or []:
            if i not in live:
                raise _invalid("dashboards", f'Invalid pk "{i}" - object does not exist.')

    def _set_dashboards(self, insight_id: int, ids: list[int]) -> None:
        """``dashboards`` replaces the insight's tiles: a tile per listed dashboard."""
        have = {}
        for t in self.objects.all("tile"):
            if t.get("insight") == insight_id and not t.get("deleted"):
                have[t["dashboard"]] = t
        for dashboard_id, tile in have.items():
            if dashboard_id not in ids:
                self.objects.save("tile", {**tile, "deleted": True})
        for dashboard_id in ids:
            if dashboard_id not in have:
                self.objects.create(
                    "tile", {"dashboard": dashboard_id, "insight": insight_id, "layouts": {}}
                )

    def patch_tiles(self, dashboard_id: int, tiles: list[Any]) -> None:
        """PostHog's rules: text tiles are created or updated; an existing tile's display
        fields change; an insight tile is never created here; unknown ids are skipped."""
        check_tiles(tiles)
        mine = {t["id"]: t for t in self.objects.all("tile") if t["dashboard"] == dashboard_id}
        for entry in tiles:
            text_tile = entry.get("text")
            display = {
                k: entry[k]
                for k in ("layouts", "color", "show_description", "transparent_background")
                if k in entry
            }
            if "deleted" in entry:
                display["deleted"] = bool(entry["deleted"])
            tile_id = entry.get("id")
            if tile_id is None:
                if text_tile is not None:
                    body = {"id": secrets.randbelow(10**9), "body": text_tile["body"]}
                    self.objects.create(
                        "tile", {"dashboard": dashboard_id, "insight": None, "text": body,
                                 "layouts": {}, **display},
                    )  # fmt: skip
                continue
            tile = mine.get(tile_id)
            if tile is None:
                continue
            if text_tile is not None and tile.get("text") is not None:
                display["text"] = {**tile["text"], "body": text_tile["body"]}
            self.objects.save("tile", {**tile, **display})

    def _check_alert(self, data: dict[str, Any]) -> None:
        insight = self.objects.get("insight", data.get("insight"))
        if insight is None or insight.get("deleted"):
            raise _invalid(
                "insight", f'Invalid pk "{data.get("insight")}" - object does not exist.'
            )
        if any(u != USER_ID for u in data.get("subscribed_users") or []):
            raise _invalid("subscribed_users", "Invalid pk - object does not exist.")
        conf = (data.get("threshold") or {}).get("configuration")
        if not isinstance(conf, dict) or conf.get("type") not in ("absolute", "percentage"):
            raise _invalid(
                "threshold", "threshold.configuration.type must be absolute or percentage"
            )
        bounds = conf.get("bounds") or {}
        if not isinstance(bounds, dict) or set(bounds) - {"lower", "upper"}:
            raise _invalid("threshold", "threshold.configuration.bounds takes lower and upper")
        if all(bounds.get(k) is None for k in ("lower", "upper")):
            raise _invalid("threshold", "Alert threshold needs a lower or an upper bound")
        condition = data.get("condition") or {}
        if condition.get("type") not in (
            "absolute_value",
            "relative_increase",
            "relative_decrease",
        ):
            raise _invalid("condition", "condition.type is not a valid choice")
        config = data.get("config") or {}
        if config and config.get("type") not in (
            "TrendsAlertConfig", "FunnelsAlertConfig", "HogQLAlertConfig"
        ):  # fmt: skip
            raise _invalid("config", "config.type is not a valid choice")
        source = (insight.get("query") or {}).get("source") or {}
        if config.get("type") == "TrendsAlertConfig":
            if source.get("kind") != "TrendsQuery":
                raise _invalid("config", "TrendsAlertConfig needs a trends insight")
            index = config.get("series_index", 0)
            if not isinstance(index, int) or not 0 <= index < len(source.get("series") or []):
                raise _invalid("config", "series_index is out of range")


# ---------------------------------------------------------------------------------------
# HTTP


def _search(o: dict[str, Any], needle: str) -> bool:
    needle = needle.lower()
    hay = [str(o.get("name") or ""), str(o.get("description") or "")]
    hay += [str(t) for t in o.get("tags") or []]
    return any(needle in h.lower() for h in hay)


def _json_list(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return [text]
    return value if isinstance(value, list) else [value]


def _filter(kind: str, items: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    q = request.query_params
    if q.get("search"):
        items = [o for o in items if _search(o, q["search"])]
    if kind in ("dashboard", "insight") and q.get("tags"):
        wanted = {str(t) for t in _json_list(q["tags"])}
        items = [o for o in items if wanted & set(o.get("tags") or [])]
    if kind == "insight" and q.get("short_id"):
        items = [o for o in items if o.get("short_id") == q["short_id"]]
    if kind == "insight" and q.get("dashboards"):
        wanted_ids = {int(i) for i in _json_list(q["dashboards"]) if str(i).isdigit()}
        items = [o for o in items if wanted_ids <= set(o.get("dashboards") or [])]
    if kind == "alert" and (q.get("insight_id") or q.get("insight")):
        wanted_id = q.get("insight_id") or q.get("insight")
        items = [o for o in items if str(o["insight"]["id"]) == wanted_id]
    return items


def routes(objects: ObjectStore, personal_api_key: str) -> tuple[list[Route], Api]:
    """The REST routes and the :class:`Api` behind them (the dashboards view reads it)."""
    api = Api(objects, personal_api_key)

    def authorise(request: Request) -> None:
        client = request.client.host if request.client else ""
        if client not in LOOPBACK:
            raise ApiError(
                403, "The sink's API answers loopback clients only.", "permission_denied"
            )
        header = request.headers.get("authorization", "")
        if not header:
            raise ApiError(
                401, "Authentication credentials were not provided.", "not_authenticated"
            )
        token = bearer_token(header)
        if token is None or not secrets.compare_digest(token.encode(), api.key.encode()):
            raise ApiError(
                401,
                "Personal API key found in request Authorization header is invalid.",
                "authentication_failed",
            )

    def project(request: Request) -> None:
        pid = request.path_params.get("project_id")
        if pid not in (str(PROJECT_ID), "@current"):
            raise ApiError(404, "Not found.", "not_found")

    async def body(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > 5 * 1024 * 1024:
            raise ApiError(413, "Request body too large.", "too_large")
        try:
            return json.loads(raw or b"{}")
        except ValueError as exc:
            raise ApiError(400, f"JSON parse error - {exc}", "parse_error") from None

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            try:
                authorise(request)
                result: Response = await handler(request)
                if request.method != "GET" and result.status_code < 300:
                    api.writes += 1
                return result
            except ApiError as exc:
                return exc.response()

        return run

    async def me(request: Request) -> Response:
        user = user_basic()
        team = {"id": PROJECT_ID, "project_id": PROJECT_ID, "name": "Local sink"}
        org = {"id": "00000000-0000-4000-8000-000000000002", "name": "Local sink"}
        return JSONResponse({**user, "team": team, "organization": org, "organizations": [org]})

    async def project_detail(request: Request) -> Response:
        project(request)
        return JSONResponse(
            {"id": PROJECT_ID, "name": "Local sink", "organization": "local", "timezone": "UTC"}
        )

    def kind_of(request: Request) -> str:
        project(request)
        kind = COLLECTIONS.get(request.path_params["collection"])
        if kind is None:
            raise ApiError(404, "Not found.", "not_found")
        return kind

    async def collection(request: Request) -> Response:
        kind = kind_of(request)
        if request.method == "POST":
            data = validate(kind, await body(request), creating=True)
            created = api.create(kind, data)
            return JSONResponse(api.render(kind, created), 201)
        items = [api.render(kind, o, detail=False) for o in api.live(kind)]
        items = _filter(kind, items, request)
        try:
            limit = min(max(int(request.query_params.get("limit") or PAGE_SIZE), 1), MAX_PAGE)
            offset = max(int(request.query_params.get("offset") or 0), 0)
        except ValueError:
            raise ApiError(400, "limit and offset must be integers.", "invalid_input") from None
        page = items[offset : offset + limit]
        url = request.url
        nxt = (
            str(url.include_query_params(limit=limit, offset=offset + limit))
            if offset + limit < len(items)
            else None
        )
        prev = (
            str(url.include_query_params(limit=limit, offset=max(offset - limit, 0)))
            if offset > 0
            else None
        )
        return JSONResponse({"count": len(items), "next": nxt, "previous": prev, "results": page})

    async def detail(request: Request) -> Response:
        kind = kind_of(request)
        raw_id = request.path_params["object_id"]
        current = api.objects.get(kind, raw_id)
        if current is None and kind == "insight":
            found = [o for o in api.objects.all(kind) if o.get("short_id") == raw_id]
            current = found[0] if found else None
        if current is None:
            raise ApiError(404, "Not found.", "not_found")
        if request.method == "GET":
            if current.get("deleted"):
                raise ApiError(404, "Not found.", "not_found")
            return JSONResponse(api.render(kind, current))
        if request.method == "DELETE":
            if kind not in ("alert", "insight_variable"):
                raise ApiError(405, 'Method "DELETE" not allowed.', "method_not_allowed")
            api.objects.delete(kind, current["id"])
            return Response(status_code=204)
        data = validate(kind, await body(request), creating=False)
        if request.method == "PUT":
            data = validate(kind, {**_writable(kind, current), **data}, creating=True)
        updated = api.update(kind, current, data)
        return JSONResponse(api.render(kind, updated))

    prefix = "/api/projects/{project_id}"
    table = [
        Route("/api/users/@me/", guarded(me), methods=["GET"]),
        Route(prefix + "/", guarded(project_detail), methods=["GET"]),
        Route(prefix + "/{collection}/", guarded(collection), methods=["GET", "POST"]),
        Route(
            prefix + "/{collection}/{object_id}/",
            guarded(detail),
            methods=["GET", "PATCH", "PUT", "DELETE"],
        ),
    ]
    return table, api


def _writable(kind: str, current: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in current.items() if k in FIELDS[kind] and k != "tiles"}
