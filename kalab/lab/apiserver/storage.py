"""The lab's object storage: what etcd does for kube-apiserver, in memory, and what deleting an object means.

Objects are plain dicts (the JSON the API speaks), held by kind, namespace and name under one lock. Every change
gets the next resourceVersion and becomes a watch event (`watchcache`); subscribers hear of each once the lock is
released. Deleting follows Kubernetes: an object with finalizers is only marked (deletionTimestamp) until they are
gone, and an owner's dependents (by ownerReferences) are deleted with it (Background), before it (Foreground) or
kept (Orphan), as kube-controller-manager's garbage collector would, but at once and under the same lock. Every
object handed out is a deep copy, so callers can never change stored state behind the storage's back. The write
path on top (admission, validation, field managers) is `store`'s.
"""

from __future__ import annotations

import builtins
import copy
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast

from kalab.lab.apiserver.errors import ApiError, not_found
from kalab.lab.apiserver.resources import Registry, ResourceType
from kalab.lab.apiserver.selectors import Predicate, field_selector, label_selector
from kalab.lab.apiserver.watchcache import HISTORY, Event, EventType, History
from kalab.model import objects

_log = logging.getLogger(__name__)
Obj = dict[str, Any]
T = TypeVar("T")
Propagation = Literal["Background", "Foreground", "Orphan"]
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
Subscriber = Callable[[Event], None]

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


def blocked(rt: ResourceType, obj: Obj) -> bool:
    """Whether deleting `obj` must wait: it has finalizers (a namespace also its spec.finalizers)."""
    if objects.finalizers_of(obj):
        return True
    return rt.key == "/namespaces" and bool(objects.spec(obj).get("finalizers"))


class Storage:
    """Objects under one lock, their reads and watches, their commits as events, and deletion."""

    def __init__(self, registry: Registry, history: int = HISTORY) -> None:
        self.registry = registry
        self._cond = threading.Condition()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._history = History(self._cond, history)
        self._subscribers: builtins.list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Called for every event, in order, outside the store's lock (controllers enqueue work from it); an
        exception it raises is logged and goes no further."""
        self._subscribers.append(subscriber)

    # -- reads -------------------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._history.last_rv

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
            return items, self._history.last_rv

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

    @staticmethod
    def _matcher(labels: str | None, fields: str | None) -> Predicate:
        by_label, by_field = label_selector(labels), field_selector(fields)
        return lambda obj: by_label(obj) and by_field(obj)

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
        for event in self._history.watch(rt, namespace, since, match, timeout, bookmark_every, stop):
            yield event if event.type == "BOOKMARK" else Event(event.type, rt, clone(event.object), event.rv)

    # -- deletion ----------------------------------------------------------------------------------------------

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
        if blocked(rt, obj) or (propagation == "Foreground" and dependents):
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
            for dep_rt, dep_ns, dep_name in self._dependents(objects.uid_of(victim)):
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
                if not blocked(rt, owner):
                    self._remove_locked(rt, ns, name, events, "Background")
                return

    def _drop_namespace(self, namespace: str) -> builtins.list[Event]:
        events = []
        for key, bucket in self._objects.items():
            for ident in [i for i in bucket if i[0] == namespace]:
                events.append(self._record("DELETED", self.registry.by_key(key), bucket.pop(ident)))
        return events

    # -- internals ---------------------------------------------------------------------------------------------

    def _ns(self, rt: ResourceType, namespace: str | None) -> str:
        return (namespace or "") if rt.namespaced else ""

    def _exists(self, key: str, ns: str, name: str) -> bool:
        with self._cond:
            return (ns, name) in self._objects.get(key, {})

    def _commit(
        self, type_: EventType, rt: ResourceType, obj: Obj, bucket: dict[tuple[str, str], Obj], ns: str
    ) -> Event:
        rv = self._history.next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        bucket[(ns, objects.name_of(obj))] = obj
        event = Event(type_, rt, clone(obj), rv)
        self._history.append(event)
        return event

    def _record(self, type_: EventType, rt: ResourceType, obj: Obj) -> Event:
        rv = self._history.next_rv()
        deleted = clone(obj)
        deleted["metadata"]["resourceVersion"] = str(rv)
        event = Event(type_, rt, deleted, rv)
        self._history.append(event)
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
                        event.type,
                        event.rt.kind,
                        objects.namespace_of(event.object),
                        objects.name_of(event.object),
                    )
