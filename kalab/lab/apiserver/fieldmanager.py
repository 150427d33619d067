"""Field ownership as kube-apiserver keeps it: `metadata.managedFields`, server-side apply, and its conflicts.

Hand-written because no Python library implements Kubernetes' structured-merge-diff (the Go library kube-apiserver
uses); this module follows its rules, in its vocabulary:

- A field set is a set of paths; a path is a tuple of elements written as in FieldsV1: `f:<field>`, `k:<json of the
  key fields>` for an item of an associative list, `v:<json>` for an item of a set list, `i:<index>`.
- Apply (operation Apply) owns exactly the fields of the applied configuration (`to_set`: leaves, list items,
  empty or null values, atomic lists and maps as a whole). Update (create, update, patch) owns what it added or
  changed, found by comparing the object before and after (`compare`), which also yields the maps and lists it
  created (they show as `.` in FieldsV1).
- An apply that changes a field another manager owns fails with a conflict unless forced; forcing, like any
  update, takes the field away from the others. A field the applier owned last time, left out now and owned by no
  one else, is removed from the object.

Without Go's compiled schemas the list types come from a table of the built-in types' list-map keys and set
lists (what their OpenAPI `x-kubernetes-list-type` says); a custom resource's come from its CRD's schema, where a
list that declares nothing is atomic and a map granular, as structured-merge-diff treats them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from kalab.lab.apiserver.errors import ApiError
from kalab.model import objects

Path = tuple[str, ...]
FieldSet = set[Path]
Operation = Literal["Apply", "Update"]

# Groups served from compiled Go types (their lists have merge keys); everything else is a custom resource.
COMPILED_GROUPS: Final = frozenset({
    "", "apps", "batch", "autoscaling", "policy", "rbac.authorization.k8s.io", "apiextensions.k8s.io",
    "networking.k8s.io", "storage.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "scheduling.k8s.io",
    "node.k8s.io", "certificates.k8s.io", "events.k8s.io", "admissionregistration.k8s.io",
    "apiregistration.k8s.io", "project.openshift.io", "route.openshift.io", "apps.openshift.io",
})  # fmt: skip

# Associative lists of the built-in types (+listType=map, +listMapKey=…), by field name.
_MAP_LISTS: Final[dict[str, tuple[str, ...]]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
    "resourceClaims": ("name",),
    "schedulingGates": ("name",),
}
_CONTAINER_LISTS: Final = frozenset({"containers", "initContainers", "ephemeralContainers"})
# Key fields the schema defaults, so an item that leaves them out still has its full key.
_KEY_DEFAULTS: Final[dict[str, Any]] = {"protocol": "TCP"}
# Maps and structs owned as a whole (+mapType=atomic, +structType=atomic): label selectors, node selectors, refs.
_ATOMIC_MAPS: Final = frozenset(
    {"selector", "nodeSelector", "involvedObject", "secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef"}
)
# What the zero value of a compiled type already holds, so creating it does not count as adding these maps.
_STRUCT_SKELETON: Final[tuple[tuple[str, ...], ...]] = (
    ("spec",),
    ("status",),
    ("spec", "template"),
    ("spec", "template", "metadata"),
    ("spec", "template", "spec"),
    ("spec", "strategy"),
    ("spec", "updateStrategy"),
    ("spec", "jobTemplate"),
    ("spec", "jobTemplate", "spec"),
    ("spec", "jobTemplate", "spec", "template"),
    ("spec", "jobTemplate", "spec", "template", "spec"),
)
# Never owned (structured-merge-diff's stripped fields).
_STRIPPED: Final[tuple[Path, ...]] = (
    ("f:apiVersion",),
    ("f:kind",),
    *(
        ("f:metadata", f"f:{name}")
        for name in (
            "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
            "managedFields", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
        )
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Schema:
    """How lists and maps of one resource merge: by the built-in table, or for a custom resource by its CRD's
    openAPIV3Schema (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`)."""

    compiled: bool
    status_subresource: bool = False
    openapi: Mapping[str, Any] | None = field(default=None, compare=False)

    def _node(self, fields: tuple[str, ...]) -> Mapping[str, Any] | None:
        node: Any = self.openapi
        for name in fields:
            while isinstance(node, Mapping) and node.get("type") == "array":
                node = node.get("items")
            if not isinstance(node, Mapping):
                return None
            properties = node.get("properties") or {}
            node = properties.get(name) if name in properties else node.get("additionalProperties")
        return node if isinstance(node, Mapping) else None

    def list_type(self, fields: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        """("map", keys), ("set", ()) or ("atomic", ()) for the list at the field-name path `fields`."""
        if not self.compiled:
            node = self._node(fields) if fields else None
            kind = (node or {}).get("x-kubernetes-list-type")
            keys = tuple((node or {}).get("x-kubernetes-list-map-keys") or ())
            if kind == "map" and keys:
                return "map", keys
            return ("set", ()) if kind == "set" else ("atomic", ())
        if not fields:
            return "atomic", ()
        name = fields[-1]
        if name == "finalizers" and fields[:-1] == ("metadata",):
            return "set", ()
        if name == "ports":
            parent = fields[-2] if len(fields) > 1 else ""
            if parent in _CONTAINER_LISTS:
                return "map", ("containerPort", "protocol")
            if fields == ("spec", "ports"):
                return "map", ("port", "protocol")
            return "atomic", ()
        table_keys = _MAP_LISTS.get(name)
        return ("map", table_keys) if table_keys else ("atomic", ())

    def atomic_map(self, fields: tuple[str, ...]) -> bool:
        if not self.compiled:
            return bool(fields) and (self._node(fields) or {}).get("x-kubernetes-map-type") == "atomic"
        return bool(fields) and fields[-1] in _ATOMIC_MAPS and fields[0] != "metadata"


def schema_for(group: str, status_subresource: bool, openapi: Mapping[str, Any] | None = None) -> Schema:
    """The merge schema of a resource; `openapi` is a custom resource's openAPIV3Schema (None: all atomic)."""
    return Schema(group in COMPILED_GROUPS, status_subresource, openapi if group not in COMPILED_GROUPS else None)


# -- path elements -----------------------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _key_of(item: Any, keys: tuple[str, ...]) -> str | None:
    if not isinstance(item, dict):
        return None
    found = {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in keys}
    found = {k: v for k, v in found.items() if v is not None}
    if not found:
        return None
    return "k:" + _dumps(found)


def _element_text(element: str) -> str:
    """One path element as structured-merge-diff prints it in conflicts: `.spec`, `[name="x"]`, `[="v"]`."""
    kind, _, rest = element.partition(":")
    if kind == "f":
        return "." + rest
    if kind == "k":
        fields = json.loads(rest)
        return "[" + ",".join(f"{k}={_dumps(v)}" for k, v in fields.items()) + "]"
    if kind == "v":
        return f"[={rest}]"
    return f"[{rest}]"


def path_text(path: Path) -> str:
    return "".join(_element_text(e) for e in path)


def _field_names(path: Path) -> tuple[str, ...]:
    return tuple(e[2:] for e in path if e.startswith("f:"))


# -- the fields a value holds (apply) ----------------------------------------------------------------------------


def to_set(obj: Mapping[str, Any], schema: Schema) -> FieldSet:
    """The fields an applied configuration sets (structured-merge-diff's ToFieldSet)."""
    out: FieldSet = set()
    _collect(obj, (), schema, out)
    return out


def _collect(value: Any, path: Path, schema: Schema, out: FieldSet) -> None:
    names = _field_names(path)
    if isinstance(value, dict):
        if schema.atomic_map(names):
            out.add(path)
            return
        for key, child in value.items():
            child_path = (*path, f"f:{key}")
            if child is None or child == {}:
                out.add(child_path)
            else:
                _collect(child, child_path, schema, out)
    elif isinstance(value, list):
        kind, keys = schema.list_type(names)
        if kind == "atomic":
            out.add(path)
        elif kind == "set":
            out.update((*path, "v:" + _dumps(item)) for item in value)
        else:
            for index, item in enumerate(value):
                item_path = (*path, _key_of(item, keys) or f"i:{index}")
                out.add(item_path)
                if isinstance(item, dict):
                    _collect(item, item_path, schema, out)
    else:
        out.add(path)


# -- comparing two versions of an object (update) ----------------------------------------------------------------


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)

    def changed(self) -> FieldSet:
        return self.added | self.modified


_ABSENT: Final = object()


def compare(old: Any, new: Any, schema: Schema) -> Comparison:
    """What `new` added, modified and removed relative to `old` (structured-merge-diff's Compare)."""
    result = Comparison()
    _compare(old, new, (), schema, result)
    return result


def _shape(value: Any) -> str:
    if value is _ABSENT or value is None:
        return "none"
    if isinstance(value, dict):
        return "map"
    return "list" if isinstance(value, list) else "scalar"


def _is_empty(value: Any) -> bool:
    return value is _ABSENT or value is None or value == {} or value == []


def _compare(lhs: Any, rhs: Any, path: Path, schema: Schema, out: Comparison) -> None:
    names = _field_names(path)
    maps = _shape(lhs) in ("map", "none") and _shape(rhs) in ("map", "none") and "map" in (_shape(lhs), _shape(rhs))
    lists = _shape(lhs) in ("list", "none") and _shape(rhs) in ("list", "none") and "list" in (_shape(lhs), _shape(rhs))
    leaf = not (maps or lists) or (_is_empty(lhs) and _is_empty(rhs))
    if maps and not leaf and schema.atomic_map(names):
        leaf = True
    kind, keys = schema.list_type(names) if lists else ("atomic", ())
    if lists and kind == "atomic":
        leaf = True
    if leaf:
        if path:
            if lhs is _ABSENT:
                out.added.add(path)
            elif rhs is _ABSENT:
                out.removed.add(path)
            elif lhs != rhs:
                out.modified.add(path)
        return
    if maps:
        left = lhs if isinstance(lhs, dict) else {}
        right = rhs if isinstance(rhs, dict) else {}
        for key in [*left, *(k for k in right if k not in left)]:
            _compare(left.get(key, _ABSENT), right.get(key, _ABSENT), (*path, f"f:{key}"), schema, out)
    else:
        left_items = _items(lhs, kind, keys)
        right_items = _items(rhs, kind, keys)
        for element in [*left_items, *(e for e in right_items if e not in left_items)]:
            _compare(left_items.get(element, _ABSENT), right_items.get(element, _ABSENT), (*path, element), schema, out)
    if path:
        if lhs is _ABSENT:
            out.added.add(path)
        elif rhs is _ABSENT:
            out.removed.add(path)


def _items(value: Any, kind: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, list):
        return {}
    if kind == "set":
        return {"v:" + _dumps(item): item for item in value}
    return {(_key_of(item, keys) or f"i:{index}"): item for index, item in enumerate(value)}


# -- merging an applied configuration into the live object -------------------------------------------------------


def merge(live: Any, config: Any, schema: Schema, path: Path = ()) -> Any:
    """`config` merged into `live`: maps field by field, associative and set lists item by item."""
    names = _field_names(path)
    if isinstance(live, dict) and isinstance(config, dict) and not schema.atomic_map(names):
        out = copy.deepcopy(live)
        for key, value in config.items():
            out[key] = merge(live.get(key, _ABSENT), value, schema, (*path, f"f:{key}"))
        return out
    if isinstance(live, list) and isinstance(config, list):
        kind, keys = schema.list_type(names)
        if kind == "set":
            return copy.deepcopy(live) + [copy.deepcopy(v) for v in config if v not in live]
        if kind == "map":
            merged = _items(live, kind, keys)
            for element, item in _items(config, kind, keys).items():
                merged[element] = merge(merged.get(element, _ABSENT), item, schema, (*path, element))
            return [copy.deepcopy(v) for v in merged.values()]
    return copy.deepcopy(config)


def remove(obj: dict[str, Any], paths: Iterable[Path], schema: Schema) -> None:
    """Remove the fields and items at `paths` from `obj` (in place); maps left empty by it go too."""
    wanted = set(paths)
    # A path whose parent goes too goes with it (and an item must be found by its key before its fields go).
    outermost = [p for p in wanted if not any(p[:n] in wanted for n in range(1, len(p)))]
    for path in sorted(outermost, key=len, reverse=True):
        _remove_one(obj, path, schema)


def _remove_one(obj: Any, path: Path, schema: Schema) -> None:
    trail: list[tuple[Any, Any]] = []  # (container, index or key) down to the field
    node = obj
    for depth, element in enumerate(path):
        if isinstance(node, dict) and element.startswith("f:") and element[2:] in node:
            trail.append((node, element[2:]))
            node = node[element[2:]]
        elif isinstance(node, list):
            kind, keys = schema.list_type(_field_names(path[:depth]))
            found = next((i for i, e in enumerate(_items(node, kind, keys)) if e == element), None)
            if found is None:
                return
            trail.append((node, found))
            node = node[found]
        else:
            return
    container, where = trail.pop()
    del container[where]
    # Parents emptied by the removal go as well, like an omitempty field of a compiled type.
    while trail and container in ({}, []):
        container, where = trail.pop()
        del container[where]


# -- managedFields ------------------------------------------------------------------------------------------------


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


def to_fields_v1(fields: Iterable[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    members = set(fields)
    for path in sorted(members):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    for path in members:
        node = tree
        for element in path:
            node = node[element]
        if node and "." not in node:
            node["."] = {}
    return _sorted_tree(tree)


def _sorted_tree(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted_tree(tree[k]) for k in sorted(tree, key=lambda k: (k != ".", k))}


def from_fields_v1(tree: Mapping[str, Any], prefix: Path = ()) -> FieldSet:
    out: FieldSet = set()
    if prefix and (not tree or "." in tree):
        out.add(prefix)
    for key, child in tree.items():
        if key != "." and isinstance(child, Mapping):
            out |= from_fields_v1(child, (*prefix, key))
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


def skeleton(obj: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """The zero value a create starts from: a compiled type's struct fields exist already (empty)."""
    out: dict[str, Any] = {"metadata": {}}
    if not schema.compiled:
        return out
    for path in _STRUCT_SKELETON:
        source: Any = obj
        for name in path:
            source = source.get(name) if isinstance(source, dict) else None
        if not isinstance(source, dict):
            continue
        node = out
        for name in path:
            node = node.setdefault(name, {})
        if path[-1] == "spec" and "containers" in source:
            node["containers"] = None  # a list without omitempty: the zero value holds it as null
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
