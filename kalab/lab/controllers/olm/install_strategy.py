"""A CSV's install strategy: the service accounts, RBAC and Deployments it lists, created for the CSV (and the
cluster-scoped RBAC removed again when the CSV goes), and which of those Deployments are missing or not Available."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.store import Obj
from kalab.lab.context import LabContext
from kalab.lab.controllers.olm.ownership import owner_labels
from kalab.model import objects


def _strategy(csv: Obj) -> Mapping[str, Any]:
    install = objects.spec(csv).get("install") or {}
    spec = install.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def missing_deployments(ctx: LabContext, csv: Obj) -> list[str]:
    rt = ctx.rt("apps/deployments")
    names = [d.get("name", "") for d in _strategy(csv).get("deployments") or []]
    return [n for n in names if ctx.store.try_get(rt, objects.namespace_of(csv), n) is None]


def unavailable_deployments(ctx: LabContext, csv: Obj) -> list[str]:
    rt, namespace = ctx.rt("apps/deployments"), objects.namespace_of(csv)
    waiting = []
    for deployment in _strategy(csv).get("deployments") or []:
        found = ctx.store.try_get(rt, namespace, deployment.get("name", ""))
        if not objects.condition_true(found, "Available"):
            waiting.append(deployment.get("name", ""))
    return waiting


def install(ctx: LabContext, csv: Obj) -> None:
    """Service accounts, RBAC and Deployments from the CSV's install strategy; re-running fills what is missing."""
    strategy, namespace = _strategy(csv), objects.namespace_of(csv)
    owner = objects.owner_reference(csv, controller=False)
    for perm in strategy.get("clusterPermissions") or []:
        _service_account(ctx, namespace, perm["serviceAccountName"], owner)
        _cluster_rbac(ctx, csv, perm)
    for perm in strategy.get("permissions") or []:
        _service_account(ctx, namespace, perm["serviceAccountName"], owner)
        _namespaced_rbac(ctx, csv, perm, owner)
    targets = csv["metadata"].get("annotations", {}).get("olm.targetNamespaces", "")
    for deployment in strategy.get("deployments") or []:
        spec = copy.deepcopy(deployment["spec"])
        template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
        template_meta.setdefault("annotations", {})["olm.targetNamespaces"] = targets
        obj = {
            "metadata": {
                "name": deployment["name"],
                "namespace": namespace,
                "labels": {
                    "olm.owner": objects.name_of(csv),
                    "olm.owner.kind": "ClusterServiceVersion",
                    "olm.owner.namespace": namespace,
                },
                "ownerReferences": [objects.owner_reference(csv)],
            },
            "spec": spec,
        }
        _ensure(ctx, ctx.rt("apps/deployments"), obj, namespace)


def _ensure(ctx: LabContext, rt: Any, obj: Obj, namespace: str | None) -> None:
    if ctx.store.try_get(rt, namespace, objects.name_of(obj)) is None:
        try:
            ctx.store.create(rt, obj, namespace)
        except ApiError as err:
            if err.code != 409:
                raise


def _service_account(ctx: LabContext, namespace: str, name: str, owner: Obj) -> None:
    sa = {"metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]}}
    _ensure(ctx, ctx.rt("/serviceaccounts"), sa, namespace)


def _cluster_rbac(ctx: LabContext, csv: Obj, perm: Mapping[str, Any]) -> None:
    """ClusterRole + binding; cluster-scoped objects cannot be owned by a namespaced CSV, so OLM labels them
    and removes them itself when the CSV goes."""
    meta = csv["metadata"]
    name = f"{meta['name']}-{perm['serviceAccountName']}"
    labels = owner_labels(meta["namespace"], meta["name"])
    role = {"metadata": {"name": name, "labels": labels}, "rules": copy.deepcopy(perm.get("rules") or [])}
    binding = {
        "metadata": {"name": name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": perm["serviceAccountName"], "namespace": meta["namespace"]}],
    }
    _ensure(ctx, ctx.rt("rbac.authorization.k8s.io/clusterroles"), role, None)
    _ensure(ctx, ctx.rt("rbac.authorization.k8s.io/clusterrolebindings"), binding, None)


def _namespaced_rbac(ctx: LabContext, csv: Obj, perm: Mapping[str, Any], owner: Obj) -> None:
    meta = csv["metadata"]
    name = f"{meta['name']}-{perm['serviceAccountName']}"
    ns = meta["namespace"]
    role = {
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner]},
        "rules": copy.deepcopy(perm.get("rules") or []),
    }
    binding = {
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner]},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": perm["serviceAccountName"], "namespace": ns}],
    }
    _ensure(ctx, ctx.rt("rbac.authorization.k8s.io/roles"), role, ns)
    _ensure(ctx, ctx.rt("rbac.authorization.k8s.io/rolebindings"), binding, ns)


def remove_cluster_rbac(ctx: LabContext, namespace: str, csv: str) -> None:
    selector = ",".join(f"{k}={v}" for k, v in owner_labels(namespace, csv).items())
    for key in ("rbac.authorization.k8s.io/clusterrolebindings", "rbac.authorization.k8s.io/clusterroles"):
        rt = ctx.rt(key)
        for obj in ctx.store.list(rt, labels=selector)[0]:
            try:
                ctx.store.delete(rt, None, objects.name_of(obj))
            except ApiError as err:
                if err.code != 404:
                    raise
