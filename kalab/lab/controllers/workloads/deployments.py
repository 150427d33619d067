"""The Deployment and ReplicaSet controllers: a ReplicaSet per template, pods per ReplicaSet, rollouts."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kalab.lab.apiserver.selectors import selector_from_match_labels
from kalab.lab.apiserver.store import Obj, now_rfc3339
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller, object_key, split_key
from kalab.lab.controllers.workloads.shared import RetryingController, owner_key, scaled, short_hash
from kalab.model import objects

POD_TEMPLATE_HASH_LABEL: Final = "pod-template-hash"


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


class ReplicaSetController(RetryingController):
    name = "replicasets"

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.rt = ctx.rt("apps/replicasets")
        self.watches = {"apps/replicasets": object_key, "/pods": owner_key("ReplicaSet")}
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
                key=lambda p: (
                    bool(objects.spec(p).get("nodeName")),
                    objects.pod_ready(p),
                    str(objects.meta(p).get("creationTimestamp")),
                    objects.name_of(p),
                ),
            )
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
        self.watches = {"apps/deployments": object_key, "apps/replicasets": owner_key("Deployment")}

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
        self.ctx.record_event(
            deploy, "ScalingReplicaSet", f"Scaled up replica set {objects.name_of(made)} to {replicas}"
        )
        return made

    def _refresh_status(self, deploy: Obj, namespace: str | None, current: Obj, sets: list[Obj], replicas: int) -> None:
        fresh = [self.ctx.store.try_get(self.rs_rt, namespace, objects.name_of(rs)) or rs for rs in sets]

        def total(field: str) -> int:
            return sum(int(objects.status(rs).get(field) or 0) for rs in fresh)

        available = total("availableReplicas")
        strategy = objects.spec(deploy).get("strategy") or {}
        max_unavailable = scaled(
            (strategy.get("rollingUpdate") or {}).get("maxUnavailable"), replicas, replicas // 4, round_up=False
        )
        if strategy.get("type") == "Recreate":
            max_unavailable = replicas
        old_conditions = objects.status(deploy).get("conditions") or []
        current_name = objects.meta(current).get("name")
        new_ready = int(objects.status(fresh[0]).get("availableReplicas") or 0) >= replicas
        conditions = [
            _condition(
                old_conditions, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
            )
            if available >= replicas - max_unavailable
            else _condition(
                old_conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            ),
            _condition(
                old_conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{current_name}" has successfully progressed.',
            )
            if new_ready
            else _condition(
                old_conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{current_name}" is progressing.',
            ),
        ]
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
