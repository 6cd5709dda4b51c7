"""Plan, apply and destroy: the definitions against what a PostHog project holds.

Identity is a marker naming the definition key: dashboards and insights carry it in their tags
and their description, cohorts in their description, alerts in their name (and their insight
must be ours). The description marker also holds a hash of what we sent, so PostHog's own
rewriting of stored queries (added keys, versions) is never mistaken for a change, while an
object edited by hand in PostHog is reported. Objects without our marker are never touched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from .api import AmbiguousWrite, ApiError, Client
from .definitions import Definitions, Desired, marker, with_variables

TAG = "otel-posthog"
COLLECTION = {
    "dashboard": "dashboards",
    "insight": "insights",
    "alert": "alerts",
    "cohort": "cohorts",
}
MARK = re.compile(
    r"\[otel-posthog:(dashboard|insight|cohort):([a-z0-9][a-z0-9_-]*)(?: sha:([0-9a-f]{12}))?\]"
)
ALERT_MARK = re.compile(r"\[otel-posthog:([a-z0-9][a-z0-9_-]*)\]\s*$")
APPLY_ORDER = ("dashboard", "insight", "alert", "cohort")
DESTROY_ORDER = ("alert", "insight", "dashboard", "cohort")
CREATE_TRIES = 3


def tags(kind: str, key: str) -> list[str]:
    return [TAG, f"{TAG}:{kind}:{key}"]


def digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def covers(stored: Any, wanted: Any) -> bool:
    """Whether ``stored`` holds everything in ``wanted`` (keys PostHog added are ignored)."""
    if isinstance(wanted, dict):
        if not isinstance(stored, dict):
            return False
        return all(covers(stored[k], v) if k in stored else v is None for k, v in wanted.items())
    if isinstance(wanted, list):
        if not isinstance(stored, list) or len(stored) != len(wanted):
            return False
        return all(covers(s, w) for s, w in zip(stored, wanted, strict=True))
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return type(wanted) is type(stored) and wanted == stored
    if isinstance(wanted, (int, float)) and isinstance(stored, (int, float)):
        return float(wanted) == float(stored)
    return bool(stored == wanted)


def _ref_id(value: Any) -> Any:
    """An id PostHog may answer as a number or as a nested object."""
    return value.get("id") if isinstance(value, dict) else value


@dataclass
class Found:
    """One of our objects in PostHog."""

    kind: str
    key: str
    id: Any
    name: str
    digest: str | None
    row: dict[str, Any]


@dataclass
class Action:
    """One line of a plan: what apply does (or did) to one object."""

    kind: str
    key: str
    # create | update | edited (by hand, left) | restore | unchanged | orphan | duplicate | delete
    action: str
    name: str
    id: Any = None
    reason: str = ""
    fields: list[str] = field(default_factory=list)


@dataclass
class Inventory:
    """Our objects in the project, by kind and key; the rest is never looked at again."""

    found: dict[tuple[str, str], Found] = field(default_factory=dict)
    duplicates: list[Found] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # code_name -> id
    user_id: Any = None

    def add(self, item: Found) -> None:
        current = self.found.get((item.kind, item.key))
        if current is None:
            self.found[(item.kind, item.key)] = item
            return
        keep, extra = sorted((current, item), key=lambda f: _sort_id(f.id))
        self.found[(item.kind, item.key)] = keep
        self.duplicates.append(extra)

    def ids(self, kind: str) -> dict[str, Any]:
        return {key: f.id for (k, key), f in self.found.items() if k == kind}


def _sort_id(value: Any) -> tuple[int, str]:
    return (int(value), "") if str(value).isdigit() else (1 << 62, str(value))


def _owned(kind: str, row: dict[str, Any]) -> tuple[str, str | None] | None:
    """(key, digest) when ``row`` carries our marker."""
    if row.get("deleted"):
        return None
    match = MARK.search(str(row.get("description") or ""))
    if match and match.group(1) == kind:
        return match.group(2), match.group(3)
    if kind in ("dashboard", "insight"):
        prefix = f"{TAG}:{kind}:"
        for tag in row.get("tags") or []:
            if isinstance(tag, str) and tag.startswith(prefix):
                return tag[len(prefix) :], None
    return None


class Engine:
    """The definitions against one project: ``plan()``, ``apply()``, ``destroy()``."""

    def __init__(
        self,
        client: Client,
        defs: Definitions,
        log: Callable[[str], None] = lambda _: None,
        restore: bool = False,
    ) -> None:
        self.client = client
        self.defs = defs
        self.log = log
        self.restore = restore  # put back objects changed by hand (else: reported, left)

    # -- reading -----------------------------------------------------------------------
    def inventory(self, subscriber: bool = True) -> Inventory:
        """Our objects in the project (and the key's user, the alerts' subscriber)."""
        inv = Inventory()
        for kind in ("dashboard", "insight", "cohort"):
            # every row, not `?search=`: which fields a search covers varies between versions
            for row in self.client.list(COLLECTION[kind]):
                owned = _owned(kind, row)
                if owned:
                    inv.add(
                        Found(kind, owned[0], row.get("id"), str(row.get("name")), owned[1], row)
                    )
        insight_ids = {str(i) for i in inv.ids("insight").values()}
        for row in self.client.list("alerts"):
            match = ALERT_MARK.search(str(row.get("name") or ""))
            if match and str(_ref_id(row.get("insight"))) in insight_ids:
                inv.add(Found("alert", match.group(1), row.get("id"), str(row["name"]), None, row))
        if self.defs.variables:
            for row in self.client.list("insight_variables"):
                code = row.get("code_name")
                if isinstance(code, str) and code in self.defs.variables:
                    inv.variables.setdefault(code, str(row.get("id")))
        if subscriber and self.defs.of("alert"):
            inv.user_id = self.client.me().get("id")
        return inv

    # -- what we send --------------------------------------------------------------------
    def payload(self, obj: Desired, inv: Inventory) -> dict[str, Any]:
        """The body apply sends for ``obj`` (ids of objects not created yet are placeholders)."""
        if obj.kind == "alert":
            insight = inv.ids("insight").get(obj.insight, f"<new insight {obj.insight}>")
            users = [inv.user_id] if inv.user_id is not None else []
            name = f"{obj.name} [otel-posthog:{obj.key}]"
            return {"name": name, "insight": insight, "subscribed_users": users, **obj.alert}
        body: dict[str, Any] = {"name": obj.name, "description": obj.description}
        if obj.kind in ("dashboard", "insight"):
            body["tags"] = tags(obj.kind, obj.key)
        if obj.kind == "insight":
            dashboards = inv.ids("dashboard")
            body["query"] = with_variables(obj.query or {}, obj.variables, inv.variables)
            body["dashboards"] = [dashboards.get(k, f"<new dashboard {k}>") for k in obj.dashboards]
            body["saved"] = True
        if obj.kind == "cohort":
            body["filters"] = obj.filters
            body["is_static"] = False
        sha = digest(body)
        text = obj.description.strip()
        body["description"] = (text + "\n\n" if text else "") + marker(obj.kind, obj.key, sha)
        return body

    def _differs(
        self, obj: Desired, body: dict[str, Any], row: dict[str, Any], inv: Inventory
    ) -> list[str]:
        """The fields we set that ``row`` (PostHog's stored object) does not hold."""
        out = []
        for name, wanted in body.items():
            stored = row.get(name)
            if name == "tags":  # PostHog normalises tags; without the tagging feature, drops them
                held = {str(t).strip().lower() for t in stored or []}
                if TAG in held and not {t.lower() for t in wanted} <= held:
                    out.append(name)
            elif name == "dashboards":
                ours = {str(i) for i in inv.ids("dashboard").values()}
                held = {str(_ref_id(i)) for i in stored or []} & ours
                if held != {str(i) for i in wanted}:
                    out.append(name)
            elif name == "insight":
                if str(_ref_id(stored)) != str(wanted):
                    out.append(name)
            elif name == "subscribed_users":
                if not {str(u) for u in wanted} <= {str(_ref_id(u)) for u in stored or []}:
                    out.append(name)
            elif not covers(stored, wanted):
                out.append(name)
        return out

    def _decide(self, obj: Desired, inv: Inventory) -> tuple[Action, dict[str, Any]]:
        body = self.payload(obj, inv)
        found = inv.found.get((obj.kind, obj.key))
        if found is None:
            return Action(obj.kind, obj.key, "create", obj.name), body
        fields = self._differs(obj, body, found.row, inv)
        if not fields:
            return Action(obj.kind, obj.key, "unchanged", obj.name, found.id), body
        sent = MARK.search(str(body.get("description", "")))
        if obj.kind != "alert" and sent and found.digest == sent.group(3):
            if self.restore:
                reason = "changed in PostHog by hand; the definition is put back"
                return Action(
                    obj.kind, obj.key, "restore", obj.name, found.id, reason, fields
                ), body
            reason = "changed in PostHog by hand; left as is (apply --restore puts it back)"
            return Action(obj.kind, obj.key, "edited", obj.name, found.id, reason, fields), body
        reason = "the definition changed" if obj.kind != "alert" else "differs from the definition"
        return Action(obj.kind, obj.key, "update", obj.name, found.id, reason, fields), body

    def _orphans(self, inv: Inventory) -> list[Action]:
        wanted = {(o.kind, o.key) for o in self.defs.objects}
        out = [
            Action(
                f.kind, f.key, "orphan", f.name, f.id, "no longer in the definitions; left alone"
            )
            for f in inv.found.values()
            if (f.kind, f.key) not in wanted
        ]
        out += [
            Action(
                f.kind,
                f.key,
                "duplicate",
                f.name,
                f.id,
                "a second object with our marker; left alone",
            )
            for f in inv.duplicates
        ]
        return out

    # -- the commands ---------------------------------------------------------------------
    def plan(self) -> list[Action]:
        inv = self.inventory()
        actions = [
            Action("variable", code, "create", spec["name"], reason="SQL variable")
            for code, spec in self.defs.variables.items()
            if code not in inv.variables
        ]
        for kind in APPLY_ORDER:
            actions += [self._decide(obj, inv)[0] for obj in self.defs.of(kind)]
        return actions + self._orphans(inv)

    def apply(self) -> list[Action]:
        inv = self.inventory()
        actions: list[Action] = []
        for code, spec in self.defs.variables.items():
            if code not in inv.variables:
                row = self._create("insight_variables", dict(spec), partial(self._variable, code))
                inv.variables[code] = str(row.get("id"))
                actions.append(Action("variable", code, "create", spec["name"], row.get("id")))
        for kind in APPLY_ORDER:
            for obj in self.defs.of(kind):
                action, body = self._decide(obj, inv)
                if action.action == "create":
                    row = self._create(COLLECTION[kind], body, partial(self._find, obj))
                    action.id = row.get("id")
                    self._check_marker(kind, obj.key, row)
                elif action.action in ("update", "restore"):
                    if kind == "insight":
                        body["dashboards"] = self._keep_foreign(body, inv)
                    row = self.client.update(COLLECTION[kind], action.id, body)
                else:
                    row = inv.found[(kind, obj.key)].row
                inv.found[(kind, obj.key)] = Found(kind, obj.key, action.id, obj.name, None, row)
                actions.append(action)
                if action.action not in ("unchanged", "edited"):
                    self.log(f"{action.action} {kind} {obj.key} (id {action.id})")
        return actions + self._orphans(inv)

    def _check_marker(self, kind: str, key: str, row: dict[str, Any]) -> None:
        """Stop if PostHog did not keep our marker: a rerun could not find the object."""
        if kind == "alert":
            if "name" not in row:
                return  # an answer without the field says nothing; the next read will tell
            match = ALERT_MARK.search(str(row["name"] or ""))
            kept = match is not None and match.group(1) == key
        elif "description" not in row and "tags" not in row:
            return
        else:
            owned = _owned(kind, row)
            kept = owned is not None and owned[0] == key
        if kept:
            return
        if kind == "alert":
            self.client.delete("alerts", row.get("id"))
        else:
            self.client.update(COLLECTION[kind], row.get("id"), {"deleted": True})
        raise ApiError(
            f"PostHog did not keep otel-posthog's marker on the new {kind} {key!r} (its "
            f"{'name' if kind == 'alert' else 'description and tags'}), so a rerun could not "
            "find it; it was deleted again and apply stopped"
        )

    def _keep_foreign(self, body: dict[str, Any], inv: Inventory) -> list[Any]:
        """The dashboards of an insight: ours as defined, plus any a user added it to."""
        found = inv.found.get(("insight", self._key_of(body)))
        ours = {str(i) for i in inv.ids("dashboard").values()}
        foreign = [
            _ref_id(i)
            for i in (found.row.get("dashboards") or [] if found else [])
            if str(_ref_id(i)) not in ours
        ]
        return list(body["dashboards"]) + foreign

    @staticmethod
    def _key_of(body: dict[str, Any]) -> str:
        match = MARK.search(str(body.get("description", "")))
        return match.group(2) if match else ""

    def _variable(self, code: str) -> dict[str, Any] | None:
        for row in self.client.list("insight_variables"):
            if row.get("code_name") == code:
                return row
        return None

    def _find(self, obj: Desired) -> dict[str, Any] | None:
        """Our object for ``obj`` if a create whose answer was lost did happen."""
        fresh = Engine(self.client, self.defs).inventory(subscriber=False)
        found = fresh.found.get((obj.kind, obj.key))
        return found.row if found else None

    def _create(
        self, collection: str, body: dict[str, Any], lookup: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """POST once; if the answer is lost, look for the object before trying again."""
        for attempt in range(1, CREATE_TRIES + 1):
            try:
                return self.client.create(collection, body)
            except AmbiguousWrite as exc:
                self.log(f"{exc}; looking for it before trying again")
                try:
                    row = lookup()
                except ApiError:
                    row = None
                if row is not None:
                    return row
                if attempt == CREATE_TRIES:
                    raise ApiError(f"{exc} ({attempt} tries); run apply again") from None
        raise AssertionError("unreachable")

    def destroy(self) -> list[Action]:
        """Soft-delete our dashboards, insights and cohorts, delete our alerts; nothing else.

        A second object with one of our markers (a copy made in PostHog) is left alone."""
        inv = self.inventory(subscriber=False)
        mine = list(inv.found.values())
        actions = []
        for kind in DESTROY_ORDER:
            for item in sorted((f for f in mine if f.kind == kind), key=lambda f: _sort_id(f.id)):
                if kind == "alert":
                    self.client.delete("alerts", item.id)
                else:
                    self.client.update(COLLECTION[kind], item.id, {"deleted": True})
                actions.append(Action(kind, item.key, "delete", item.name, item.id))
                self.log(f"delete {kind} {item.key} (id {item.id})")
        return actions

    def targets(self) -> list[Action]:
        """What destroy would delete (for the confirmation)."""
        inv = self.inventory(subscriber=False)
        return [Action(f.kind, f.key, "delete", f.name, f.id) for f in inv.found.values()]


def as_json(actions: list[Action]) -> list[dict[str, Any]]:
    return [asdict(a) for a in actions]
