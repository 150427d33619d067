"""The lab's object store: what kube-apiserver's generic registry does on every write, over `storage`.

A create or update is defaulted (`defaults`), validated when a client sent it (`validation`, and custom objects
against their schema through the validators), recorded in managedFields (`fieldmanager`) and passed through the
admission hooks (defaulting, IP allocation, SCC checks) before it is committed; a delete passes the admission hooks
too. Reads, watches, the resourceVersions and what deleting means are `storage`'s and `watchcache`'s; the names
callers use from them are importable from here.
"""

from __future__ import annotations

import builtins
import random
import string
import uuid
from collections.abc import Callable
from typing import Any, Literal

from kalab.lab.apiserver import defaults, fieldmanager, validation
from kalab.lab.apiserver.errors import (
    FieldError,
    already_exists,
    bad_request,
    conflict,
    field_invalid,
    invalid,
    not_found,
)
from kalab.lab.apiserver.resources import Registry, ResourceType
from kalab.lab.apiserver.storage import (
    FOREGROUND,
    ORPHAN,
    Obj,
    Propagation,
    Storage,
    Subscriber,
    blocked,
    clone,
    now_rfc3339,
)
from kalab.lab.apiserver.watchcache import HISTORY, Event, EventType
from kalab.model import objects

__all__ = [
    "FOREGROUND",
    "HISTORY",
    "LAB_MANAGER",
    "NAMESPACE_FINALIZER",
    "ORPHAN",
    "Admission",
    "Event",
    "EventType",
    "Obj",
    "Operation",
    "Propagation",
    "Store",
    "Subscriber",
    "Validator",
    "clone",
    "now_rfc3339",
]

Operation = Literal["CREATE", "UPDATE", "DELETE"]
_NAME_CHARS = string.ascii_lowercase + string.digits
# The manager named in managedFields for writes made inside the lab (its controllers) that name none.
LAB_MANAGER = "kalab-controllers"
NAMESPACE_FINALIZER = "kubernetes"

# An admission hook may change the object it is given (mutating) or raise ApiError (validating).
Admission = Callable[[Operation, ResourceType, Obj, Obj | None], None]
# A validator names what is wrong with an object about to be stored (a custom object against its CRD's schema).
# On an update it is also given the stored object (CRD validation ratchets what did not change).
Validator = Callable[[ResourceType, Obj, Obj | None], "builtins.list[FieldError]"]


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return meta


