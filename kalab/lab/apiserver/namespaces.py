"""Namespace termination as kube-controller-manager's namespace controller does it.

A deleted namespace keeps its `spec.finalizers: ["kubernetes"]`, so the API server only marks it (deletionTimestamp,
status.phase Terminating). This controller then deletes everything in it, writes the deletion conditions the real
controller writes, waits while content with finalizers remains, and finally removes the "kubernetes" finalizer,
whereupon the store deletes the namespace.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.store import NAMESPACE_FINALIZER, Obj, Store, now_rfc3339
from kalab.model import objects

_log = logging.getLogger(__name__)
MANAGER = "kube-controller-manager"


def _condition(type_: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {"type": type_, "status": status, "lastTransitionTime": now, "reason": reason, "message": message}


def conditions(remaining: dict[str, int], finalizers: dict[str, int], now: str) -> list[Obj]:
    """The five conditions the namespace controller writes while it deletes a namespace's content."""
    out = [
        _condition(
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered",
            now,
        ),
        _condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
            now,
        ),
        _condition(
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
            now,
        ),
    ]
    if remaining:
        listed = ", ".join(
            f"{resource} has {count} resource instances" for resource, count in sorted(remaining.items())
        )
        out.append(
            _condition(
                "NamespaceContentRemaining",
                "True",
                "SomeResourcesRemain",
                f"Some resources are remaining: {listed}",
                now,
            )
        )
    else:
        out.append(
            _condition("NamespaceContentRemaining", "False", "ContentRemoved", "All content successfully removed", now)
        )
    if finalizers:
        listed = ", ".join(f"{name} in {count} resource instances" for name, count in sorted(finalizers.items()))
        message = f"Some content in the namespace has finalizers remaining: {listed}"
        out.append(_condition("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain", message, now))
    else:
        message = "All content-preserving finalizers finished"
        out.append(_condition("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers", message, now))
    return out


class NamespaceTerminator:
    """Finishes namespaces the API server marked for deletion, `pace` seconds after each pass (0: at once)."""

    def __init__(self, store: Store, pace: float) -> None:
        self.store = store
        self.pace = pace
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()
        self._stopped = False

    def start(self, name: str) -> None:
        if self.pace <= 0:
            self.run(name)
            return
        self._schedule(name)

    def _schedule(self, name: str) -> None:
        with self._lock:
            if self._stopped or name in self._timers:
                return
            timer = threading.Timer(self.pace, self._tick, args=(name,))
            timer.daemon = True
            self._timers[name] = timer
        timer.start()

    def _tick(self, name: str) -> None:
        with self._lock:
            self._timers.pop(name, None)
        try:
            done = self.run(name)
        except Exception:  # a failed pass is retried, as the controller requeues
            _log.exception("terminating namespace %s failed", name)
            done = False
        if not done:
            self._schedule(name)

    def run(self, name: str) -> bool:
        """One pass of the namespace controller; True when the namespace is gone (or was never terminating)."""
        ns_rt = self.store.registry.by_key("/namespaces")
        ns = self.store.try_get(ns_rt, None, name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return True
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        seen: set[str] = set()
        for rt in self.store.registry:
            if not rt.namespaced or rt.key in seen or "delete" not in rt.verbs:
                continue
            seen.add(rt.key)
            for obj in self.store.list(rt, name)[0]:
                meta = obj["metadata"]
                if not meta.get("deletionTimestamp"):
                    with contextlib.suppress(ApiError):
                        self.store.delete(rt, name, meta["name"])
                left = self.store.try_get(rt, name, meta["name"])
                if left is None:
                    continue
                resource = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
                remaining[resource] = remaining.get(resource, 0) + 1
                for finalizer in objects.finalizers_of(left):
                    finalizers[finalizer] = finalizers.get(finalizer, 0) + 1
        ns = self.store.try_get(ns_rt, None, name)
        if ns is None:
            return True
        wanted = conditions(remaining, finalizers, now_rfc3339())
        if _condition_summary(objects.conditions_of(ns)) != _condition_summary(wanted):
            ns["status"] = {**objects.status(ns), "phase": "Terminating", "conditions": wanted}
            ns["metadata"].pop("resourceVersion", None)
            with contextlib.suppress(ApiError):
                ns = self.store.update(ns_rt, ns, subresource="status", manager=MANAGER)
        if remaining:
            return False
        spec = objects.spec(ns)
        if NAMESPACE_FINALIZER in (spec.get("finalizers") or []):
            ns["spec"] = {**spec, "finalizers": [f for f in spec["finalizers"] if f != NAMESPACE_FINALIZER]}
            ns["metadata"].pop("resourceVersion", None)
            with contextlib.suppress(ApiError):
                self.store.update(ns_rt, ns, subresource="finalize", manager=MANAGER)
        return self.store.try_get(ns_rt, None, name) is None

    def stop(self) -> None:
        """Stop (at server shutdown): give each pending namespace one last pass now rather than leave it."""
        with self._lock:
            self._stopped = True
            pending = list(self._timers.items())
            self._timers.clear()
        for name, timer in pending:
            timer.cancel()
            with contextlib.suppress(ApiError):
                self.run(name)


def _condition_summary(found: Iterable[Mapping[str, Any]]) -> list[tuple[object, ...]]:
    return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in found]
