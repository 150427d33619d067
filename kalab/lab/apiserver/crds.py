"""CustomResourceDefinitions: what a CRD in the store makes the API server serve.

A CRD becomes one ResourceType per served version (scope, names, short names, categories, the status subresource,
additionalPrinterColumns as Columns). The Registry follows the store synchronously, from a store subscriber, so a
client that creates a CRD and then its first custom object in the next request never sees a 404; the
status conditions a client waits on (NamesAccepted, Established) are written by a small controller.
Deleting a CRD deletes its custom objects, as kube-apiserver does, before the resource stops being served.
Custom objects are pruned and defaulted (kalab.lab.apiserver.structural) from their version's openAPIV3Schema on
every write, and validated against it (schema_validation) on every write a client sends; so are the OpenShift kinds
the lab serves as built-ins, which are CRDs on OpenShift.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kalab.lab.apiserver.errors import ApiError, FieldError, invalid
from kalab.lab.apiserver.openshift_schemas import openshift_schemas
from kalab.lab.apiserver.resources import Column, ResourceType
from kalab.lab.apiserver.schema_validation import errors_of
from kalab.lab.apiserver.store import Event, Obj, Operation, Store, now_rfc3339
from kalab.lab.apiserver.structural import apply_defaults, prune
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller, object_key
from kalab.model import objects

_log = logging.getLogger(__name__)
CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def resource_types(crd: Obj) -> list[ResourceType]:
    """The ResourceTypes a CRD serves: one per served version, the storage version first."""
    spec = objects.spec(crd)
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    if not (group and plural and kind):
        return []
    versions = [v for v in spec.get("versions") or [] if v.get("served", True) and v.get("name")]
    versions.sort(key=lambda v: not v.get("storage", False))
    types = []
    for version in versions:
        subresources = {"status"} if "status" in (version.get("subresources") or {}) else set()
        if "scale" in (version.get("subresources") or {}):
            subresources.add("scale")
        columns = tuple(
            Column(
                name=str(col.get("name", "")),
                type=str(col.get("type", "string")),
                json_path=str(col.get("jsonPath", "")),
                priority=int(col.get("priority", 0) or 0),
                description=str(col.get("description", "")),
            )
            for col in version.get("additionalPrinterColumns") or []
        )
        types.append(
            ResourceType(
                group=group,
                version=version["name"],
                kind=kind,
                plural=plural,
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular") or kind.lower(),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=frozenset(subresources),
                columns=columns or (Column("Age", "date", ".metadata.creationTimestamp"),),
            )
        )
    return types


def validate(crd: Obj) -> None:
    """The checks kube-apiserver makes that matter here; a failure is a 422 Invalid."""
    name = objects.name_of(crd)
    spec = objects.spec(crd)
    names = spec.get("names") or {}
    group, plural = spec.get("group", ""), names.get("plural", "")
    problems = []
    if not group or "." not in group:
        problems.append("spec.group: Invalid value: should be a domain with at least one dot")
    if not plural or not _DNS_LABEL.match(plural):
        problems.append("spec.names.plural: Invalid value: must be a lower-case DNS label")
    if not names.get("kind"):
        problems.append("spec.names.kind: Required value")
    if name != f"{plural}.{group}":
        problems.append(f'metadata.name: Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        problems.append('spec.scope: Unsupported value: supported values: "Cluster", "Namespaced"')
    versions = spec.get("versions") or []
    if sum(1 for v in versions if v.get("storage")) != 1:
        problems.append("spec.versions: Invalid value: must have exactly one version marked as storage version")
    if problems:
        raise invalid("CustomResourceDefinition", name, ", ".join(problems))


def _admission(op: Operation, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    if rt.key == CRD_KEY and op in ("CREATE", "UPDATE"):
        validate(obj)


# The controller serving each store's CRDs, for defaulting on read (kube-apiserver defaults what it reads from etcd,
# so objects stored before a default was added show it too).
_controllers: weakref.WeakKeyDictionary[Store, CrdController] = weakref.WeakKeyDictionary()


def read_defaults(store: Store, rt: ResourceType, obj: Obj) -> Obj:
    """`obj` (read from `store`) with its schema's defaults filled in, as a copy: watch events share their objects."""
    controller = _controllers.get(store)
    schema = controller.schema(rt) if controller is not None else None
    if schema is None:
        return obj
    defaulted = copy.deepcopy(obj)
    apply_defaults(defaulted, schema)
    return defaulted


def _schema_of(crd: Obj, version: str) -> dict[str, Any] | None:
    for served in objects.spec(crd).get("versions") or []:
        if served.get("name") == version:
            schema = (served.get("schema") or {}).get("openAPIV3Schema")
            return schema if isinstance(schema, dict) else None
    return None


