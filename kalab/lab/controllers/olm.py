"""OLM as a user sees it: catalog sources, Subscriptions resolved to InstallPlans, and ClusterServiceVersions that
walk Pending → InstallReady → Installing → Succeeded while their CRDs, RBAC and Deployments appear (FACTS.md §2).

The lab's catalogs are data here (which packages and channels a source offers); the CatalogSource objects in
`openshift-marketplace` are what users see, and a source whose object is gone offers nothing. Phases advance
with short real delays so that `oc get csv -w` (or a watch) shows each one, as on a cluster.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.store import Event, Obj, now_rfc3339
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller, split_key
from kalab.model.operator_manifests import (
    OPERATOR_PACKAGE,
    OPERATOR_VERSION,
    csv_name,
    keepalivedgroup_crd,
    operator_csv,
)

MARKETPLACE: Final = "openshift-marketplace"
PHASE_DELAY: Final = 0.3  # seconds between CSV phases: long enough for a watcher to see each, short for tests
RETRY_DELAY: Final = 1.0  # seconds before re-checking requirements that are not met yet
OPERATORS_API: Final = "operators.coreos.com/v1alpha1"
_SUB, _CSV, _OG = "sub", "csv", "og"


@dataclass(frozen=True)
class Package:
    """One package of a catalog: its channels, each with the CSV at its head (what a new subscription gets)."""

    name: str
    default_channel: str
    channels: Mapping[str, str]  # channel → head CSV name
    bundles: Mapping[str, Obj] = field(default_factory=dict)  # CSV name → CSV manifest (namespace filled later)


def _keepalived_package() -> Package:
    head = csv_name(OPERATOR_VERSION)
    return Package(OPERATOR_PACKAGE, "alpha", {"alpha": head}, {head: operator_csv("")})


def lab_catalogs() -> dict[tuple[str, str], dict[str, Package]]:
    """OpenShift's four default sources; only community-operators carries the keepalived operator, as in 4.x."""
    return {
        (MARKETPLACE, "community-operators"): {OPERATOR_PACKAGE: _keepalived_package()},
        (MARKETPLACE, "certified-operators"): {},
        (MARKETPLACE, "redhat-marketplace"): {},
        (MARKETPLACE, "redhat-operators"): {},
    }


_DISPLAY = {
    "community-operators": ("Community Operators", "Red Hat"),
    "certified-operators": ("Certified Operators", "Red Hat"),
    "redhat-marketplace": ("Red Hat Marketplace", "Red Hat"),
    "redhat-operators": ("Red Hat Operators", "Red Hat"),
}


def seed_catalog(ctx: LabContext, catalogs: Iterable[tuple[str, str]] | None = None) -> None:
    """Create the catalog sources (and their namespace) the way an OpenShift cluster ships them; idempotent."""
    store = ctx.store
    for namespace, name in catalogs if catalogs is not None else lab_catalogs():
        if store.try_get(ctx.rt("/namespaces"), None, namespace) is None:
            store.create(ctx.rt("/namespaces"), {"metadata": {"name": namespace}})
        rt = ctx.rt("operators.coreos.com/catalogsources")
        if store.try_get(rt, namespace, name) is not None:
            continue
        display, publisher = _DISPLAY.get(name, (name, "lab"))
        created = store.create(
            rt,
            {
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "sourceType": "grpc",
                    "image": f"registry.redhat.io/redhat/{name.removesuffix('s')}-index:v4.7",
                    "displayName": display,
                    "publisher": publisher,
                    "priority": -100,
                    "updateStrategy": {"registryPoll": {"interval": "10m"}},
                },
            },
        )
        created["status"] = {
            "connectionState": {"lastObservedState": "READY", "lastConnect": now_rfc3339()},
            "registryService": {
                "protocol": "grpc",
                "serviceName": name,
                "serviceNamespace": namespace,
                "port": "50051",
            },
        }
        store.update(rt, created, subresource="status")


