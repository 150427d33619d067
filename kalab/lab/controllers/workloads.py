"""Workloads → pods: the DaemonSet, Deployment and ReplicaSet controllers and a tiny scheduler.

They behave as kube-controller-manager and kube-scheduler do where the seed can see it:
- A DaemonSet gets one pod per node that matches its template (nodeSelector, node affinity, taints vs tolerations),
  named `<ds>-xxxxx`, labelled with `controller-revision-hash` and `pod-template-generation`, owned by the DaemonSet,
  carrying the DaemonSet's default tolerations and pinned to its node by node affinity (`matchFields metadata.name`),
  exactly like the seed's keepalived pod. When admission rejects a pod (no SCC grant), a FailedCreate Warning event
  carries the API's message and creation is retried with backoff, so pods appear once the grant is made. A changed
  template rolls out node by node within `maxUnavailable` (delete, then create).
- A Deployment owns one ReplicaSet per template (`<deploy>-<pod-template-hash>`), which owns the pods
  (`<rs>-xxxxx`), as `oc get rs,pods` shows on a cluster; older ReplicaSets scale to zero once the new one is
  available (RollingUpdate) or at once (Recreate).
- The scheduler binds pods without `spec.nodeName` to a node that fits (selector, affinity, taints, cordon, free host
  ports), spreading a workload's pods over nodes deterministically, and says why when none fits.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.selectors import selector_from_match_labels
from kalab.lab.apiserver.store import Event, Obj, now_rfc3339
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller, object_key, split_key
from kalab.model import objects

REVISION_HASH_LABEL: Final = "controller-revision-hash"
TEMPLATE_GENERATION_LABEL: Final = "pod-template-generation"
POD_TEMPLATE_HASH_LABEL: Final = "pod-template-hash"
UNSCHEDULABLE_TAINT: Final = "node.kubernetes.io/unschedulable"
DEFAULT_SCHEDULER: Final = "default-scheduler"
# Hash characters Kubernetes uses for generated names (no vowels, no look-alikes), so hashes read like the seed's.
_SAFE: Final = "bcdfghjklmnpqrstvwxz2456789"
# What the DaemonSet controller adds to every pod it creates (the seed's pod shows exactly these, in this order).
_DAEMON_TOLERATIONS: Final = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    (UNSCHEDULABLE_TAINT, "NoSchedule"),
)
_HOST_NETWORK_TOLERATION: Final = ("node.kubernetes.io/network-unavailable", "NoSchedule")
# Changes to these may turn a rejected pod creation (SCC admission) into an accepted one: retry at once.
_GRANT_KEYS: Final = (
    "security.openshift.io/securitycontextconstraints",
    "rbac.authorization.k8s.io/clusterrolebindings",
    "rbac.authorization.k8s.io/rolebindings",
    "/serviceaccounts",
)


# ---------------------------------------------------------------------------------------------------------------
# Small helpers shared by the controllers


def short_hash(value: Any, length: int = 10) -> str:
    """A stable hash of a JSON value in Kubernetes' safe alphabet (`7459c85f64`-like); same input, same hash."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:length])


def _scaled(value: Any, total: int, default: int, round_up: bool) -> int:
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


def _condition(old: Sequence[Mapping[str, Any]], type_: str, status: str, reason: str, message: str) -> Obj:
    """A condition that keeps its lastTransitionTime while its status stays the same."""
    now = now_rfc3339()
    previous = next((c for c in old if c.get("type") == type_), None)
    same = previous is not None and previous.get("status") == status
    changed = previous is None or (previous.get("reason"), previous.get("message")) != (reason, message)
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": (previous or {}).get("lastUpdateTime", now) if not changed else now,
        "lastTransitionTime": (previous or {}).get("lastTransitionTime", now) if same else now,
        "reason": reason,
        "message": message,
    }


# ---------------------------------------------------------------------------------------------------------------
# Does a pod fit a node? (nodeSelector, required node affinity, taints and tolerations)


def _requirement(values: Mapping[str, str], expr: Mapping[str, Any]) -> bool:
    key, op, wanted = str(expr.get("key") or ""), expr.get("operator"), [str(v) for v in expr.get("values") or []]
    present = key in values
    value = values.get(key, "")
    if op == "In":
        return present and value in wanted
    if op == "NotIn":
        return not present or value not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and wanted:
        try:
            left, right = int(value), int(wanted[0])
        except ValueError:
            return False
        return left > right if op == "Gt" else left < right
    return False