class CrdController(Controller):
    """Keeps the Registry in step with CRDs and marks each CRD NamesAccepted and Established."""

    name = "crds"

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.watches[CRD_KEY] = object_key
        self._served: dict[str, tuple[str, str, frozenset[str]]] = {}  # CRD name → (group, plural, versions)
        self._serving = threading.RLock()  # writers in many request threads notify at once
        # (group, version, kind) → structural schema: the served CRDs', and those of the OpenShift kinds the lab
        # serves as built-ins (CRDs on OpenShift, so defaulted and pruned the same way).
        self._builtin_schemas = openshift_schemas()
        self._schemas: dict[tuple[str, str, str], dict[str, Any]] = dict(self._builtin_schemas)
        self._schema_owner: dict[tuple[str, str, str], str] = {}  # which CRD a schema came from

    # The Registry changes in the writer's thread, right after the store commits.
    def _on_event(self, event: Event) -> None:
        if event.rt.key == CRD_KEY and event.type != "BOOKMARK":
            with self._serving:
                if event.type == "DELETED":
                    self._unserve(event.object)
                else:
                    self._serve(event.object)
        super()._on_event(event)

    def start(self) -> None:
        self.ctx.store.add_admission(_admission)
        self.ctx.store.add_admission(self._structural)
        self.ctx.store.add_validator(self._validate)
        _controllers[self.ctx.store] = self
        with self._serving:
            for crd in self.ctx.store.list(self.ctx.rt(CRD_KEY))[0]:
                self._serve(crd)
        super().start()

    def schema(self, rt: ResourceType) -> dict[str, Any] | None:
        """The structural schema of a custom (or OpenShift built-in) kind; None for Kubernetes' own kinds."""
        with self._serving:
            return self._schemas.get((rt.group, rt.version, rt.kind))

    def _structural(self, op: Operation, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Prune, then default, a custom object on every write, as kube-apiserver does for CRDs."""
        if op == "DELETE":
            return
        schema = self.schema(rt)
        if schema is not None:
            prune(obj, schema)
            apply_defaults(obj, schema)

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        """A custom object, pruned and defaulted, against its schema (types, required fields, enums, formats);
        on an update, what is unchanged from `old` is not judged again."""
        schema = self.schema(rt)
        return errors_of(obj, schema, old) if schema is not None else []

    def _serve(self, crd: Obj) -> None:
        name = objects.name_of(crd)
        types = resource_types(crd)
        for key in [k for k, owner in self._schema_owner.items() if owner == name]:
            del self._schema_owner[key]
            self._restore_schema(key)
        for rt in types:
            schema = _schema_of(crd, rt.version)
            if schema is not None:
                self._schemas[(rt.group, rt.version, rt.kind)] = schema
                self._schema_owner[(rt.group, rt.version, rt.kind)] = name
        versions = frozenset(rt.version for rt in types)
        previous = self._served.get(name)
        if previous is not None:
            moved = not types or (previous[0], previous[1]) != (types[0].group, types[0].plural)
            if moved or not versions >= previous[2]:
                # A version stopped being served: drop them all, then add back the ones still served.
                self._drop_types(previous[0], previous[1])
        for rt in types:
            self.ctx.registry.add(rt)
        if types:
            self._served[name] = (types[0].group, types[0].plural, versions)
        else:
            self._served.pop(name, None)

    def _restore_schema(self, key: tuple[str, str, str]) -> None:
        if key in self._builtin_schemas:
            self._schemas[key] = self._builtin_schemas[key]
        else:
            self._schemas.pop(key, None)

    def _unserve(self, crd: Obj) -> None:
        name = objects.name_of(crd)
        for key in [k for k, owner in self._schema_owner.items() if owner == name]:
            del self._schema_owner[key]
            self._restore_schema(key)
        served = self._served.pop(name, None)
        if served is None:
            return
        group, plural, _ = served
        rt = next((t for t in self.ctx.registry if t.group == group and t.plural == plural), None)
        if rt is not None:
            self._delete_objects(rt)
        self._drop_types(group, plural)

    def _delete_objects(self, rt: ResourceType) -> None:
        for obj in self.ctx.store.list(rt)[0]:
            meta = obj["metadata"]
            with contextlib.suppress(ApiError):  # already gone, e.g. with its owner
                self.ctx.store.delete(rt, meta.get("namespace"), meta["name"])

    def _drop_types(self, group: str, plural: str) -> None:
        self.ctx.registry.remove(group, plural)

    def initial_keys(self) -> Iterable[str]:
        return [objects.name_of(crd) for crd in self.ctx.store.list(self.ctx.rt(CRD_KEY))[0]]

    def reconcile(self, key: str) -> float | None:
        crds = self.ctx.rt(CRD_KEY)
        crd = self.ctx.store.try_get(crds, None, key)
        if crd is None:
            return None
        status = dict(objects.status(crd))
        names = objects.spec(crd).get("names") or {}
        kind = str(names.get("kind", ""))
        accepted = {
            "plural": names.get("plural"),
            "singular": names.get("singular") or kind.lower(),
            "kind": kind,
            "listKind": names.get("listKind") or f"{kind}List",
        }
        for optional in ("shortNames", "categories"):
            if names.get(optional):
                accepted[optional] = names[optional]
        conditions = _conditions(objects.conditions_of(crd), ("NamesAccepted", "Established"))
        stored = [v["name"] for v in objects.spec(crd).get("versions") or [] if v.get("storage")]
        wanted = {
            **status,
            "acceptedNames": accepted,
            "conditions": conditions,
            "storedVersions": sorted(set(status.get("storedVersions") or []) | set(stored)),
        }
        if wanted != objects.status(crd):
            crd["status"] = wanted
            self.ctx.store.update(crds, crd, subresource="status")  # a conflict is retried by the queue
        return None


def _conditions(existing: Sequence[Mapping[str, Any]], types: tuple[str, ...]) -> list[Mapping[str, Any]]:
    reasons = {
        "NamesAccepted": ("NoConflicts", "no conflicts found"),
        "Established": ("InitialNamesAccepted", "the initial names have been accepted"),
    }
    by_type = {c.get("type"): c for c in existing}
    result = [c for c in existing if c.get("type") not in types]
    for type_ in types:
        old = by_type.get(type_)
        if old is not None and old.get("status") == "True":
            result.append(old)
            continue
        reason, message = reasons[type_]
        result.append(
            {"type": type_, "status": "True", "lastTransitionTime": now_rfc3339(), "reason": reason, "message": message}
        )
    return result


def start_crd_controller(ctx: LabContext) -> CrdController:
    """Serve every CRD in the context's store and follow CRD changes from now on; stop it with `.stop()`."""
    controller = CrdController(ctx)
    controller.start()
    return controller
