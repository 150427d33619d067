"""How lists and maps of a resource merge, which structured-merge-diff reads from Go's compiled schemas.

Without them the list types come from a table of the built-in types' list-map keys and set lists (what their
OpenAPI `x-kubernetes-list-type` says); a custom resource's come from its CRD's schema, where a list that declares
nothing is atomic and a map granular, as structured-merge-diff treats them. `skeleton` is the zero value of a
compiled type, which a create starts from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

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
