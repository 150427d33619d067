"""The lab's object storage: what etcd plus kube-apiserver's registry do, in memory.

Objects are plain dicts (the JSON the API speaks). Every change gets the next resourceVersion and becomes a watch
event; watchers resume from any resourceVersion still in the history. Objects clients send are validated
(`validation`, and custom objects against their schema) and admission hooks run on create and update (defaulting,
IP allocation, SCC checks); deleting an owner deletes its
dependents (background garbage collection). Every object handed out is a deep copy, so callers can never change
stored state behind the store's back.
"""

from __future__ import annotations

import builtins
import copy
import itertools
import logging
import random
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast

from kalab.lab.apiserver import defaults, fieldmanager, validation
from kalab.lab.apiserver.errors import (
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    field_invalid,
    gone,
    invalid,
    not_found,
)
from kalab.lab.apiserver.resources import Registry, ResourceType
from kalab.lab.apiserver.selectors import Predicate, field_selector, label_selector
from kalab.model import objects

_log = logging.getLogger(__name__)
Obj = dict[str, Any]
T = TypeVar("T")
Operation = Literal["CREATE", "UPDATE", "DELETE"]
Propagation = Literal["Background", "Foreground", "Orphan"]
EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
HISTORY = 20000  # watch events kept for resuming; older resourceVersions get 410 Expired
_NAME_CHARS = string.ascii_lowercase + string.digits
# The manager named in managedFields for writes made inside the lab (its controllers) that name none.
LAB_MANAGER = "kalab-controllers"
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
NAMESPACE_FINALIZER = "kubernetes"


@dataclass(frozen=True)
class Event:
    type: EventType
    rt: ResourceType
    object: Obj
    rv: int


# An admission hook may change the object it is given (mutating) or raise ApiError (validating).
Admission = Callable[[Operation, ResourceType, Obj, Obj | None], None]
Subscriber = Callable[[Event], None]
# A validator names what is wrong with an object about to be stored (a custom object against its CRD's schema).
Validator = Callable[[ResourceType, Obj], "builtins.list[FieldError]"]


_SCALARS = (str, int, float, bool, type(None))


def clone(value: T) -> T:
    """A deep copy of a JSON value: several times faster than copy.deepcopy, which matters because every object
    handed out is a copy and controllers list whole kinds (255 services listed for each of 255 creates)."""
    return cast(T, _clone(value))


def _clone(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: _clone(item) for key, item in value.items()}
    if kind is list:
        return [_clone(item) for item in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)  # not JSON (a tuple a controller put in): still a safe copy


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def initial_status(rt: ResourceType, obj: Obj) -> Obj | None:
    """The status kube-apiserver gives an object it creates (what the client's `status` is replaced with)."""
    if rt.key == "/services":
        return {"loadBalancer": {}}
    if rt.key == "/namespaces":
        return {"phase": "Active"}
    if rt.key == "/pods":
        return {"phase": "Pending", "qosClass": _qos_class(obj)}
    if rt.key == "apps/daemonsets":
        return {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}
    if rt.key == "apps/replicasets":
        return {"replicas": 0}
    if rt.key == "apiextensions.k8s.io/customresourcedefinitions":
        versions = objects.spec(obj).get("versions") or []
        stored = [v.get("name") for v in versions if isinstance(v, dict) and v.get("storage")]
        return {"acceptedNames": {"kind": "", "plural": ""}, "storedVersions": stored}
    if rt.key == "/nodes":
        return obj.get("status")  # a kubelet registers its node with the status it observed
    if "status" in rt.subresources:
        return {} if rt.group in fieldmanager.COMPILED_GROUPS else None
    return obj.get("status")


def _qos_class(pod: Obj) -> str:
    containers = list(objects.spec(pod).get("containers") or [])
    resources = [c.get("resources") or {} for c in containers if isinstance(c, dict)]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        all((r.get("limits") or {}).get(k) for k in ("cpu", "memory"))
        and all(
            (r.get("requests") or {}).get(k, (r.get("limits") or {}).get(k)) == r["limits"][k]
            for k in ("cpu", "memory")
        )
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _blocked(rt: ResourceType, obj: Obj) -> bool:
    """Whether deleting `obj` must wait: it has finalizers (a namespace also its spec.finalizers)."""
    if objects.finalizers_of(obj):
        return True
    return rt.key == "/namespaces" and bool(objects.spec(obj).get("finalizers"))


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return meta


