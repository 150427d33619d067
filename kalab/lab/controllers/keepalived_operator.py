"""The keepalived operator's reconcile loop (FACTS.md §2), running in the lab once OLM has installed it.

Per KeepalivedGroup: the Services that name it (any namespace), its own keepalived pods (unicast peers, spreadvips
owners) and its passwordAuth Secret go through the model's renderer; the result is the group's ConfigMap, its
DaemonSet, a PodMonitor with RBAC for prometheus-k8s where that API is served, and status.routerIDs plus a
ReconcileSuccess / ReconcileError condition. Until a keepalived-operator ClusterServiceVersion has Succeeded
nothing happens, exactly as on a cluster without the operator: groups sit there unreconciled.
"""

from __future__ import annotations

import base64
import binascii
import copy
import threading
from collections.abc import Mapping
from typing import Any, Final

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.store import Event, Obj, now_rfc3339
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller, split_key
from kalab.model import objects
from kalab.model.errors import KalabError
from kalab.model.keepalived_conf import render_config
from kalab.model.operator import GROUP_ANNOTATION, POD_GROUP_LABEL
from kalab.model.operator_manifests import (
    OPERATOR_IMAGE,
    OPERATOR_PACKAGE,
    config_map,
    daemon_set,
    pod_monitor,
    prometheus_role,
    prometheus_role_binding,
)

GROUPS: Final = "redhatcop.redhat.io/keepalivedgroups"
CSVS: Final = "operators.coreos.com/clusterserviceversions"
RESYNC: Final = "*"  # the key that re-queues every group (operator installed or removed)
# The condition types and reasons of the operator's utility library, typo included, as `oc get -o yaml` shows them.
SUCCESS: Final = ("ReconcileSuccess", "LastReconcileCycleSucceded")
FAILURE: Final = ("ReconcileError", "LastReconcileCycleFailed")
_METADATA_KEYS: Final = ("apiVersion", "kind", "metadata", "status")