class Store(Storage):
    """The objects of one lab's API, and the writes to them: create, update (or a subresource's) and delete."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry, HISTORY)  # read here, so a test can shorten the history of the stores it makes
        self._admission: builtins.list[Admission] = []
        self._validators: builtins.list[Validator] = []

    # -- extension points --------------------------------------------------------------------------------------

    def add_admission(self, hook: Admission) -> None:
        self._admission.append(hook)

    def add_validator(self, validator: Validator) -> None:
        """Checked, after admission, on every write that asks for validation (what clients send)."""
        self._validators.append(validator)

    def _validate_admitted(self, rt: ResourceType, obj: Obj, old: Obj | None = None) -> None:
        errors = [error for validator in self._validators for error in validator(rt, obj, old)]
        if errors:
            raise field_invalid(rt.kind, objects.name_of(obj), errors, rt.group)

    def field_schema(self, rt: ResourceType) -> fieldmanager.Schema:
        """How field ownership merges `rt`'s lists and maps (a custom resource's from its CRD's schema)."""
        openapi = None
        if rt.group not in fieldmanager.COMPILED_GROUPS:
            with self._cond:
                crd = self._objects.get("apiextensions.k8s.io/customresourcedefinitions", {}).get(
                    ("", f"{rt.plural}.{rt.group}")
                )
                for version in objects.spec(crd).get("versions") or []:
                    if isinstance(version, dict) and version.get("name") == rt.version:
                        openapi = clone((version.get("schema") or {}).get("openAPIV3Schema"))
        return fieldmanager.schema_for(rt.group, "status" in rt.subresources, openapi)

    # -- writes ------------------------------------------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        obj: Obj,
        namespace: str | None = None,
        *,
        manager: str = LAB_MANAGER,
        applied: bool = False,
        dry_run: bool = False,
        validate: bool = False,
    ) -> Obj:
        """Store a new object; `manager` is recorded in its managedFields (with `applied`, a server-side apply
        worked them out already). A dry run checks and admits it, and answers what would be stored (without a
        resourceVersion), but stores nothing. With `validate` (every write a client sends) the object must keep
        Kubernetes' rules (`validation`) and the validators' (its CRD's schema), else 422 and nothing is stored."""
        obj = clone(obj)
        meta = _meta(obj)
        ns = self._ns(rt, namespace or meta.get("namespace"))
        if rt.namespaced and not ns:
            raise bad_request(f"{rt.plural} must be created in a namespace")
        if rt.namespaced and rt.key != "/namespaces" and not self._exists("/namespaces", "", ns):
            raise not_found("namespaces", ns)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(rt.kind, "", "metadata.name: Required value: name or generateName is required")
            meta["name"] = prefix + "".join(random.choices(_NAME_CHARS, k=5))
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if rt.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        for server_set in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(server_set, None)
        if not applied:
            meta.pop("managedFields", None)
        defaults.apply(rt, obj)
        if rt.key == "/namespaces":
            # What kube-apiserver's namespace strategy and admission give every namespace.
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", [NAMESPACE_FINALIZER])
            obj.setdefault("status", {}).setdefault("phase", "Active")
        if validate:
            validation.validate(rt, obj)
        if not applied:
            schema = self.field_schema(rt)
            fieldmanager.record_update(None, obj, [], manager, rt.api_version, schema)
        for hook in self._admission:
            hook("CREATE", rt, obj, None)
        if validate:
            self._validate_admitted(rt, obj)
        with self._cond:
            bucket = self._objects.setdefault(rt.key, {})
            if (ns, meta["name"]) in bucket:
                raise already_exists(rt.plural, meta["name"], rt.group)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            meta["generation"] = 1
            if dry_run:
                return clone(obj)
            event = self._commit("ADDED", rt, obj, bucket, ns)
        self._notify([event])
        return clone(event.object)

    def update(
        self,
        rt: ResourceType,
        obj: Obj,
        namespace: str | None = None,
        subresource: str | None = None,
        *,
        manager: str = LAB_MANAGER,
        applied: bool = False,
        dry_run: bool = False,
        validate: bool = False,
    ) -> Obj:
        """Replace an object (or only its status with `subresource="status"`); a stale resourceVersion conflicts.

        `manager` is recorded in managedFields as an Update; with `applied` the object's managedFields were
        worked out by a server-side apply and are kept as they are. An object being deleted whose last
        finalizer this update removes is deleted. `validate` as for `create`."""
        obj = clone(obj)
        meta = _meta(obj)
        ns = self._ns(rt, namespace or meta.get("namespace"))
        name = meta.get("name") or ""
        with self._cond:
            old = self._objects.get(rt.key, {}).get((ns, name))
            if old is None:
                raise not_found(rt.plural, name, rt.group)
            old = clone(old)
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != objects.resource_version_of(old):
            raise conflict(rt.plural, name, rt.group)
        sent_managers = meta.get("managedFields")
        if subresource is None:
            defaults.apply(rt, obj)  # before the generation is decided, as kube-apiserver decodes with defaults
        merged = self._merge_update(rt, old, obj, subresource)
        self._check_finalizers(rt, old, merged)
        if validate:
            validation.validate(rt, merged)
        if applied:
            merged["metadata"]["managedFields"] = sent_managers or []
        else:
            schema = self.field_schema(rt)
            managers = fieldmanager.managers_of(old)
            if sent_managers and sent_managers != old["metadata"].get("managedFields"):
                managers = fieldmanager.decode(sent_managers)  # a client may replace managedFields outright
            fieldmanager.record_update(old, merged, managers, manager, rt.api_version, schema, subresource or "")
        for hook in self._admission:
            hook("UPDATE", rt, merged, old)
        if validate:
            self._validate_admitted(rt, merged, old)
        events: builtins.list[Event] = []
        with self._cond:
            bucket = self._objects.setdefault(rt.key, {})
            current = bucket.get((ns, name))
            if current is None:
                raise not_found(rt.plural, name, rt.group)
            if objects.resource_version_of(current) != objects.resource_version_of(old):
                raise conflict(rt.plural, name, rt.group)
            if merged == current:
                return clone(current)  # no-op updates keep their resourceVersion, as in Kubernetes
            if dry_run:
                return clone(merged)
            events.append(self._commit("MODIFIED", rt, merged, bucket, ns))
            if merged["metadata"].get("deletionTimestamp") and not blocked(rt, merged):
                self._remove_locked(rt, ns, name, events, "Background")
            result = clone(events[0].object)
        self._notify(events)
        return result

    @staticmethod
    def _check_finalizers(rt: ResourceType, old: Obj, new: Obj) -> None:
        if not old["metadata"].get("deletionTimestamp"):
            return
        added = [f for f in objects.finalizers_of(new) if f not in objects.finalizers_of(old)]
        if added:
            listed = ", ".join(f'"{f}"' for f in added)
            message = (
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, "
                f"found new finalizers []string{{{listed}}}"
            )
            raise invalid(rt.kind, objects.name_of(old), message, rt.group)

    @staticmethod
    def _merge_update(rt: ResourceType, old: Obj, new: Obj, subresource: str | None) -> Obj:
        if subresource == "status":
            merged = clone(old)
            merged["status"] = new.get("status", {})
            return merged
        if subresource == "finalize":  # a namespace's finalize subresource changes only spec.finalizers
            merged = clone(old)
            merged.setdefault("spec", {})["finalizers"] = objects.spec(new).get("finalizers") or []
            return merged
        merged = new
        merged["apiVersion"], merged["kind"] = rt.api_version, rt.kind
        meta, old_meta = merged["metadata"], old["metadata"]
        fixed_fields = ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp",
                        "deletionGracePeriodSeconds", "managedFields")  # fmt: skip
        for fixed in fixed_fields:
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
            else:
                meta.pop(fixed, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if "status" in rt.subresources:
            # With a status subresource, writes to the object never change its status.
            if "status" in old:
                merged["status"] = old["status"]
            else:
                merged.pop("status", None)
        spec_changed = {k: v for k, v in merged.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")
        }
        if spec_changed:
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        return merged

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: Propagation | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Delete an object, as kube-apiserver and its garbage collector do.

        An object with finalizers (a namespace: with spec.finalizers) is only marked: it gets deletionTimestamp
        and stays until its finalizers are gone. Its dependents (by ownerReferences) are deleted with it
        (Background, the default), first (Foreground: the owner waits, holding the foregroundDeletion finalizer,
        until they are gone), or kept without the reference to it (Orphan). Answers the object as it was deleted,
        or as it now is when only marked."""
        ns = self._ns(rt, namespace)
        events: builtins.list[Event] = []
        with self._cond:
            current = self._objects.get(rt.key, {}).get((ns, name))
            if current is None:
                raise not_found(rt.plural, name, rt.group)
            for hook in self._admission:
                hook("DELETE", rt, clone(current), None)
            if dry_run:
                return clone(current)
            result = self._delete_locked(rt, ns, name, events, propagation or "Background")
        self._notify(events)
        return result