class Store:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._cond = threading.Condition()
        self._rv = itertools.count(1)
        self._last_rv = 0
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._admission: builtins.list[Admission] = []
        self._subscribers: builtins.list[Subscriber] = []
        self._validators: builtins.list[Validator] = []

    # -- extension points --------------------------------------------------------------------------------------

    def add_admission(self, hook: Admission) -> None:
        self._admission.append(hook)

    def add_validator(self, validator: Validator) -> None:
        """Checked, after admission, on every write that asks for validation (what clients send)."""
        self._validators.append(validator)

    def _validate_admitted(self, rt: ResourceType, obj: Obj) -> None:
        errors = [error for validator in self._validators for error in validator(rt, obj)]
        if errors:
            raise field_invalid(rt.kind, objects.name_of(obj), errors, rt.group)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Called for every event, in order, outside the store's lock (controllers enqueue work from it); an
        exception it raises is logged and goes no further."""
        self._subscribers.append(subscriber)

    # -- reads -------------------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._last_rv

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self._cond:
            found = self._objects.get(rt.key, {}).get((self._ns(rt, namespace), name))
            if found is None:
                raise not_found(rt.plural, name, rt.group)
            return clone(found)

    def try_get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.get(rt, namespace, name)
        except ApiError:
            return None

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        labels: str | None = None,
        fields: str | None = None,
    ) -> tuple[builtins.list[Obj], int]:
        """Matching objects sorted by namespace and name, and the resourceVersion they were read at."""
        match = self._matcher(labels, fields)
        with self._cond:
            items = [
                clone(obj)
                for (ns, _), obj in sorted(self._objects.get(rt.key, {}).items())
                if (not namespace or not rt.namespaced or ns == namespace) and match(obj)
            ]
            return items, self._last_rv

    def shared_list(
        self, rt: ResourceType, namespace: str | None = None, labels: str | None = None
    ) -> builtins.list[Obj]:
        """Like `list`, but the stored objects themselves, as a client-go lister hands out its cache's: for
        controllers that read whole kinds on every pass. The store never changes a stored object (a write stores
        a new one), so they stay as read; callers must not change them either (clone first)."""
        match = self._matcher(labels, None)
        with self._cond:
            return [
                obj
                for (ns, _), obj in sorted(self._objects.get(rt.key, {}).items())
                if (not namespace or not rt.namespaced or ns == namespace) and match(obj)
            ]

    def collect(self, rt: ResourceType, read: Callable[[Obj], T | None]) -> builtins.list[T]:
        """`read` applied to every stored object of `rt`, the Nones left out: for hot paths (admission, event
        handlers) that need a few values of every object, without copying each. `read` gets the stored object
        itself, so it must neither change it nor keep any part of it that can change (return scalars)."""
        with self._cond:
            found = (read(obj) for obj in self._objects.get(rt.key, {}).values())
            return [value for value in found if value is not None]

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

    @staticmethod
    def _matcher(labels: str | None, fields: str | None) -> Predicate:
        by_label, by_field = label_selector(labels), field_selector(fields)
        return lambda obj: by_label(obj) and by_field(obj)

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
        if wanted_rv and str(wanted_rv) != old["metadata"]["resourceVersion"]:
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
            self._validate_admitted(rt, merged)
        events: builtins.list[Event] = []
        with self._cond:
            bucket = self._objects.setdefault(rt.key, {})
            current = bucket.get((ns, name))
            if current is None:
                raise not_found(rt.plural, name, rt.group)
            if current["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, name, rt.group)
            if merged == current:
                return clone(current)  # no-op updates keep their resourceVersion, as in Kubernetes
            if dry_run:
                return clone(merged)
            events.append(self._commit("MODIFIED", rt, merged, bucket, ns))
            if merged["metadata"].get("deletionTimestamp") and not _blocked(rt, merged):
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
            raise invalid(rt.kind, old["metadata"]["name"], message, rt.group)

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

    def _delete_locked(
        self, rt: ResourceType, ns: str, name: str, events: builtins.list[Event], propagation: Propagation
    ) -> Obj:
        bucket = self._objects.get(rt.key, {})
        obj = bucket[(ns, name)]
        meta = obj["metadata"]
        uid = meta["uid"]
        if propagation == "Orphan":
            self._orphan_dependents(uid, events)
        dependents = self._dependents(uid)
        if propagation == "Foreground" and dependents and FOREGROUND not in objects.finalizers_of(obj):
            obj = clone(obj)
            obj["metadata"]["finalizers"] = [*objects.finalizers_of(obj), FOREGROUND]
        if _blocked(rt, obj) or (propagation == "Foreground" and dependents):
            if not obj["metadata"].get("deletionTimestamp"):
                obj = clone(obj)
                obj["metadata"]["deletionTimestamp"] = now_rfc3339()
                obj["metadata"]["deletionGracePeriodSeconds"] = 0
                if rt.key == "/namespaces":
                    obj.setdefault("status", {})["phase"] = "Terminating"
            if obj is not bucket[(ns, name)]:
                events.append(self._commit("MODIFIED", rt, obj, bucket, ns))
            if propagation == "Foreground":
                for dep_rt, dep_ns, dep_name in dependents:
                    if (dep_ns, dep_name) in self._objects.get(dep_rt.key, {}):
                        self._delete_locked(dep_rt, dep_ns, dep_name, events, "Foreground")
                self._settle_owner(uid, events)
            current = self._objects.get(rt.key, {}).get((ns, name))
            return clone(current if current is not None else events[-1].object)
        return self._remove_locked(rt, ns, name, events, propagation)

    def _remove_locked(
        self, rt: ResourceType, ns: str, name: str, events: builtins.list[Event], propagation: Propagation
    ) -> Obj:
        """Take the object out of storage, with (Background) its dependents and a namespace's content."""
        victim = self._objects[rt.key].pop((ns, name))
        events.append(self._record("DELETED", rt, victim))
        if rt.key == "/namespaces":
            events += self._drop_namespace(name)
        if propagation != "Orphan":
            for dep_rt, dep_ns, dep_name in self._dependents(victim["metadata"]["uid"]):
                if (dep_ns, dep_name) in self._objects.get(dep_rt.key, {}):
                    self._delete_locked(dep_rt, dep_ns, dep_name, events, "Background")
        for ref in victim["metadata"].get("ownerReferences") or []:
            self._settle_owner(str(ref.get("uid")), events)
        return clone(victim)

    def _dependents(self, owner_uid: str) -> builtins.list[tuple[ResourceType, str, str]]:
        found = []
        for key, bucket in self._objects.items():
            for (ns, name), obj in bucket.items():
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in refs):
                    found.append((self.registry.by_key(key), ns, name))
        return found

    def _orphan_dependents(self, owner_uid: str, events: builtins.list[Event]) -> None:
        for dep_rt, ns, name in self._dependents(owner_uid):
            bucket = self._objects[dep_rt.key]
            obj = clone(bucket[(ns, name)])
            refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
            if refs:
                obj["metadata"]["ownerReferences"] = refs
            else:
                obj["metadata"].pop("ownerReferences", None)
            events.append(self._commit("MODIFIED", dep_rt, obj, bucket, ns))

    def _settle_owner(self, owner_uid: str, events: builtins.list[Event]) -> None:
        """An owner deleted in the foreground goes once its last dependent has gone."""
        for key, bucket in self._objects.items():
            for (ns, name), owner in builtins.list(bucket.items()):
                if owner["metadata"].get("uid") != owner_uid:
                    continue
                if FOREGROUND not in objects.finalizers_of(owner) or self._dependents(owner_uid):
                    return
                rt = self.registry.by_key(key)
                owner = clone(owner)
                rest = [f for f in objects.finalizers_of(owner) if f != FOREGROUND]
                if rest:
                    owner["metadata"]["finalizers"] = rest
                else:
                    owner["metadata"].pop("finalizers", None)
                events.append(self._commit("MODIFIED", rt, owner, bucket, ns))
                if not _blocked(rt, owner):
                    self._remove_locked(rt, ns, name, events, "Background")
                return

    def _drop_namespace(self, namespace: str) -> builtins.list[Event]:
        events = []
        for key, bucket in self._objects.items():
            for ident in [i for i in bucket if i[0] == namespace]:
                events.append(self._record("DELETED", self.registry.by_key(key), bucket.pop(ident)))
        return events

    # -- watch -------------------------------------------------------------------------------------------------

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        since: int | None = None,
        labels: str | None = None,
        fields: str | None = None,
        timeout: float = 1800.0,
        bookmark_every: float | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Events after resourceVersion `since` (or from now), until `timeout` or `stop`; never loses one."""
        match = self._matcher(labels, fields)
        with self._cond:
            cursor = self._last_rv if since is None else since
            if self._history and cursor < self._history[0].rv - 1 and cursor < self._last_rv:
                raise gone(f"too old resource version: {cursor} ({self._history[0].rv - 1})")
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + bookmark_every if bookmark_every else None
        while not (stop and stop.is_set()):
            with self._cond:
                pending = self._since(cursor)
                if not pending:
                    wake = min(deadline, next_bookmark or deadline) - time.monotonic()
                    if wake > 0:
                        self._cond.wait(min(wake, 1.0))
                    pending = self._since(cursor)
                last = self._last_rv
            for event in pending:
                cursor = event.rv
                ns = event.object["metadata"].get("namespace", "")
                if event.rt.key == rt.key and (not namespace or ns == namespace) and match(event.object):
                    yield Event(event.type, rt, clone(event.object), event.rv)
            now = time.monotonic()
            if now >= deadline:
                return
            if next_bookmark is not None and now >= next_bookmark:
                cursor = max(cursor, last)
                yield Event("BOOKMARK", rt, {"kind": rt.kind, "apiVersion": rt.api_version,
                                              "metadata": {"resourceVersion": str(cursor)}}, cursor)  # fmt: skip
                next_bookmark = now + (bookmark_every or 0)

    # -- internals ---------------------------------------------------------------------------------------------

    def _since(self, cursor: int) -> builtins.list[Event]:
        # Every resourceVersion is one event in the history, so the cursor maps straight to an index.
        if not self._history:
            return []
        skip = max(0, cursor - self._history[0].rv + 1)
        return list(itertools.islice(self._history, skip, None))

    def _ns(self, rt: ResourceType, namespace: str | None) -> str:
        return (namespace or "") if rt.namespaced else ""

    def _exists(self, key: str, ns: str, name: str) -> bool:
        with self._cond:
            return (ns, name) in self._objects.get(key, {})

    def _commit(
        self, type_: EventType, rt: ResourceType, obj: Obj, bucket: dict[tuple[str, str], Obj], ns: str
    ) -> Event:
        rv = next(self._rv)
        obj["metadata"]["resourceVersion"] = str(rv)
        bucket[(ns, obj["metadata"]["name"])] = obj
        self._last_rv = rv
        event = Event(type_, rt, clone(obj), rv)
        self._history.append(event)
        self._cond.notify_all()
        return event

    def _record(self, type_: EventType, rt: ResourceType, obj: Obj) -> Event:
        rv = next(self._rv)
        self._last_rv = rv
        deleted = clone(obj)
        deleted["metadata"]["resourceVersion"] = str(rv)
        event = Event(type_, rt, deleted, rv)
        self._history.append(event)
        self._cond.notify_all()
        return event

    def _notify(self, events: builtins.list[Event]) -> None:
        """Hand each committed event to every subscriber. The write is done whatever they do: a subscriber that
        fails is logged and the others still get the event, so a controller's bug never fails the client's write."""
        for event in events:
            for subscriber in self._subscribers:
                try:
                    subscriber(event)
                except Exception:
                    _log.exception(
                        "a store subscriber failed on %s %s %s/%s",
                        event.type, event.rt.kind, objects.namespace_of(event.object), objects.name_of(event.object),
                    )  # fmt: skip