def covers(have: Any, want: Any) -> bool:
    """Whether `have` already says everything `want` says; fields others add (apiserver defaults) are fine.

    Comparing this way keeps the operator from rewriting its DaemonSet on every pass just because the stored
    copy carries defaults the rendered one leaves out.
    """
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(k in have and covers(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(map(covers, have, want))
    return bool(have == want)


def _key(namespace: str | None, name: str) -> str:
    return f"{namespace or ''}/{name}"


class KeepalivedOperator(Controller):
    """`KeepalivedOperator(ctx)`; `operator_image` is what the DaemonSet's helper containers run."""

    name = "keepalived-operator"

    def __init__(self, ctx: LabContext, operator_image: str = OPERATOR_IMAGE) -> None:
        super().__init__(ctx)
        self.operator_image = operator_image
        # What earlier events said, so a change can re-queue the group an object USED to belong to as well
        # (an annotation edited away, a pod deleted) and unrelated changes (pod status churn) re-queue nothing.
        self._lock = threading.Lock()
        self._service_group: dict[str, str] = {}  # service ns/name → group ns/name
        self._pod_state: dict[str, tuple[str, str | None]] = {}  # pod ns/name → (group ns/name, hostIP)
        self._group_secret: dict[str, str] = {}  # group ns/name → passwordAuth Secret ns/name
        self.watches = {
            GROUPS: self._on_group,
            "/services": self._on_service,
            "/pods": self._on_pod,
            "/secrets": self._on_secret,
            "/configmaps": self._on_owned,
            "apps/daemonsets": self._on_owned,
            "monitoring.coreos.com/podmonitors": self._on_owned,
            "rbac.authorization.k8s.io/roles": self._on_owned,
            "rbac.authorization.k8s.io/rolebindings": self._on_owned,
            CSVS: self._on_csv,
        }

    # -- event → group keys ---------------------------------------------------------------------------------

    def initial_keys(self) -> list[str]:
        # The group resource appears only when OLM creates the CRD; resources not served yet have nothing to list.
        keys: list[str] = []
        for storage_key, func in self.watches.items():
            try:
                rt = self.ctx.rt(storage_key)
            except KalabError:
                continue
            items, rv = self.ctx.store.list(rt)
            for obj in items:
                keys += func(Event("ADDED", rt, obj, rv))
        return keys

    def _on_group(self, event: Event) -> list[str]:
        meta = objects.meta(event.object)
        key = _key(meta.get("namespace"), meta.get("name", ""))
        auth = objects.spec(event.object).get("passwordAuth") or {}
        secret = (auth.get("secretRef") or {}).get("name") if isinstance(auth, Mapping) else None
        with self._lock:
            if event.type == "DELETED" or not secret:
                self._group_secret.pop(key, None)
            else:
                self._group_secret[key] = _key(meta.get("namespace"), str(secret))
        return [key]

    def _on_service(self, event: Event) -> list[str]:
        meta = objects.meta(event.object)
        svc = _key(meta.get("namespace"), meta.get("name", ""))
        ref = str((meta.get("annotations") or {}).get(GROUP_ANNOTATION, "")).strip()
        ref = ref if "/" in ref and event.type != "DELETED" else ""
        with self._lock:
            old = self._service_group.pop(svc, "")
            if ref:
                self._service_group[svc] = ref
        return sorted({k for k in (old, ref) if k})

    def _on_pod(self, event: Event) -> list[str]:
        meta = objects.meta(event.object)
        pod = _key(meta.get("namespace"), meta.get("name", ""))
        label = (meta.get("labels") or {}).get(POD_GROUP_LABEL)
        state = None
        if label and event.type != "DELETED":
            state = (_key(meta.get("namespace"), str(label)), objects.status(event.object).get("hostIP"))
        with self._lock:
            old = self._pod_state.pop(pod, None)
            if state is not None:
                self._pod_state[pod] = state
        if old == state:
            return []  # phase or container status changed: neither peers nor spreadvips owners did
        return sorted({s[0] for s in (old, state) if s is not None})

    def _on_secret(self, event: Event) -> list[str]:
        meta = objects.meta(event.object)
        secret = _key(meta.get("namespace"), meta.get("name", ""))
        with self._lock:
            return sorted(group for group, ref in self._group_secret.items() if ref == secret)

    def _on_owned(self, event: Event) -> list[str]:
        # Someone edited or deleted what the operator renders: put it back.
        namespace = objects.meta(event.object).get("namespace")
        return [
            _key(namespace, ref.get("name", ""))
            for ref in objects.owner_references(event.object)
            if ref.get("kind") == "KeepalivedGroup"
        ]

    def _on_csv(self, event: Event) -> list[str]:
        name = str(objects.meta(event.object).get("name", ""))
        return [RESYNC] if name.startswith(f"{OPERATOR_PACKAGE}.") else []

    # -- reconcile ------------------------------------------------------------------------------------------

    def installed(self) -> bool:
        """A keepalived-operator CSV has Succeeded somewhere: the operator's Deployment is running."""
        csvs, _ = self.ctx.store.list(self.ctx.rt(CSVS))
        return any(
            objects.name_of(csv).startswith(f"{OPERATOR_PACKAGE}.") and objects.phase_of(csv) == "Succeeded"
            for csv in csvs
        )

    def _groups_rt(self) -> ResourceType | None:
        try:
            return self.ctx.rt(GROUPS)
        except KalabError:
            return None

    def reconcile(self, key: str) -> float | None:
        rt = self._groups_rt()
        if rt is None:
            return None
        if key == RESYNC:
            for each in self.ctx.store.list(rt)[0]:
                self.enqueue(_key(objects.namespace_of(each), objects.name_of(each)))
            return None
        if not self.installed():
            return None
        namespace, name = split_key(key)
        group = self.ctx.store.try_get(rt, namespace, name)
        if group is None:
            return None  # its ConfigMap, DaemonSet and the rest go with it (ownerReferences)
        previous = dict(objects.status(group).get("routerIDs") or {})
        try:
            rendered = render_config(
                group,
                # Every service on every pass: read shared, not copied (render_config only reads them).
                self.ctx.store.shared_list(self.ctx.rt("/services")),
                self.ctx.store.shared_list(self.ctx.rt("/pods"), namespace, labels=f"{POD_GROUP_LABEL}={name}"),
                previous_router_ids=previous,
                password=self._password(group),
            )
        except KalabError as err:
            self._write_status(rt, group, previous, FAILURE, str(err))
            self.ctx.record_event(group, "ProcessingError", str(err), "Warning")
            return None
        if self._apply(self.ctx.rt("/configmaps"), config_map(group, rendered.text)):
            for warning in rendered.warnings:
                self.ctx.record_event(group, "RenderWarning", warning, "Warning")
        self._apply(self.ctx.rt("apps/daemonsets"), daemon_set(group, self.operator_image))
        if self.ctx.registry.get("monitoring.coreos.com", "v1", "podmonitors") is not None:
            self._apply(self.ctx.rt("monitoring.coreos.com/podmonitors"), pod_monitor(group))
            self._apply(self.ctx.rt("rbac.authorization.k8s.io/roles"), prometheus_role(group))
            self._apply(self.ctx.rt("rbac.authorization.k8s.io/rolebindings"), prometheus_role_binding(group))
        self._write_status(rt, group, rendered.router_ids, SUCCESS, "")
        return None

    def _password(self, group: Obj) -> str | None:
        """The passwordAuth Secret's value (base64 `data`, or `stringData` as a client may have sent it)."""
        auth = objects.spec(group).get("passwordAuth")
        if not isinstance(auth, Mapping) or not auth:
            return None
        meta = group["metadata"]
        secret_name = str((auth.get("secretRef") or {}).get("name") or "")
        secret_key = str(auth.get("secretKey") or "password")
        where = f"KeepalivedGroup {meta['namespace']}/{meta['name']} spec.passwordAuth"
        if not secret_name:
            raise KalabError(f"{where} has no secretRef.name; name the Secret that holds the password.")
        secret = self.ctx.store.try_get(self.ctx.rt("/secrets"), meta["namespace"], secret_name)
        if secret is None:
            raise KalabError(
                f"{where} names Secret {secret_name}, which does not exist in namespace {meta['namespace']}; "
                f"create it with the key {secret_key}."
            )
        encoded = (secret.get("data") or {}).get(secret_key)
        if encoded is not None:
            try:
                return base64.b64decode(str(encoded), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise KalabError(f"Secret {secret_name} key {secret_key} is not base64-encoded text.") from None
        plain = (secret.get("stringData") or {}).get(secret_key)
        if plain is None:
            raise KalabError(f"Secret {secret_name} has no key {secret_key}; {where} reads that key.")
        return str(plain)

    def _apply(self, rt: ResourceType, desired: Obj) -> bool:
        """Create `desired` or bring the stored object in line with it; True when something was written."""
        meta = desired["metadata"]
        existing = self.ctx.store.try_get(rt, meta["namespace"], meta["name"])
        if existing is None:
            try:
                self.ctx.store.create(rt, desired)
            except ApiError as err:
                if err.code != 409:
                    raise
                return False  # created meanwhile; its event brings us back to compare
            return True
        body = {k: v for k, v in desired.items() if k not in _METADATA_KEYS}
        owned = {k: meta[k] for k in ("labels", "ownerReferences") if k in meta}
        if covers(existing, body) and covers(existing["metadata"], owned):
            return False
        updated = copy.deepcopy(existing)
        updated.update(body)
        for field, value in owned.items():
            updated["metadata"][field] = {**updated["metadata"].get(field, {}), **value} if field == "labels" else value
        self.ctx.store.update(rt, updated)
        return True

    def _write_status(
        self, rt: ResourceType, group: Obj, router_ids: Mapping[str, int], outcome: tuple[str, str], message: str
    ) -> None:
        """status.routerIDs and the one condition saying how the last pass went; no write when nothing changed."""
        old = objects.status(group)
        type_, reason = outcome
        before = next((c for c in old.get("conditions") or [] if c.get("type") == type_), None)
        condition: Obj = {"type": type_, "status": "True", "reason": reason, "message": message}
        if before and all(before.get(k) == v for k, v in condition.items()):
            condition["lastTransitionTime"] = before.get("lastTransitionTime") or now_rfc3339()
        else:
            condition["lastTransitionTime"] = now_rfc3339()
        status = {**old, "routerIDs": dict(router_ids), "conditions": [condition]}
        if status == old:
            return
        group = copy.deepcopy(group)
        group["status"] = status
        self.ctx.store.update(rt, group, subresource="status")
