"""What the workload controllers share: Kubernetes-style generated-name hashes, IntOrString scaling, and the
base of the controllers whose pod creations admission may reject (FailedCreate events, backoff retries)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any, Final

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.store import Event, Obj
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller
from kalab.model import objects

# Hash characters Kubernetes uses for generated names (no vowels, no look-alikes), so hashes read like the seed's.
_SAFE: Final = "bcdfghjklmnpqrstvwxz2456789"
# Changes to these may turn a rejected pod creation (SCC admission) into an accepted one: retry at once.
_GRANT_KEYS: Final = (
    "security.openshift.io/securitycontextconstraints",
    "rbac.authorization.k8s.io/clusterrolebindings",
    "rbac.authorization.k8s.io/rolebindings",
    "/serviceaccounts",
)


def short_hash(value: Any, length: int = 10) -> str:
    """A stable hash of a JSON value in Kubernetes' safe alphabet (`7459c85f64`-like); same input, same hash."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:length])


def scaled(value: Any, total: int, default: int, round_up: bool) -> int:
    """An IntOrString such as `1` or `"25%"` of `total`."""
    if value is None:
        return default
    if isinstance(value, str) and value.endswith("%"):
        try:
            share = float(value[:-1]) * total / 100.0
        except ValueError:
            return default
        return math.ceil(share) if round_up else math.floor(share)
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class RetryingController(Controller):
    """A controller whose pod creations may be rejected by admission: FailedCreate events and backoff retries."""

    retry_initial = 1.0
    retry_cap = 10.0

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self._create_failures: dict[str, int] = {}
        self.pods_rt = ctx.rt("/pods")

    def _grant_watches(self) -> None:
        """Retry failing keys as soon as anything that might grant the missing permission changes."""
        served = {rt.key for rt in self.ctx.registry}
        for key in _GRANT_KEYS:
            if key in served:
                self.watches[key] = lambda event: list(self._create_failures)

    def _create_pods(self, key: str, owner_rt: ResourceType, owner: Obj, pods: Iterable[Obj]) -> bool:
        """Create pods in order, stopping at the first rejection (recorded as FailedCreate); True if all made it."""
        for pod in pods:
            try:
                made = self.ctx.store.create(self.pods_rt, pod)
            except ApiError as err:
                self.ctx.record_event(owner, "FailedCreate", f"Error creating: {err.message}", "Warning")
                self._create_failures[key] = self._create_failures.get(key, 0) + 1
                return False
            if not self._owner_exists(owner_rt, owner):
                # Deleted while we were creating: the garbage collector already ran, so this pod is ours to remove.
                self._delete_pod(owner, made)
                return False
            self.ctx.record_event(owner, "SuccessfulCreate", f"Created pod: {objects.name_of(made)}")
        self._create_failures.pop(key, None)
        return True

    def _owner_exists(self, owner_rt: ResourceType, owner: Obj) -> bool:
        meta = objects.meta(owner)
        current = self.ctx.store.try_get(owner_rt, meta.get("namespace"), str(meta.get("name")))
        return current is not None and objects.meta(current).get("uid") == meta.get("uid")

    def _delete_orphans(self, kind: str, namespace: str | None, name: str, owner_uid: str | None = None) -> None:
        """Pods whose controller (`kind` `name`) is gone, or has another uid now: what the garbage collector
        removes when an owner disappears while its pods were being created."""
        for pod in self.ctx.store.list(self.pods_rt, namespace)[0]:
            ref = objects.controller_of(pod)
            if ref and ref.get("kind") == kind and ref.get("name") == name and ref.get("uid") != owner_uid:
                with contextlib.suppress(ApiError):
                    self.ctx.store.delete(self.pods_rt, namespace, objects.name_of(pod))

    def _retry_delay(self, key: str) -> float | None:
        failures = self._create_failures.get(key)
        if not failures:
            return None
        return float(min(self.retry_cap, self.retry_initial * 2 ** (failures - 1)))

    def _delete_pod(self, owner: Obj, pod: Obj) -> None:
        meta = objects.meta(pod)
        try:
            self.ctx.store.delete(self.pods_rt, meta.get("namespace"), str(meta.get("name")))
        except ApiError as err:
            if err.code != 404:
                raise
            return
        self.ctx.record_event(owner, "SuccessfulDelete", f"Deleted pod: {meta.get('name')}")


def owner_key(kind: str) -> Any:
    def keys(event: Event) -> list[str]:
        ref = objects.controller_of(event.object)
        if ref is None or ref.get("kind") != kind:
            return []
        return [f"{objects.namespace_of(event.object)}/{ref.get('name')}"]

    return keys