@dataclass(frozen=True)
class _Failure:
    message: str
    missing_source: str | None = None  # ns/name of a source that does not exist


def _condition(type_: str, status: str, reason: str, message: str, old: Iterable[Mapping[str, Any]] = ()) -> Obj:
    """A condition; its lastTransitionTime survives when the same type already had this status."""
    previous = next((c for c in old if c.get("type") == type_), None)
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == status else None
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now_rfc3339(),
    }


def _same(old: Mapping[str, Any] | None, new: Mapping[str, Any], ignore: tuple[str, ...] = ("lastUpdated",)) -> bool:
    def strip(status: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (status or {}).items() if k not in ignore}

    return strip(old) == strip(new)


class OlmController(Controller):
    """Subscriptions, ClusterServiceVersions and OperatorGroups; `catalogs` defaults to `lab_catalogs()`."""

    name = "olm"

    def __init__(
        self,
        ctx: LabContext,
        catalogs: Mapping[tuple[str, str], Mapping[str, Package]] | None = None,
        wait_for_available: bool = False,
    ) -> None:
        """`wait_for_available`: stay Installing until each Deployment reports Available, as OLM does; only
        meaningful where a Deployment controller and kubelet run its pods (without them it would never succeed)."""
        super().__init__(ctx)
        self.catalogs = dict(catalogs if catalogs is not None else lab_catalogs())
        self.wait_for_available = wait_for_available
        self.phase_delay = PHASE_DELAY
        # CSV → monotonic time before which it may not change phase again; other events (its own status write,
        # a Deployment appearing) would otherwise rush it through every phase at once.
        self._not_before: dict[str, float] = {}
        self.watches = {
            "operators.coreos.com/subscriptions": lambda e: [self._key(_SUB, e.object)],
            "operators.coreos.com/clusterserviceversions": self._on_csv,
            "operators.coreos.com/operatorgroups": self._on_operator_group,
            "operators.coreos.com/catalogsources": lambda e: self._all(_SUB),
            "apiextensions.k8s.io/customresourcedefinitions": lambda e: self._all(_CSV),
            "apps/deployments": self._on_owned,
        }

    # -- event → keys --------------------------------------------------------------------------------------

    @staticmethod
    def _key(kind: str, obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata", {})
        return f"{kind}|{meta.get('namespace', '')}/{meta.get('name', '')}"

    def _all(self, kind: str, namespace: str | None = None) -> list[str]:
        key = {_SUB: "operators.coreos.com/subscriptions", _CSV: "operators.coreos.com/clusterserviceversions"}[kind]
        items, _ = self.ctx.store.list(self.ctx.rt(key), namespace)
        return [self._key(kind, obj) for obj in items]

    def _on_csv(self, event: Event) -> list[str]:
        # A CSV's progress shows on the Subscriptions of its namespace (state, installedCSV).
        return [self._key(_CSV, event.object), *self._all(_SUB, event.object["metadata"].get("namespace"))]

    def _on_operator_group(self, event: Event) -> list[str]:
        # CSVs waiting for (or failing on) their namespace's OperatorGroup re-check it.
        return [self._key(_OG, event.object), *self._all(_CSV, event.object["metadata"].get("namespace"))]

    def _on_owned(self, event: Event) -> list[str]:
        meta = event.object.get("metadata", {})
        return [
            f"{_CSV}|{meta.get('namespace', '')}/{ref.get('name', '')}"
            for ref in meta.get("ownerReferences") or []
            if ref.get("kind") == "ClusterServiceVersion"
        ]

    def reconcile(self, key: str) -> float | None:
        kind, _, rest = key.partition("|")
        namespace, name = split_key(rest)
        ns = namespace or ""
        if kind == _SUB:
            return self._reconcile_subscription(ns, name)
        if kind == _CSV:
            return self._reconcile_csv(ns, name)
        if kind == _OG:
            self._reconcile_operator_group(ns, name)
        return None

    # -- OperatorGroup -------------------------------------------------------------------------------------

    def _reconcile_operator_group(self, namespace: str, name: str) -> None:
        rt = self.ctx.rt("operators.coreos.com/operatorgroups")
        og = self.ctx.store.try_get(rt, namespace, name)
        if og is None:
            return
        targets = list((og.get("spec") or {}).get("targetNamespaces") or [])
        # OLM writes [""] for an AllNamespaces group: the operator watches the whole cluster.
        status = {"namespaces": targets or [""], "lastUpdated": now_rfc3339()}
        if not _same(og.get("status"), status):
            og["status"] = status
            self.ctx.store.update(rt, og, subresource="status")

    # -- Subscription --------------------------------------------------------------------------------------

    def _resolve(self, spec: Mapping[str, Any]) -> tuple[Package, str, str] | _Failure:
        """(package, channel, head CSV) for a subscription's spec, or what is wrong with it."""
        package_name, source = str(spec.get("name") or ""), str(spec.get("source") or "")
        source_ns = str(spec.get("sourceNamespace") or "")
        cat_rt = self.ctx.rt("operators.coreos.com/catalogsources")
        existing = sorted(
            f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in self.ctx.store.list(cat_rt)[0]
        )
        offered = self.catalogs.get((source_ns, source))
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
                f"channel {channel} not found in package {package.name}; "
                f"channels: {', '.join(sorted(package.channels))}"
            )
        starting = spec.get("startingCSV")
        if starting and starting != head:
            return _Failure(
                f"startingCSV {starting} not found in channel {channel} of package {package.name}; channel head: {head}"
            )
        return package, channel, head

    def _reconcile_subscription(self, namespace: str, name: str) -> float | None:
        rt = self.ctx.rt("operators.coreos.com/subscriptions")
        sub = self.ctx.store.try_get(rt, namespace, name)
        if sub is None:
            return None  # OLM leaves the CSV behind when a Subscription is deleted
        old = sub.get("status") or {}
        old_conditions = old.get("conditions") or []
        resolved = self._resolve(sub.get("spec") or {})
        if isinstance(resolved, _Failure):
            failed = self._failed_status(resolved, old_conditions)
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
            self._write_status(rt, sub, failed)
            return None
        package, _, head = resolved
        csv_rt = self.ctx.rt("operators.coreos.com/clusterserviceversions")
        status: Obj = {
            "catalogHealth": self._catalog_health(sub),
            "conditions": [
                _condition(
                    "CatalogSourcesUnhealthy",
                    "False",
                    "AllCatalogSourcesHealthy",
                    "all available catalogsources are healthy",
                    old_conditions,
                )
            ],
            "currentCSV": head,
            "lastUpdated": now_rfc3339(),
        }
        for kept in ("installPlanRef", "installplan", "installPlanGeneration"):
            if kept in old:
                status[kept] = old[kept]
        if self.ctx.store.try_get(csv_rt, namespace, head) is None:
            # Resolution found an update: the InstallPlan is made (and, being Automatic, executed) right away.
            status["state"] = "UpgradePending"
            plan = self._create_install_plan(sub, head)
            status["installPlanRef"] = {
                "apiVersion": OPERATORS_API,
                "kind": "InstallPlan",
                "name": plan["metadata"]["name"],
                "namespace": namespace,
                "resourceVersion": plan["metadata"]["resourceVersion"],
                "uid": plan["metadata"]["uid"],
            }
            status["installplan"] = {
                "apiVersion": OPERATORS_API,
                "kind": "InstallPlan",
                "name": plan["metadata"]["name"],
                "uuid": plan["metadata"]["uid"],
            }
            status["installPlanGeneration"] = int(old.get("installPlanGeneration", 0)) + 1
            sub = self._write_status(rt, sub, status)
            self._execute_install_plan(plan, package, head, sub)
            status = copy.deepcopy(status)
        status["state"] = "AtLatestKnown"
        status["installedCSV"] = head
        self._write_status(rt, sub, status)
        return None

    def _failed_status(self, failure: _Failure, old_conditions: list[Obj]) -> Obj:
        conditions = []
        if failure.missing_source:
            conditions.append(
                _condition(
                    "CatalogSourcesUnhealthy",
                    "True",
                    "UnhealthyCatalogSourceFound",
                    f"targeted catalogsource {failure.missing_source} missing",
                    old_conditions,
                )
            )
        else:
            conditions.append(
                _condition(
                    "CatalogSourcesUnhealthy",
                    "False",
                    "AllCatalogSourcesHealthy",
                    "all available catalogsources are healthy",
                    old_conditions,
                )
            )
        conditions.append(
            _condition("ResolutionFailed", "True", "ConstraintsNotSatisfiable", failure.message, old_conditions)
        )
        return {"conditions": conditions, "lastUpdated": now_rfc3339()}

    def _catalog_health(self, sub: Mapping[str, Any]) -> list[Obj]:
        spec = sub.get("spec") or {}
        cat_rt = self.ctx.rt("operators.coreos.com/catalogsources")
        source = self.ctx.store.try_get(cat_rt, spec.get("sourceNamespace"), str(spec.get("source")))
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
        return [{"catalogSourceRef": ref, "healthy": True}]

    def _write_status(self, rt: Any, obj: Obj, status: Obj) -> Obj:
        """Write status only when something but the timestamp changed, so status writes do not loop."""
        if _same(obj.get("status"), status):
            return obj
        obj = copy.deepcopy(obj)
        obj["status"] = status
        return self.ctx.store.update(rt, obj, subresource="status")

    # -- InstallPlan ---------------------------------------------------------------------------------------

    def _create_install_plan(self, sub: Obj, head: str) -> Obj:
        meta = sub["metadata"]
        plan_rt = self.ctx.rt("operators.coreos.com/installplans")
        return self.ctx.store.create(
            plan_rt,
            {
                "metadata": {
                    "generateName": "install-",
                    "namespace": meta["namespace"],
                    "ownerReferences": [_owner(sub, controller=False)],
                },
                "spec": {
                    "approval": "Automatic",
                    "approved": True,
                    "clusterServiceVersionNames": [head],
                    "generation": int((sub.get("status") or {}).get("installPlanGeneration", 0)) + 1,
                },
            },
        )

    def _execute_install_plan(self, plan: Obj, package: Package, head: str, sub: Obj) -> None:
        """Create the bundle's CRDs and its CSV, then mark the plan Complete with one step per object."""
        store, namespace = self.ctx.store, plan["metadata"]["namespace"]
        plan_rt = self.ctx.rt("operators.coreos.com/installplans")
        spec = sub.get("spec") or {}
        plan["status"] = {"phase": "Installing", "catalogSources": [spec.get("source")]}
        plan = store.update(plan_rt, plan, subresource="status")
        steps = []
        crd = keepalivedgroup_crd() if package.name == OPERATOR_PACKAGE else None
        if crd is not None:
            crd_rt = self.ctx.rt("apiextensions.k8s.io/customresourcedefinitions")
            created = store.try_get(crd_rt, None, crd["metadata"]["name"]) is None
            if created:
                store.create(crd_rt, crd)
            steps.append(self._step(head, crd, "Created" if created else "Present", spec))
        csv = copy.deepcopy(package.bundles[head])
        csv["metadata"]["namespace"] = namespace
        csv_rt = self.ctx.rt("operators.coreos.com/clusterserviceversions")
        try:
            store.create(csv_rt, csv)
        except ApiError as err:
            if err.code != 409:
                raise
        steps.append(self._step(head, csv, "Created", spec))
        plan["status"] = {
            "phase": "Complete",
            "catalogSources": [spec.get("source")],
            "plan": steps,
            "bundleLookups": [],
        }
        store.update(plan_rt, plan, subresource="status")

    @staticmethod
    def _step(head: str, obj: Obj, status: str, spec: Mapping[str, Any]) -> Obj:
        group, _, version = str(obj["apiVersion"]).rpartition("/")
        return {
            "resolving": head,
            "resource": {
                "group": group,
                "version": version,
                "kind": obj["kind"],
                "name": obj["metadata"]["name"],
                "sourceName": spec.get("source"),
                "sourceNamespace": spec.get("sourceNamespace"),
            },
            "status": status,
        }

    # -- ClusterServiceVersion -----------------------------------------------------------------------------

    def _reconcile_csv(self, namespace: str, name: str) -> float | None:
        rt = self.ctx.rt("operators.coreos.com/clusterserviceversions")
        csv = self.ctx.store.try_get(rt, namespace, name)
        if csv is None:
            self._not_before.pop(f"{namespace}/{name}", None)
            self._remove_cluster_rbac(namespace, name)
            return None
        wait = self._not_before.get(f"{namespace}/{name}", 0.0) - time.monotonic()
        if wait > 0:
            return wait
        phase = (csv.get("status") or {}).get("phase", "")
        if phase == "":
            self._set_phase(csv, "Pending", "RequirementsUnknown", "requirements not yet checked")
            return self.phase_delay
        if phase in ("Pending", "Failed"):
            return self._check_requirements(csv, phase)
        if phase == "InstallReady":
            self._install(csv)
            self._set_phase(csv, "Installing", "InstallSucceeded", "waiting for install components to report healthy")
            return self.phase_delay
        missing = self._missing_deployments(csv)
        if phase == "Installing":
            if missing:
                self._install(csv)
                return self.phase_delay
            waiting = self._unavailable_deployments(csv) if self.wait_for_available else []
            if waiting:
                self._set_phase(
                    csv,
                    "Installing",
                    "InstallWaiting",
                    f"installing: waiting for deployment {waiting[0]} to become ready: deployment "
                    f'"{waiting[0]}" not available: Deployment does not have minimum availability.',
                )
                return RETRY_DELAY  # a Deployment status change re-queues it sooner
            self._set_phase(csv, "Succeeded", "InstallSucceeded", "install strategy completed with no errors")
            return None
        if phase == "Succeeded" and missing:
            # Someone deleted the operator's Deployment: OLM notices and installs it again.
            self._set_phase(csv, "Failed", "ComponentUnhealthy", f"installing: deployment {missing[0]} not found")
            return self.phase_delay
        return None

    def _check_requirements(self, csv: Obj, phase: str) -> float | None:
        og_rt = self.ctx.rt("operators.coreos.com/operatorgroups")
        groups, _ = self.ctx.store.list(og_rt, csv["metadata"]["namespace"])
        if not groups:
            self._set_phase(csv, "Failed", "NoOperatorGroup", "csv in namespace with no operatorgroups")
            return None  # an OperatorGroup event re-queues this CSV
        if len(groups) > 1:
            self._set_phase(
                csv,
                "Failed",
                "TooManyOperatorGroups",
                "csv created in namespace with multiple operatorgroups, can't pick one automatically",
            )
            return None
        if phase == "Failed":
            self._set_phase(csv, "Pending", "RequirementsUnknown", "requirements not yet checked")
            return self.phase_delay
        requirements, met = self._requirement_status(csv)
        extra = {"requirementStatus": requirements}
        if not met:
            self._set_phase(csv, "Pending", "RequirementsNotMet", "one or more requirements couldn't be found", extra)
            return RETRY_DELAY
        self._annotate(csv, groups[0])
        self._set_phase(csv, "InstallReady", "AllRequirementsMet", "all requirements found, attempting install", extra)
        return self.phase_delay

    def _requirement_status(self, csv: Obj) -> tuple[list[Obj], bool]:
        """Each owned CRD must exist and be Established (served), as OLM checks before installing."""
        crd_rt = self.ctx.rt("apiextensions.k8s.io/customresourcedefinitions")
        owned = ((csv.get("spec") or {}).get("customresourcedefinitions") or {}).get("owned") or []
        statuses, met = [], True
        for crd in owned:
            found = self.ctx.store.try_get(crd_rt, None, crd["name"])
            entry: Obj = {
                "group": "apiextensions.k8s.io",
                "version": "v1",
                "kind": "CustomResourceDefinition",
                "name": crd["name"],
                "status": "NotPresent",
                "message": "CRD is not present",
            }
            if found is not None:
                entry["uuid"] = found["metadata"]["uid"]
                if _established(found):
                    entry |= {"status": "Present", "message": "CRD is present and Established condition is true"}
                else:
                    entry |= {
                        "status": "NotPresent",
                        "message": "CRD is present but the Established condition is False (not available)",
                    }
            met = met and entry["status"] == "Present"
            statuses.append(entry)
        return statuses, met

    def _annotate(self, csv: Obj, og: Obj) -> None:
        """OLM's annotations saying which OperatorGroup placed the operator and which namespaces it watches."""
        rt = self.ctx.rt("operators.coreos.com/clusterserviceversions")
        targets = ",".join((og.get("spec") or {}).get("targetNamespaces") or [])
        notes = {
            "olm.operatorGroup": og["metadata"]["name"],
            "olm.operatorNamespace": og["metadata"]["namespace"],
            "olm.targetNamespaces": targets,
        }
        annotations = csv["metadata"].setdefault("annotations", {})
        if any(annotations.get(k) != v for k, v in notes.items()):
            annotations.update(notes)
            status = csv.get("status")
            updated = self.ctx.store.update(rt, csv)
            csv.clear()
            csv.update(updated)
            csv["status"] = status

    def _set_phase(self, csv: Obj, phase: str, reason: str, message: str, extra: Obj | None = None) -> None:
        """Move the CSV to `phase`, appending to its condition history as OLM does; no write when nothing changes."""
        rt = self.ctx.rt("operators.coreos.com/clusterserviceversions")
        old = csv.get("status") or {}
        status = {**old, **(extra or {})}
        if (old.get("phase"), old.get("reason"), old.get("message")) != (phase, reason, message):
            now = now_rfc3339()
            entry = {
                "phase": phase,
                "reason": reason,
                "message": message,
                "lastTransitionTime": now,
                "lastUpdateTime": now,
            }
            status["conditions"] = [*(old.get("conditions") or []), entry]
            status.update(entry)
            meta = csv["metadata"]
            self._not_before[f"{meta['namespace']}/{meta['name']}"] = time.monotonic() + self.phase_delay
        elif status == old:
            return
        csv["status"] = status
        updated = self.ctx.store.update(rt, csv, subresource="status")
        csv.clear()
        csv.update(updated)

    # -- install strategy ----------------------------------------------------------------------------------

    def _strategy(self, csv: Obj) -> Mapping[str, Any]:
        install = (csv.get("spec") or {}).get("install") or {}
        spec = install.get("spec")
        return spec if isinstance(spec, Mapping) else {}

    def _missing_deployments(self, csv: Obj) -> list[str]:
        rt = self.ctx.rt("apps/deployments")
        names = [d.get("name", "") for d in self._strategy(csv).get("deployments") or []]
        return [n for n in names if self.ctx.store.try_get(rt, csv["metadata"]["namespace"], n) is None]

    def _unavailable_deployments(self, csv: Obj) -> list[str]:
        rt, namespace = self.ctx.rt("apps/deployments"), csv["metadata"]["namespace"]
        waiting = []
        for deployment in self._strategy(csv).get("deployments") or []:
            found = self.ctx.store.try_get(rt, namespace, deployment.get("name", ""))
            conditions = ((found or {}).get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions):
                waiting.append(deployment.get("name", ""))
        return waiting

    def _install(self, csv: Obj) -> None:
        """Service accounts, RBAC and Deployments from the CSV's install strategy; re-running fills what is missing."""
        strategy, namespace = self._strategy(csv), csv["metadata"]["namespace"]
        owner = _owner(csv, controller=False)
        for perm in strategy.get("clusterPermissions") or []:
            self._service_account(namespace, perm["serviceAccountName"], owner)
            self._cluster_rbac(csv, perm)
        for perm in strategy.get("permissions") or []:
            self._service_account(namespace, perm["serviceAccountName"], owner)
            self._namespaced_rbac(csv, perm, owner)
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
                        "olm.owner": csv["metadata"]["name"],
                        "olm.owner.kind": "ClusterServiceVersion",
                        "olm.owner.namespace": namespace,
                    },
                    "ownerReferences": [_owner(csv, controller=True)],
                },
                "spec": spec,
            }
            self._ensure(self.ctx.rt("apps/deployments"), obj, namespace)

    def _ensure(self, rt: Any, obj: Obj, namespace: str | None) -> None:
        if self.ctx.store.try_get(rt, namespace, obj["metadata"]["name"]) is None:
            try:
                self.ctx.store.create(rt, obj, namespace)
            except ApiError as err:
                if err.code != 409:
                    raise

    def _service_account(self, namespace: str, name: str, owner: Obj) -> None:
        sa = {"metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]}}
        self._ensure(self.ctx.rt("/serviceaccounts"), sa, namespace)

    def _cluster_rbac(self, csv: Obj, perm: Mapping[str, Any]) -> None:
        """ClusterRole + binding; cluster-scoped objects cannot be owned by a namespaced CSV, so OLM labels them
        and removes them itself when the CSV goes."""
        meta = csv["metadata"]
        name = f"{meta['name']}-{perm['serviceAccountName']}"
        labels = _owner_labels(meta["namespace"], meta["name"])
        role = {"metadata": {"name": name, "labels": labels}, "rules": copy.deepcopy(perm.get("rules") or [])}
        binding = {
            "metadata": {"name": name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [
                {"kind": "ServiceAccount", "name": perm["serviceAccountName"], "namespace": meta["namespace"]}
            ],
        }
        self._ensure(self.ctx.rt("rbac.authorization.k8s.io/clusterroles"), role, None)
        self._ensure(self.ctx.rt("rbac.authorization.k8s.io/clusterrolebindings"), binding, None)

    def _namespaced_rbac(self, csv: Obj, perm: Mapping[str, Any], owner: Obj) -> None:
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
        self._ensure(self.ctx.rt("rbac.authorization.k8s.io/roles"), role, ns)
        self._ensure(self.ctx.rt("rbac.authorization.k8s.io/rolebindings"), binding, ns)

    def _remove_cluster_rbac(self, namespace: str, csv: str) -> None:
        selector = ",".join(f"{k}={v}" for k, v in _owner_labels(namespace, csv).items())
        for key in ("rbac.authorization.k8s.io/clusterrolebindings", "rbac.authorization.k8s.io/clusterroles"):
            rt = self.ctx.rt(key)
            for obj in self.ctx.store.list(rt, labels=selector)[0]:
                try:
                    self.ctx.store.delete(rt, None, obj["metadata"]["name"])
                except ApiError as err:
                    if err.code != 404:
                        raise


def _established(crd: Obj) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _owner(obj: Obj, controller: bool) -> Obj:
    meta = obj["metadata"]
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}
    if controller:
        ref |= {"controller": True, "blockOwnerDeletion": True}
    return ref


def _owner_labels(namespace: str, csv: str) -> dict[str, str]:
    return {"olm.owner": csv, "olm.owner.kind": "ClusterServiceVersion", "olm.owner.namespace": namespace}
