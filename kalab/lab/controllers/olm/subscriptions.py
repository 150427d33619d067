"""Subscriptions: resolved against the catalogs to a package's channel head; a new head gets an InstallPlan, and
the status says what is installed or why resolution failed."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kalab.lab.apiserver.store import Obj, now_rfc3339
from kalab.lab.context import LabContext
from kalab.lab.controllers.olm.catalog import Package
from kalab.lab.controllers.olm.installplans import create_install_plan, execute_install_plan
from kalab.lab.controllers.olm.status import condition, same
from kalab.model import objects

OPERATORS_API: Final = "operators.coreos.com/v1alpha1"


@dataclass(frozen=True)
class _Failure:
    message: str
    missing_source: str | None = None  # ns/name of a source that does not exist


def _resolve(
    ctx: LabContext, catalogs: Mapping[tuple[str, str], Mapping[str, Package]], spec: Mapping[str, Any]
) -> tuple[Package, str, str] | _Failure:
    """(package, channel, head CSV) for a subscription's spec, or what is wrong with it."""
    package_name, source = str(spec.get("name") or ""), str(spec.get("source") or "")
    source_ns = str(spec.get("sourceNamespace") or "")
    cat_rt = ctx.rt("operators.coreos.com/catalogsources")
    existing = sorted(f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in ctx.store.list(cat_rt)[0])
    offered = catalogs.get((source_ns, source))
    if offered is None or f"{source_ns}/{source}" not in existing:
        return _Failure(
            f"catalog source {source or '(none)'} not found in namespace {source_ns or '(none)'}; "
            f"catalog sources: {', '.join(existing) or 'none'}",
            missing_source=f"{source_ns}/{source}",
        )
    package = offered.get(package_name)
    if package is None:
        return _Failure(
            f"package {package_name or '(none)'} not found in catalog {source_ns}/{source}; "
            f"packages: {', '.join(sorted(offered)) or 'none'}"
        )
    channel = str(spec.get("channel") or package.default_channel)
    head = package.channels.get(channel)
    if head is None:
        return _Failure(
            f"channel {channel} not found in package {package.name}; channels: {', '.join(sorted(package.channels))}"
        )
    starting = spec.get("startingCSV")
    if starting and starting != head:
        return _Failure(
            f"startingCSV {starting} not found in channel {channel} of package {package.name}; channel head: {head}"
        )
    return package, channel, head


def reconcile_subscription(
    ctx: LabContext, catalogs: Mapping[tuple[str, str], Mapping[str, Package]], namespace: str, name: str
) -> float | None:
    rt = ctx.rt("operators.coreos.com/subscriptions")
    sub = ctx.store.try_get(rt, namespace, name)
    if sub is None:
        return None  # OLM leaves the CSV behind when a Subscription is deleted
    old = objects.status(sub)
    old_conditions = old.get("conditions") or []
    resolved = _resolve(ctx, catalogs, objects.spec(sub))
    if isinstance(resolved, _Failure):
        failed = _failed_status(resolved, old_conditions)
        # What is installed stays installed; the subscription only stops finding updates.
        installed = (
            "state",
            "installedCSV",
            "currentCSV",
            "installPlanRef",
            "installplan",
            "installPlanGeneration",
        )
        failed |= {k: old[k] for k in installed if k in old}
        _write_status(ctx, rt, sub, failed)
        return None
    package, _, head = resolved
    csv_rt = ctx.rt("operators.coreos.com/clusterserviceversions")
    status: Obj = {
        "catalogHealth": _catalog_health(ctx, sub),
        "conditions": [_sources_healthy(old_conditions)],
        "currentCSV": head,
        "lastUpdated": now_rfc3339(),
    }
    for kept in ("installPlanRef", "installplan", "installPlanGeneration"):
        if kept in old:
            status[kept] = old[kept]
    if ctx.store.try_get(csv_rt, namespace, head) is None:
        # Resolution found an update: the InstallPlan is made (and, being Automatic, executed) right away.
        status["state"] = "UpgradePending"
        plan = create_install_plan(ctx, sub, head)
        status["installPlanRef"] = {
            "apiVersion": OPERATORS_API,
            "kind": "InstallPlan",
            "name": objects.name_of(plan),
            "namespace": namespace,
            "resourceVersion": objects.resource_version_of(plan),
            "uid": objects.uid_of(plan),
        }
        status["installplan"] = {
            "apiVersion": OPERATORS_API,
            "kind": "InstallPlan",
            "name": objects.name_of(plan),
            "uuid": objects.uid_of(plan),
        }
        status["installPlanGeneration"] = int(old.get("installPlanGeneration", 0)) + 1
        sub = _write_status(ctx, rt, sub, status)
        execute_install_plan(ctx, plan, package, head, sub)
        status = copy.deepcopy(status)
    status["state"] = "AtLatestKnown"
    status["installedCSV"] = head
    _write_status(ctx, rt, sub, status)
    return None


def _failed_status(failure: _Failure, old_conditions: list[Obj]) -> Obj:
    conditions = []
    if failure.missing_source:
        conditions.append(
            condition(
                "CatalogSourcesUnhealthy",
                "True",
                "UnhealthyCatalogSourceFound",
                f"targeted catalogsource {failure.missing_source} missing",
                old_conditions,
            )
        )
    else:
        conditions.append(_sources_healthy(old_conditions))
    conditions.append(
        condition("ResolutionFailed", "True", "ConstraintsNotSatisfiable", failure.message, old_conditions)
    )
    return {"conditions": conditions, "lastUpdated": now_rfc3339()}


def _sources_healthy(old_conditions: list[Obj]) -> Obj:
    """The condition of a subscription whose catalog source is there (resolved, or failed for another reason)."""
    return condition(
        "CatalogSourcesUnhealthy",
        "False",
        "AllCatalogSourcesHealthy",
        "all available catalogsources are healthy",
        old_conditions,
    )


def _catalog_health(ctx: LabContext, sub: Mapping[str, Any]) -> list[Obj]:
    spec = objects.spec(sub)
    cat_rt = ctx.rt("operators.coreos.com/catalogsources")
    source = ctx.store.try_get(cat_rt, spec.get("sourceNamespace"), str(spec.get("source")))
    if source is None:
        return []
    meta = source["metadata"]
    ref = {
        "apiVersion": OPERATORS_API,
        "kind": "CatalogSource",
        "name": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta["uid"],
    }
    # OLM's schema requires when each entry last changed: kept while the catalog's health stays the same, so a
    # resync does not rewrite the status.
    known = [h for h in objects.status(sub).get("catalogHealth") or [] if h.get("catalogSourceRef") == ref]
    previous: Mapping[str, Any] = known[0] if known else {}
    kept = previous.get("healthy") is True and previous.get("lastUpdated")
    return [{"catalogSourceRef": ref, "healthy": True, "lastUpdated": kept or now_rfc3339()}]


def _write_status(ctx: LabContext, rt: Any, obj: Obj, status: Obj) -> Obj:
    """Write status only when something but the timestamp changed, so status writes do not loop."""
    if same(objects.status(obj), status):
        return obj
    obj = copy.deepcopy(obj)
    obj["status"] = status
    return ctx.store.update(rt, obj, subresource="status")
