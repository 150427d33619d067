"""`metadata.managedFields`: who owns which fields, kept up to date by every write, and server-side apply.

- Apply (operation Apply) owns exactly the fields of the applied configuration (`to_set`: leaves, list items,
  empty or null values, atomic lists and maps as a whole). Update (create, update, patch) owns what it added or
  changed, found by comparing the object before and after (`compare`), which also yields the maps and lists it
  created (they show as `.` in FieldsV1).
- An apply that changes a field another manager owns fails with a conflict unless forced; forcing, like any
  update, takes the field away from the others. A field the applier owned last time, left out now and owned by no
  one else, is removed from the object.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.fieldmanager.fieldpath import FieldSet, Path, from_fields_v1, path_text, to_fields_v1
from kalab.lab.apiserver.fieldmanager.schema import Schema, skeleton
from kalab.lab.apiserver.fieldmanager.typed import compare, merge, remove, to_set
from kalab.model import objects

Operation = Literal["Apply", "Update"]

# Never owned (structured-merge-diff's stripped fields).
_STRIPPED: Final[tuple[Path, ...]] = (
    ("f:apiVersion",),
    ("f:kind",),
    *(
        ("f:metadata", f"f:{name}")
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        )
    ),
)


@dataclass
class Manager:
    manager: str
    operation: Operation
    api_version: str
    fields: FieldSet
    time: str | None = None
    subresource: str = ""

    @property
    def ident(self) -> tuple[str, str, str, str]:
        # Appliers are one manager whatever version they apply in; updaters are one per version.
        version = "" if self.operation == "Apply" else self.api_version
        return self.manager, self.operation, version, self.subresource

    def described(self) -> str:
        """How kube-apiserver names a manager in a conflict message."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def entry(self) -> dict[str, Any]:
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = to_fields_v1(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def decode(entries: Any) -> list[Manager]:
    """The managers of a `metadata.managedFields` list (entries that are not FieldsV1 records are dropped)."""
    managers: list[Manager] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not entry.get("manager") or entry.get("operation") not in ("Apply", "Update"):
            continue
        managers.append(
            Manager(
                manager=str(entry["manager"]),
                operation=entry["operation"],
                api_version=str(entry.get("apiVersion") or ""),
                fields=from_fields_v1(entry.get("fieldsV1") or {}),
                time=entry.get("time"),
                subresource=str(entry.get("subresource") or ""),
            )
        )
    return managers


def encode(managers: Iterable[Manager]) -> list[dict[str, Any]]:
    """managedFields in kube-apiserver's order: Apply before Update, then by time, manager, version, subresource."""
    kept = [m for m in managers if m.fields]
    kept.sort(key=lambda m: (m.operation, m.time or "", m.manager, m.api_version, m.subresource))
    return [m.entry() for m in kept]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the two operations ------------------------------------------------------------------------------------------


def _owned(fields: FieldSet, subresource: str, schema: Schema) -> FieldSet:
    """Drop what no manager can own: identity metadata, and status or everything else by subresource."""
    out = {p for p in fields if not any(p[: len(s)] == s for s in _STRIPPED) and p != ("f:metadata",)}
    if subresource == "status":
        return {p for p in out if p[:1] == ("f:status",)}
    if schema.status_subresource:
        return {p for p in out if p[:1] != ("f:status",)}
    return out


def _bare(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` without managedFields, which no comparison counts; metadata that is no object is left out."""
    out = {k: v for k, v in obj.items() if k != "metadata"}
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def record_update(
    old: Mapping[str, Any] | None,
    new: dict[str, Any],
    managers: list[Manager],
    manager: str,
    api_version: str,
    schema: Schema,
    subresource: str = "",
) -> list[Manager]:
    """The managers after `manager` wrote `new` over `old` (None: a create); `new` gets the managedFields."""
    before = _bare(old) if old is not None else skeleton(new, schema)
    changes = compare(before, _bare(new), schema)
    changed = _owned(changes.changed(), subresource, schema)
    removed = changes.removed
    result: list[Manager] = []
    mine: Manager | None = None
    ident = Manager(manager, "Update", api_version, set(), subresource=subresource).ident
    for other in managers:
        other = copy.copy(other)
        other.fields = other.fields - removed - (changed if other.ident != ident else set())
        if other.ident == ident:
            mine = other
        result.append(other)
    if changed:
        if mine is None:
            mine = Manager(manager, "Update", api_version, set(), subresource=subresource)
            result.append(mine)
        mine.fields = mine.fields | changed
        mine.time = now()
    new.setdefault("metadata", {})["managedFields"] = encode(result)
    if not new["metadata"]["managedFields"]:
        del new["metadata"]["managedFields"]
    return [m for m in result if m.fields]


def conflict_error(conflicts: list[tuple[Manager, Path]]) -> ApiError:
    """409 Conflict worded as kube-apiserver words a failed apply, with one cause per field."""
    conflicts = sorted(conflicts, key=lambda c: (c[0].described(), path_text(c[1])))
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {m.described()}", "field": path_text(p)}
        for m, p in conflicts
    ]
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {manager.described()}: {path_text(path)}"
    else:
        lines: list[str] = []
        for described in sorted({m.described() for m, _ in conflicts}):
            lines.append(f"conflicts with {described}:")
            lines += [f"- {path_text(p)}" for m, p in conflicts if m.described() == described]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})


def apply(
    live: Mapping[str, Any],
    config: Mapping[str, Any],
    managers: list[Manager],
    manager: str,
    api_version: str,
    schema: Schema,
    force: bool,
    subresource: str = "",
) -> dict[str, Any]:
    """The object after `manager` applied `config` to `live`, with its managedFields; 409 on a conflict."""
    applied = _owned(to_set(config, schema), subresource, schema)
    ident = Manager(manager, "Apply", api_version, set(), subresource=subresource).ident
    last = next((m for m in managers if m.ident == ident), None)
    others = [m for m in managers if m.ident != ident]
    merged: dict[str, Any] = merge(_bare(live), _bare(config), schema)
    if last is not None:
        still_owned = applied.union(*(m.fields for m in others))
        dropped = {p for p in last.fields - still_owned if not any(o[: len(p)] == p for o in still_owned)}
        remove(merged, dropped, schema)
    changes = compare(_bare(live), merged, schema)
    changed = _owned(changes.changed(), subresource, schema)
    conflicts = [(m, p) for m in others for p in sorted(m.fields & changed)]
    if conflicts and not force:
        raise conflict_error(conflicts)
    result: list[Manager] = []
    for other in others:
        other = copy.copy(other)
        other.fields = other.fields - changed - changes.removed
        result.append(other)
    mine = Manager(manager, "Apply", api_version, applied, subresource=subresource)
    mine.time = now() if merged != _bare(live) or last is None else last.time
    result.append(mine)
    merged.setdefault("metadata", {})["managedFields"] = encode(result)
    return merged


def managers_of(obj: Mapping[str, Any]) -> list[Manager]:
    return decode(objects.meta(obj).get("managedFields"))


def user_agent_manager(user_agent: str | None) -> str:
    """The manager kube-apiserver names after a client that gave no fieldManager: its User-Agent's program."""
    return (user_agent or "").split("/")[0][:128]
