"""InstallPlans: made for a subscription's new channel head and, being Automatic, executed at once: the bundle's
CRDs and its CSV are created and each becomes a step of the plan."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.store import Obj
from kalab.lab.context import LabContext
from kalab.lab.controllers.olm.catalog import Package
from kalab.model import objects
from kalab.model.operator_manifests import OPERATOR_PACKAGE, keepalivedgroup_crd


def create_install_plan(ctx: LabContext, sub: Obj, head: str) -> Obj:
    meta = sub["metadata"]
    plan_rt = ctx.rt("operators.coreos.com/installplans")
    return ctx.store.create(
        plan_rt,
        {
            "metadata": {
                "generateName": "install-",
                "namespace": meta["namespace"],
                "ownerReferences": [objects.owner_reference(sub, controller=False)],
            },
            "spec": {
                "approval": "Automatic",
                "approved": True,
                "clusterServiceVersionNames": [head],
                "generation": int(objects.status(sub).get("installPlanGeneration", 0)) + 1,
            },
        },
    )


def execute_install_plan(ctx: LabContext, plan: Obj, package: Package, head: str, sub: Obj) -> None:
    """Create the bundle's CRDs and its CSV, then mark the plan Complete with one step per object."""
    store, namespace = ctx.store, objects.namespace_of(plan)
    plan_rt = ctx.rt("operators.coreos.com/installplans")
    spec = objects.spec(sub)
    plan["status"] = {"phase": "Installing", "catalogSources": [spec.get("source")]}
    plan = store.update(plan_rt, plan, subresource="status")
    steps = []
    crd = keepalivedgroup_crd() if package.name == OPERATOR_PACKAGE else None
    if crd is not None:
        crd_rt = ctx.rt("apiextensions.k8s.io/customresourcedefinitions")
        created = store.try_get(crd_rt, None, objects.name_of(crd)) is None
        if created:
            store.create(crd_rt, crd)
        steps.append(_step(head, crd, "Created" if created else "Present", spec))
    csv = copy.deepcopy(package.bundles[head])
    csv["metadata"]["namespace"] = namespace
    csv_rt = ctx.rt("operators.coreos.com/clusterserviceversions")
    try:
        store.create(csv_rt, csv)
    except ApiError as err:
        if err.code != 409:
            raise
    steps.append(_step(head, csv, "Created", spec))
    plan["status"] = {
        "phase": "Complete",
        "catalogSources": [spec.get("source")],
        "plan": steps,
        "bundleLookups": [],
    }
    store.update(plan_rt, plan, subresource="status")


def _step(head: str, obj: Obj, status: str, spec: Mapping[str, Any]) -> Obj:
    group, _, version = str(obj["apiVersion"]).rpartition("/")
    return {
        "resolving": head,
        "resource": {
            "group": group,
            "version": version,
            "kind": obj["kind"],
            "name": objects.name_of(obj),
            "sourceName": spec.get("source"),
            "sourceNamespace": spec.get("sourceNamespace"),
        },
        "status": status,
    }
