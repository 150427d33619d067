"""The DaemonSet controller: one pod per node that matches the template, pinned to it, rolled out node by node."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from kalab.lab.apiserver.store import Obj
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import object_key, split_key
from kalab.lab.controllers.workloads.placement import (
    UNSCHEDULABLE_TAINT,
    affinity_terms,
    fits,
)
from kalab.lab.controllers.workloads.shared import RetryingController, owner_key, scaled, short_hash
from kalab.model import objects

REVISION_HASH_LABEL: Final = "controller-revision-hash"
TEMPLATE_GENERATION_LABEL: Final = "pod-template-generation"
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


def daemon_pod_spec(template_spec: Mapping[str, Any], node: str | None) -> dict[str, Any]:
    """The template's pod spec as the DaemonSet controller creates it: its default tolerations added and, for a
    node, required node affinity pinned to that node's name (other match expressions kept)."""
    spec = copy.deepcopy(dict(template_spec))
    tolerations = list(spec.get("tolerations") or [])
    wanted = list(_DAEMON_TOLERATIONS) + ([_HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])
    for key, effect in wanted:
        if not any(
            t.get("key") == key and t.get("effect") == effect and t.get("operator") == "Exists" for t in tolerations
        ):
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
    for term in affinity_terms(spec) or []:
        for field in term.get("matchFields") or []:
            values = field.get("values") or []
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return None


class DaemonSetController(RetryingController):
    name = "daemonsets"

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.rt = ctx.rt("apps/daemonsets")
        self.nodes_rt = ctx.rt("/nodes")
        self.watches = {
            "apps/daemonsets": object_key,
            "/pods": owner_key("DaemonSet"),
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
        max_unavailable = max(
            1, scaled((strategy.get("rollingUpdate") or {}).get("maxUnavailable"), len(eligible), 1, round_up=True)
        )
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
        labels = {
            **(template_meta.get("labels") or {}),
            REVISION_HASH_LABEL: revision,
            TEMPLATE_GENERATION_LABEL: str(generation),
        }
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
