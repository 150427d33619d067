"""OpenAPI v2 definitions of the built-in kinds the lab serves, derived from the official `kubernetes` client.

The client's models are generated from kube-apiserver's own OpenAPI document: one class per definition, with the
type's description (class docstring), each property's JSON name, type, description and whether it is required. That
is everything `kubectl explain` prints and client-side validation checks, so the definitions are rebuilt from them
under the upstream names (`io.k8s.api.core.v1.Service`), with `$ref`s, `x-kubernetes-group-version-kind`, and the
special formats (int-or-string, quantity, date-time, byte). The client is already a dependency and matches the kinds
one to one; a copy of kube-apiserver's swagger.json would be a second, larger source of the same facts.

What the models do not carry is written down here: the patch strategies and merge keys (they live in Go struct
tags), which string fields are quantities, and which timestamps are MicroTime.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from typing import Any

from kubernetes.client import models

Schema = dict[str, Any]
Gvk = tuple[str, str, str]

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
PACKAGES = {
    "": "io.k8s.api.core.v1",
    "apps": "io.k8s.api.apps.v1",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac.v1",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
    "autoscaling": "io.k8s.api.autoscaling.v1",
    "authentication.k8s.io": "io.k8s.api.authentication.v1",
    "authorization.k8s.io": "io.k8s.api.authorization.v1",
}
_CLASS_PREFIXES = ("", "Core", "Apps", "Rbac", "Apiextensions", "Autoscaling", "Authentication", "Authorization")
_META_TYPES = frozenset(
    {
        "ObjectMeta", "ListMeta", "LabelSelector", "LabelSelectorRequirement", "OwnerReference", "ManagedFieldsEntry",
        "Condition", "Status", "StatusDetails", "StatusCause", "DeleteOptions", "Preconditions",
    }
)  # fmt: skip
# The core kinds whose types other groups embed (PodTemplateSpec, ObjectReference ...), named before any other group.
_CORE_ROOTS = (
    "Pod", "PodTemplate", "ReplicationController", "PersistentVolume", "PersistentVolumeClaim", "Service", "Node",
    "Endpoints", "Event", "Namespace", "ConfigMap", "Secret", "ServiceAccount", "LimitRange", "ResourceQuota",
)  # fmt: skip
TIME = f"{META}.Time"
MICRO_TIME = f"{META}.MicroTime"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_VERSION_PREFIX = re.compile(r"^(?:[A-Z][a-z]+)?V\d+(?:alpha\d+|beta\d+)?(?=[A-Z])")

_OBJECT_METADATA = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_LIST_METADATA = (
    "Standard list metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)

# Go struct tags the client does not carry: (type, field) → (x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key).
# kubectl computes client-side apply patches for built-ins from these once the server publishes OpenAPI v3.
_PATCH: dict[tuple[str, str], tuple[str, str]] = {
    ("ObjectMeta", "ownerReferences"): ("merge", "uid"),
    ("ObjectMeta", "finalizers"): ("merge", ""),
    ("PodSpec", "containers"): ("merge", "name"),
    ("PodSpec", "initContainers"): ("merge", "name"),
    ("PodSpec", "ephemeralContainers"): ("merge", "name"),
    ("PodSpec", "volumes"): ("merge,retainKeys", "name"),
    ("PodSpec", "imagePullSecrets"): ("merge", "name"),
    ("PodSpec", "hostAliases"): ("merge", "ip"),
    ("PodSpec", "resourceClaims"): ("merge,retainKeys", "name"),
    ("PodSpec", "schedulingGates"): ("merge", "name"),
    ("PodSpec", "topologySpreadConstraints"): ("merge", "topologyKey"),
    ("Container", "env"): ("merge", "name"),
    ("Container", "ports"): ("merge", "containerPort"),
    ("Container", "volumeMounts"): ("merge", "mountPath"),
    ("Container", "volumeDevices"): ("merge", "devicePath"),
    ("EphemeralContainer", "env"): ("merge", "name"),
    ("EphemeralContainer", "ports"): ("merge", "containerPort"),
    ("EphemeralContainer", "volumeMounts"): ("merge", "mountPath"),
    ("EphemeralContainer", "volumeDevices"): ("merge", "devicePath"),
    ("ServiceSpec", "ports"): ("merge", "port"),
    ("ServiceStatus", "conditions"): ("merge", "type"),
    ("ServiceAccount", "secrets"): ("merge", "name"),
    ("PodStatus", "conditions"): ("merge", "type"),
    ("PodStatus", "podIPs"): ("merge", "ip"),
    ("PodStatus", "hostIPs"): ("merge", "ip"),
    ("NodeSpec", "podCIDRs"): ("merge", ""),
    ("NodeStatus", "conditions"): ("merge", "type"),
    ("NodeStatus", "addresses"): ("merge", "type"),
    ("NamespaceStatus", "conditions"): ("merge", "type"),
    ("DeploymentSpec", "strategy"): ("retainKeys", ""),
    ("DeploymentStatus", "conditions"): ("merge", "type"),
    ("DaemonSetStatus", "conditions"): ("merge", "type"),
    ("ReplicaSetStatus", "conditions"): ("merge", "type"),
}
# String-typed in the client, resource.Quantity upstream.
_QUANTITY_MAPS = frozenset({"limits", "requests", "capacity", "allocatable", "overhead", "allocatedResources"})
_QUANTITY_FIELDS = frozenset({("EmptyDirVolumeSource", "sizeLimit"), ("ResourceFieldSelector", "divisor")})
_MICRO_TIME_FIELDS = frozenset({("Event", "eventTime"), ("EventSeries", "lastObservedTime")})


def type_name(cls_name: str) -> str:
    """`V1ServiceSpec` → `ServiceSpec`, `CoreV1Event` → `Event`."""
    return _VERSION_PREFIX.sub("", cls_name, count=1)


def model_class(group: str, kind: str) -> type[Any] | None:
    for prefix in _CLASS_PREFIXES:
        cls = getattr(models, f"{prefix}V1{kind}", None)
        if cls is not None and hasattr(cls, "openapi_types"):
            return typing.cast(type[Any], cls)
    return None


def _description(cls: type[Any]) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.split("\n\nAttributes:")[0].strip()


def _ints_and_strings(annotation: Any) -> bool:
    """Whether a pydantic annotation is `int | str` (an IntOrString), possibly Optional."""
    args = typing.get_args(annotation)
    plain = {typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a for a in args}
    return int in plain and str in plain


class _Builder:
    def __init__(self) -> None:
        self.definitions: dict[str, Schema] = {}
        self._names: dict[type[Any], str] = {}

    def name_of(self, cls: type[Any], package: str) -> str:
        known = self._names.get(cls)
        if known is not None:
            return known
        short = type_name(cls.__name__)
        name = f"{META}.{short}" if short in _META_TYPES else f"{package}.{short}"
        self._names[cls] = name
        self.definitions[name] = {}  # reserved: recursive types (JSONSchemaProps) refer to themselves
        self.definitions[name] = self._object(cls, package)
        return name

    def _object(self, cls: type[Any], package: str) -> Schema:
        short = type_name(cls.__name__)
        properties: dict[str, Schema] = {}
        required: list[str] = []
        fields = getattr(cls, "model_fields", {})
        for attr, kind in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            info = fields.get(attr)
            prop = self._property(short, json_name, kind, info.annotation if info else None, package)
            if info is not None and info.description:
                prop["description"] = info.description
            elif json_name == "metadata":
                prop["description"] = _LIST_METADATA if short.endswith("List") else _OBJECT_METADATA
            elif "$ref" in prop:  # the client drops the descriptions of object-valued fields: say what the type is
                referred = self.definitions.get(prop["$ref"].rsplit("/", 1)[-1], {}).get("description")
                if referred:
                    prop["description"] = referred
            patch = _PATCH.get((short, json_name))
            if patch is not None:
                prop["x-kubernetes-patch-strategy"] = patch[0]
                if patch[1]:
                    prop["x-kubernetes-patch-merge-key"] = patch[1]
            properties[json_name] = prop
            if info is not None and info.is_required():
                required.append(json_name)
        schema: Schema = {"description": _description(cls), "type": "object", "properties": properties}
        if required:
            schema["required"] = sorted(required)
        return schema

    def _property(self, owner: str, field: str, kind: str, annotation: Any, package: str) -> Schema:
        if (owner, field) in _QUANTITY_FIELDS:
            return {"$ref": f"#/definitions/{QUANTITY}"}
        if (owner, field) in _MICRO_TIME_FIELDS:
            return {"$ref": f"#/definitions/{MICRO_TIME}"}
        if kind == "object" and annotation is not None and _ints_and_strings(annotation):
            return {"$ref": f"#/definitions/{INT_OR_STRING}"}
        if field in _QUANTITY_MAPS and kind == "Dict[str, str]":
            return {"type": "object", "additionalProperties": {"$ref": f"#/definitions/{QUANTITY}"}}
        return self._type(owner, kind, package)

    def _type(self, owner: str, kind: str, package: str) -> Schema:
        if kind.startswith("List[") and kind.endswith("]"):
            return {"type": "array", "items": self._type(owner, kind[5:-1], package)}
        if kind.startswith("Dict[str, ") and kind.endswith("]"):
            return {"type": "object", "additionalProperties": self._type(owner, kind[10:-1], package)}
        primitive = _PRIMITIVES.get(kind)
        if primitive is not None:
            return dict(primitive)
        if kind == "object":
            # JSONSchemaProps' default/enum/example/items are any JSON; elsewhere (RawExtension, FieldsV1) objects.
            return {} if owner == "JSONSchemaProps" else {"type": "object"}
        cls = getattr(models, kind, None)
        if cls is None or not hasattr(cls, "openapi_types"):
            return {"type": "object"}
        return {"$ref": f"#/definitions/{self.name_of(cls, package)}"}


_PRIMITIVES: dict[str, Schema] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int32"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "bytes": {"type": "string", "format": "byte"},
    "datetime": {"$ref": f"#/definitions/{TIME}"},
    "date": {"type": "string", "format": "date"},
}

_SPECIAL: dict[str, Schema] = {
    f"{META}.Patch": {
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
        "type": "object",
    },
    TIME: {
        "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON.  "
        "Wrappers are provided for many of the factory methods that the time package offers.",
        "type": "string",
        "format": "date-time",
    },
    MICRO_TIME: {
        "description": "MicroTime is version of Time with microsecond level precision.",
        "type": "string",
        "format": "date-time",
    },
    INT_OR_STRING: {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
        "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, for "
        "example, a JSON field that can accept a name or number.",
        "type": "string",
        "format": "int-or-string",
    },
    QUANTITY: {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
        "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.",
        "type": "string",
    },
}


@functools.cache
def builtin_definitions(kinds: tuple[Gvk, ...]) -> tuple[dict[str, Schema], dict[Gvk, str]]:
    """(definitions by name, definition name of each (group, version, kind)) for the given built-in kinds.

    Each kind brings its List and everything it refers to; `autoscaling/v1 Scale` and `meta/v1 Status` and
    `DeleteOptions` come along as kube-apiserver always publishes them. Core kinds go first so types shared with
    other groups (PodTemplateSpec) get their core names.
    """
    builder = _Builder()
    by_gvk: dict[tuple[str, str, str], str] = {}
    for core_kind in _CORE_ROOTS:  # every core type gets its core name, whichever group refers to it first
        cls = model_class("", core_kind)
        if cls is not None:
            builder.name_of(cls, PACKAGES[""])
    wanted = sorted(set(kinds) | {("autoscaling", "v1", "Scale")}, key=lambda k: (k[0] != "", k))
    for group, version, kind in wanted:
        package = PACKAGES.get(group)
        if package is None:
            continue
        for name in (kind, f"{kind}List"):
            if name == "ScaleList":
                continue
            cls = model_class(group, name)
            if cls is None:
                continue
            definition = builder.name_of(cls, package)
            by_gvk[(group, version, name)] = definition
            builder.definitions[definition]["x-kubernetes-group-version-kind"] = [
                {"group": group, "kind": name, "version": version}
            ]
    for meta_kind in ("Status", "DeleteOptions"):
        cls = model_class("", meta_kind)
        if cls is not None:
            definition = builder.name_of(cls, META)
            builder.definitions[definition]["x-kubernetes-group-version-kind"] = [
                {"group": "", "kind": meta_kind, "version": "v1"}
            ]
    definitions = dict(builder.definitions)
    definitions.update(_SPECIAL)
    return definitions, by_gvk