def _term_matches(node: Mapping[str, Any], term: Mapping[str, Any]) -> bool:
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term selects nothing, as in Kubernetes
    labels = objects.meta(node).get("labels") or {}
    node_fields = {"metadata.name": objects.name_of(node)}
    return all(_requirement(labels, e) for e in expressions) and all(_requirement(node_fields, f) for f in fields)


def _affinity_terms(pod_spec: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return None
    return list(required.get("nodeSelectorTerms") or [])


def matches_node_selection(node: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> bool:
    """nodeSelector and required node affinity (any term matching) both hold for `node`."""
    labels = objects.meta(node).get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != str(value):
            return False
    terms = _affinity_terms(pod_spec)
    return terms is None or any(_term_matches(node, term) for term in terms)


def node_taints(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The node's taints, plus the one a cordon (`spec.unschedulable`) implies."""
    taints = [dict(t) for t in objects.spec(node).get("taints") or []]
    if objects.spec(node).get("unschedulable") and not any(t.get("key") == UNSCHEDULABLE_TAINT for t in taints):
        taints.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"})
    return taints


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for toleration in tolerations:
        effect = toleration.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.get("key")
        if toleration.get("operator") == "Exists":
            if not key or key == taint.get("key"):
                return True
        elif key == taint.get("key") and str(toleration.get("value") or "") == str(taint.get("value") or ""):
            return True
    return False


def untolerated_taint(node: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> dict[str, Any] | None:
    tolerations = pod_spec.get("tolerations") or []
    for taint in node_taints(node):
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return taint
    return None


def fits(node: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> bool:
    return matches_node_selection(node, pod_spec) and untolerated_taint(node, pod_spec) is None


def host_ports(pod_spec: Mapping[str, Any]) -> set[tuple[int, str]]:
    """(port, protocol) the pod opens on its node: hostPorts, and every containerPort of a hostNetwork pod."""
    found = set()
    for container in pod_spec.get("containers") or []:
        for port in container.get("ports") or []:
            number = port.get("hostPort") or (port.get("containerPort") if pod_spec.get("hostNetwork") else None)
            if number:
                found.add((int(number), str(port.get("protocol") or "TCP")))
    return found


# ---------------------------------------------------------------------------------------------------------------
# DaemonSets


def daemon_pod_spec(template_spec: Mapping[str, Any], node: str | None) -> dict[str, Any]:
    """The template's pod spec as the DaemonSet controller creates it: its default tolerations added and, for a
    node, required node affinity pinned to that node's name (other match expressions kept)."""
    spec = copy.deepcopy(dict(template_spec))
    tolerations = list(spec.get("tolerations") or [])
    wanted = list(_DAEMON_TOLERATIONS) + ([_HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])
    for key, effect in wanted:
        if not any(t.get("key") == key and t.get("effect") == effect and t.get("operator") == "Exists"
                   for t in tolerations):  # fmt: skip
            tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    spec["tolerations"] = tolerations
    if node is not None:
        pin = [{"key": "metadata.name", "operator": "In", "values": [node]}]
        affinity = spec.setdefault("affinity", {})
        node_affinity = affinity.setdefault("nodeAffinity", {})
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
        terms = [dict(t) for t in required.get("nodeSelectorTerms") or []] or [{}]
        for term in terms:
            term["matchFields"] = pin
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
    return spec


def pinned_node(pod: Mapping[str, Any]) -> str | None:
    """The node a pod runs on, or is pinned to by `matchFields metadata.name In [node]` (before it is bound)."""
    spec = objects.spec(pod)
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    for term in _affinity_terms(spec) or []:
        for field in term.get("matchFields") or []:
            values = field.get("values") or []
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return None


class _Retrying(Controller):
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


def _owner_key(kind: str) -> Any:
    def keys(event: Event) -> list[str]:
        ref = objects.controller_of(event.object)
        if ref is None or ref.get("kind") != kind:
            return []
        return [f"{objects.namespace_of(event.object)}/{ref.get('name')}"]

    return keys


class DaemonSetController(_Retrying):
    name = "daemonsets"

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.rt = ctx.rt("apps/daemonsets")
        self.nodes_rt = ctx.rt("/nodes")
        self.watches = {
            "apps/daemonsets": object_key,
            "/pods": _owner_key("DaemonSet"),
            "/nodes": lambda event: self._all_keys(),
        }
        self._grant_watches()

    def _all_keys(self) -> list[str]:
        items, _ = self.ctx.store.list(self.rt)
        return [f"{objects.namespace_of(ds)}/{objects.name_of(ds)}" for ds in items]

    def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        ds = self.ctx.store.try_get(self.rt, namespace, name)
        if ds is None:
            self._create_failures.pop(key, None)
            self._delete_orphans("DaemonSet", namespace, name)  # the store's cascade took all others
            return None
        self._delete_orphans("DaemonSet", namespace, name, objects.meta(ds).get("uid"))
        template = objects.spec(ds).get("template") or {}
        revision = short_hash(template)
        generation = int(objects.meta(ds).get("generation") or 1)
        nodes, _ = self.ctx.store.list(self.nodes_rt)
        eligible = sorted(objects.name_of(n) for n in nodes if fits(n, daemon_pod_spec(objects.spec(template), None)))
        pods = [p for p in self.ctx.store.list(self.pods_rt, namespace)[0] if objects.owned_by(p, ds)]
        live = self._prune(ds, pods, set(eligible))
        self._roll(ds, live, revision, eligible)
        on_node = {pinned_node(p) for p in live}
        wanted = [self._pod(ds, template, node, revision, generation) for node in eligible if node not in on_node]
        self._create_pods(key, self.rt, ds, wanted)
        self._refresh_status(ds, namespace, set(eligible), revision)
        return self._retry_delay(key)

    def _prune(self, ds: Obj, pods: list[Obj], eligible: set[str]) -> list[Obj]:
        """Delete pods on nodes that no longer match, failed pods and duplicates; the pods that stay."""
        keep: dict[str, Obj] = {}
        def ready_then_oldest(p: Obj) -> tuple[bool, str]:
            return not objects.pod_ready(p), str(objects.meta(p).get("creationTimestamp"))

        for pod in sorted(pods, key=ready_then_oldest):
            node = pinned_node(pod)
            if node not in eligible or objects.phase_of(pod) == "Failed" or node in keep:
                self._delete_pod(ds, pod)
            else:
                keep[node] = pod
        return list(keep.values())

    def _roll(self, ds: Obj, live: list[Obj], revision: str, eligible: list[str]) -> None:
        """Replace pods of an older template, keeping at most maxUnavailable nodes without a ready pod."""
        strategy = objects.spec(ds).get("updateStrategy") or {}
        if strategy.get("type") == "OnDelete":
            return
        outdated = [p for p in live if objects.labels_of(p).get(REVISION_HASH_LABEL) != revision]
        if not outdated:
            return
        max_unavailable = max(1, _scaled((strategy.get("rollingUpdate") or {}).get("maxUnavailable"),
                                         len(eligible), 1, round_up=True))  # fmt: skip
        ready_nodes = {pinned_node(p) for p in live if objects.pod_ready(p)}
        budget = max_unavailable - sum(1 for node in eligible if node not in ready_nodes)
        for pod in sorted(outdated, key=lambda p: (objects.pod_ready(p), objects.name_of(p))):
            if objects.pod_ready(pod):
                if budget <= 0:
                    continue
                budget -= 1
            self._delete_pod(ds, pod)
            live.remove(pod)

    def _pod(self, ds: Obj, template: Mapping[str, Any], node: str, revision: str, generation: int) -> Obj:
        meta = objects.meta(ds)
        template_meta = objects.meta(template)
        labels = {**(template_meta.get("labels") or {}), REVISION_HASH_LABEL: revision,
                  TEMPLATE_GENERATION_LABEL: str(generation)}  # fmt: skip
        pod_meta: dict[str, Any] = {
            "generateName": f"{meta.get('name')}-",
            "namespace": meta.get("namespace"),
            "labels": labels,
            "ownerReferences": [objects.owner_reference(ds)],
        }
        if template_meta.get("annotations"):
            pod_meta["annotations"] = dict(template_meta["annotations"])
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": pod_meta,
            "spec": daemon_pod_spec(objects.spec(template), node),
        }

    def _refresh_status(self, ds: Obj, namespace: str | None, eligible: set[str], revision: str) -> None:
        pods = [p for p in self.ctx.store.list(self.pods_rt, namespace)[0] if objects.owned_by(p, ds)]
        nodes = {pinned_node(p) for p in pods}
        on_eligible = [p for p in pods if pinned_node(p) in eligible]
        ready = sum(1 for p in on_eligible if objects.pod_ready(p))
        status: dict[str, Any] = {
            "currentNumberScheduled": len(nodes & eligible),
            "desiredNumberScheduled": len(eligible),
            "numberMisscheduled": len(nodes - eligible),
            "numberReady": ready,
            "observedGeneration": int(objects.meta(ds).get("generation") or 1),
            "updatedNumberScheduled": sum(
                1 for p in on_eligible if objects.labels_of(p).get(REVISION_HASH_LABEL) == revision
            ),
        }
        # Like the API's omitempty: zero counts of these two are left out.
        if ready:
            status["numberAvailable"] = ready
        if len(eligible) - ready > 0:
            status["numberUnavailable"] = len(eligible) - ready
        if ds.get("status") != status:
            self.write_status(self.rt, ds, status)


# ---------------------------------------------------------------------------------------------------------------
# Deployments and ReplicaSets


class ReplicaSetController(_Retrying):
    name = "replicasets"

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.rt = ctx.rt("apps/replicasets")
        self.watches = {"apps/replicasets": object_key, "/pods": _owner_key("ReplicaSet")}
        self._grant_watches()

    def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        rs = self.ctx.store.try_get(self.rt, namespace, name)
        if rs is None:
            self._create_failures.pop(key, None)
            self._delete_orphans("ReplicaSet", namespace, name)
            return None
        spec = objects.spec(rs)
        replicas = int(spec.get("replicas", 1))
        active = [
            p
            for p in self.ctx.store.list(self.pods_rt, namespace)[0]
            if objects.owned_by(p, rs) and not objects.pod_terminal(p)
        ]
        if len(active) > replicas:
            # Unscheduled pods go first, then those not ready, then the newest (as the ReplicaSet controller ranks).
            ranked = sorted(
                active,
                key=lambda p: (bool(objects.spec(p).get("nodeName")), objects.pod_ready(p),
                               str(objects.meta(p).get("creationTimestamp")), objects.name_of(p)),
            )  # fmt: skip
            for pod in ranked[: len(active) - replicas]:
                self._delete_pod(rs, pod)
                active.remove(pod)
        elif len(active) < replicas:
            self._create_pods(key, self.rt, rs, [self._pod(rs) for _ in range(replicas - len(active))])
            active = [
                p
                for p in self.ctx.store.list(self.pods_rt, namespace)[0]
                if objects.owned_by(p, rs) and not objects.pod_terminal(p)
            ]
        selector = spec.get("selector") or {}
        matches = selector_from_match_labels(selector.get("matchLabels"), selector.get("matchExpressions"))
        ready = sum(1 for p in active if objects.pod_ready(p))
        status: dict[str, Any] = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active if matches(p)),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": int(objects.meta(rs).get("generation") or 1),
        }
        if rs.get("status") != status:
            self.write_status(self.rt, rs, status)
        return self._retry_delay(key)

    def _pod(self, rs: Obj) -> Obj:
        meta = objects.meta(rs)
        template = objects.spec(rs).get("template") or {}
        template_meta = objects.meta(template)
        pod_meta: dict[str, Any] = {
            "generateName": f"{meta.get('name')}-",
            "namespace": meta.get("namespace"),
            "labels": dict(template_meta.get("labels") or {}),
            "ownerReferences": [objects.owner_reference(rs)],
        }
        if template_meta.get("annotations"):
            pod_meta["annotations"] = dict(template_meta["annotations"])
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": copy.deepcopy(template.get("spec"))}


class DeploymentController(Controller):
    """Deployment → ReplicaSet `<name>-<pod-template-hash>` → pods (the pods come from ReplicaSetController)."""

    name = "deployments"

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.rt = ctx.rt("apps/deployments")
        self.rs_rt = ctx.rt("apps/replicasets")
        self.watches = {"apps/deployments": object_key, "apps/replicasets": _owner_key("Deployment")}

    def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        deploy = self.ctx.store.try_get(self.rt, namespace, name)
        if deploy is None:
            return None
        spec = objects.spec(deploy)
        replicas = int(spec.get("replicas", 1))
        template = copy.deepcopy(spec.get("template") or {})
        template_hash = short_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH_LABEL] = template_hash
        owned = [rs for rs in self.ctx.store.list(self.rs_rt, namespace)[0] if objects.owned_by(rs, deploy)]
        current = next(
            (rs for rs in owned if objects.labels_of(rs).get(POD_TEMPLATE_HASH_LABEL) == template_hash),
            None,
        )
        if current is None:
            current = self._create_rs(deploy, template, template_hash, replicas)
        elif int(objects.spec(current).get("replicas", 1)) != replicas:
            current["spec"]["replicas"] = replicas
            current = self.ctx.store.update(self.rs_rt, current, namespace)
        old = [rs for rs in owned if objects.meta(rs).get("uid") != objects.meta(current).get("uid")]
        new_available = int(objects.status(current).get("availableReplicas") or 0)
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        for rs in old:
            # Old pods go once the new ReplicaSet serves (RollingUpdate), or at once (Recreate).
            if int(objects.spec(rs).get("replicas", 0)) != 0 and (recreate or new_available >= replicas):
                rs["spec"]["replicas"] = 0
                self.ctx.store.update(self.rs_rt, rs, namespace)
        self._refresh_status(deploy, namespace, current, [current, *old], replicas)
        return None

    def _create_rs(self, deploy: Obj, template: Obj, template_hash: str, replicas: int) -> Obj:
        meta, spec = objects.meta(deploy), objects.spec(deploy)
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH_LABEL] = template_hash
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta.get('name')}-{template_hash}",
                "namespace": meta.get("namespace"),
                "labels": dict(objects.labels_of(template)),
                "ownerReferences": [objects.owner_reference(deploy)],
            },
            "spec": {"replicas": replicas, "selector": selector, "template": template},
        }
        made = self.ctx.store.create(self.rs_rt, rs)
        self.ctx.record_event(deploy, "ScalingReplicaSet",
                              f"Scaled up replica set {objects.name_of(made)} to {replicas}")  # fmt: skip
        return made

    def _refresh_status(self, deploy: Obj, namespace: str | None, current: Obj, sets: list[Obj], replicas: int) -> None:
        fresh = [self.ctx.store.try_get(self.rs_rt, namespace, objects.name_of(rs)) or rs for rs in sets]

        def total(field: str) -> int:
            return sum(int(objects.status(rs).get(field) or 0) for rs in fresh)

        available = total("availableReplicas")
        strategy = objects.spec(deploy).get("strategy") or {}
        max_unavailable = _scaled((strategy.get("rollingUpdate") or {}).get("maxUnavailable"), replicas,
                                  replicas // 4, round_up=False)  # fmt: skip
        if strategy.get("type") == "Recreate":
            max_unavailable = replicas
        old_conditions = objects.status(deploy).get("conditions") or []
        current_name = objects.meta(current).get("name")
        new_ready = int(objects.status(fresh[0]).get("availableReplicas") or 0) >= replicas
        conditions = [
            _condition(old_conditions, "Available", "True", "MinimumReplicasAvailable",
                       "Deployment has minimum availability.")
            if available >= replicas - max_unavailable
            else _condition(old_conditions, "Available", "False", "MinimumReplicasUnavailable",
                            "Deployment does not have minimum availability."),
            _condition(old_conditions, "Progressing", "True", "NewReplicaSetAvailable",
                       f'ReplicaSet "{current_name}" has successfully progressed.')
            if new_ready
            else _condition(old_conditions, "Progressing", "True", "ReplicaSetUpdated",
                            f'ReplicaSet "{current_name}" is progressing.'),
        ]  # fmt: skip
        status: dict[str, Any] = {
            "observedGeneration": int(objects.meta(deploy).get("generation") or 1),
            "replicas": total("replicas"),
            "updatedReplicas": int(objects.status(fresh[0]).get("replicas") or 0),
            "readyReplicas": total("readyReplicas"),
            "availableReplicas": available,
            "conditions": conditions,
        }
        if replicas - available > 0:
            status["unavailableReplicas"] = replicas - available
        old_status = dict(objects.status(deploy))
        if _without_times(old_status) != _without_times(status):
            self.write_status(self.rt, deploy, status)


def _without_times(status: Mapping[str, Any]) -> dict[str, Any]:
    conditions = [
        {k: v for k, v in c.items() if k not in ("lastUpdateTime", "lastTransitionTime")}
        for c in status.get("conditions") or []
    ]
    return {**status, "conditions": conditions}


# ---------------------------------------------------------------------------------------------------------------
# Scheduler


class Scheduler(Controller):
    """Binds pods without a node to a fitting one; spreads a workload's pods; retries unschedulable pods."""

    name = "scheduler"
    retry_unschedulable = 5.0  # pods leaving a node (freeing a host port) are noticed at the latest after this

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.pods_rt: ResourceType = ctx.rt("/pods")
        self.nodes_rt: ResourceType = ctx.rt("/nodes")
        self.watches = {"/pods": self._unbound_key, "/nodes": lambda event: self._unbound_keys()}

    @staticmethod
    def _unbound_key(event: Event) -> list[str]:
        if event.type == "DELETED" or objects.spec(event.object).get("nodeName"):
            return []
        return object_key(event)

    def _unbound_keys(self) -> list[str]:
        pods, _ = self.ctx.store.list(self.pods_rt)
        return [f"{objects.namespace_of(p)}/{objects.name_of(p)}" for p in pods if not objects.spec(p).get("nodeName")]

    def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        pod = self.ctx.store.try_get(self.pods_rt, namespace, name)
        if pod is None or objects.spec(pod).get("nodeName"):
            return None
        if (objects.spec(pod).get("schedulerName") or DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER:
            return None  # another scheduler's pod
        nodes = sorted(self.ctx.store.list(self.nodes_rt)[0], key=objects.name_of)
        pods, _ = self.ctx.store.list(self.pods_rt)
        placed = [p for p in pods if objects.spec(p).get("nodeName") and not objects.pod_terminal(p)]
        feasible, reasons = self._filter(pod, nodes, placed)
        if not feasible:
            self._unschedulable(pod, len(nodes), reasons)
            return self.retry_unschedulable
        node = min(feasible, key=lambda n: self._score(pod, n, placed, nodes))
        node_name = objects.name_of(node)
        pod["spec"]["nodeName"] = node_name
        bound = self.ctx.store.update(self.pods_rt, pod, namespace)  # a stale pod conflicts: retried by the queue
        status = dict(objects.status(bound))
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": now_rfc3339()})  # fmt: skip
        status.setdefault("phase", "Pending")
        status["conditions"] = conditions
        self.write_status(self.pods_rt, bound, status)
        self.ctx.record_event(bound, "Scheduled", f"Successfully assigned {namespace}/{name} to {node_name}")
        return None

    @staticmethod
    def _filter(pod: Obj, nodes: list[Obj], placed: list[Obj]) -> tuple[list[Obj], dict[str, int]]:
        spec = objects.spec(pod)
        wanted_ports = host_ports(spec)
        feasible: list[Obj] = []
        reasons: dict[str, int] = {}

        def reject(reason: str) -> None:
            reasons[reason] = reasons.get(reason, 0) + 1

        for node in nodes:
            node_name = objects.meta(node).get("name")
            if not matches_node_selection(node, spec):
                reject("node(s) didn't match Pod's node affinity/selector")
                continue
            taint = untolerated_taint(node, spec)
            if taint is not None:
                if taint.get("key") == UNSCHEDULABLE_TAINT:
                    reject("node(s) were unschedulable")
                else:
                    value = f": {taint['value']}" if taint.get("value") else ""
                    reject(f"node(s) had untolerated taint {{{taint.get('key')}{value}}}")
                continue
            on_node = [p for p in placed if objects.spec(p).get("nodeName") == node_name]
            used = set().union(*(host_ports(objects.spec(p)) for p in on_node))
            if wanted_ports & used:
                reject("node(s) didn't have free ports for the requested pod ports")
                continue
            feasible.append(node)
        return feasible, reasons

    @staticmethod
    def _score(pod: Obj, node: Obj, placed: list[Obj], nodes: list[Obj]) -> tuple[int, int, int]:
        """Fewest pods of the same workload, then fewest pods, then node order: spread and deterministic."""
        node_name = objects.meta(node).get("name")
        here = [p for p in placed if objects.spec(p).get("nodeName") == node_name]
        owner = (objects.controller_of(pod) or {}).get("uid")
        siblings = sum(1 for p in here if owner and (objects.controller_of(p) or {}).get("uid") == owner)
        return siblings, len(here), nodes.index(node)

    def _unschedulable(self, pod: Obj, total: int, reasons: Mapping[str, int]) -> None:
        detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        message = f"0/{total} nodes are available: {detail}." if detail else f"0/{total} nodes are available."
        status = dict(objects.status(pod))
        old = [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"]
        if old and old[0].get("status") == "False" and old[0].get("message") == message:
            return
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": message, "lastProbeTime": None, "lastTransitionTime": now_rfc3339()})  # fmt: skip
        status["phase"] = "Pending"
        status["conditions"] = conditions
        self.write_status(self.pods_rt, pod, status)
        self.ctx.record_event(pod, "FailedScheduling", message, "Warning")
