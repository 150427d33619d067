"""ClusterServiceVersions: they walk Pending → InstallReady → Installing → Succeeded (or Failed) while their
requirements are checked and their install strategy is carried out, each phase held briefly so watchers see it."""

from __future__ import annotations

import time
from typing import Final

from kalab.lab.apiserver.store import Obj, now_rfc3339
from kalab.lab.controllers.base import Controller
from kalab.lab.controllers.olm.install_modes import unsupported
from kalab.lab.controllers.olm.install_strategy import (
    install,
    missing_deployments,
    remove_cluster_rbac,
    unavailable_deployments,
)
from kalab.model import objects

PHASE_DELAY: Final = 0.3  # seconds between CSV phases: long enough for a watcher to see each, short for tests
RETRY_DELAY: Final = 1.0  # seconds before re-checking requirements that are not met yet
# Failures a change of the namespace's OperatorGroup cures: OLM then sends the CSV back to Pending.
OPERATOR_GROUP_REASONS: Final = frozenset({"NoOperatorGroup", "TooManyOperatorGroups", "UnsupportedOperatorGroup"})


class CsvPhases(Controller):
    """The CSV half of the OLM controller; the controller sets the attributes below in its `__init__`."""

    phase_delay: float
    wait_for_available: bool
    # CSV → monotonic time before which it may not change phase again; other events (its own status write,
    # a Deployment appearing) would otherwise rush it through every phase at once.
    _not_before: dict[str, float]

    def _reconcile_csv(self, namespace: str, name: str) -> float | None:
        rt = self.ctx.rt("operators.coreos.com/clusterserviceversions")
        csv = self.ctx.store.try_get(rt, namespace, name)
        if csv is None:
            self._not_before.pop(f"{namespace}/{name}", None)
            remove_cluster_rbac(self.ctx, namespace, name)
            return None
        wait = self._not_before.get(f"{namespace}/{name}", 0.0) - time.monotonic()
        if wait > 0:
            return wait
        phase = objects.status(csv).get("phase", "")
        if phase == "":
            self._set_phase(csv, "Pending", "RequirementsUnknown", "requirements not yet checked")
            return self.phase_delay
        # As OLM does on every sync, whatever the phase: the CSV needs one OperatorGroup whose target namespaces
        # its installModes support. A change to the OperatorGroup re-queues the CSV (see the controller).
        problem = self._operator_group_problem(csv)
        if problem is not None:
            self._set_phase(csv, "Failed", *problem)
            return None
        if phase == "Failed" and objects.status(csv).get("reason") in OPERATOR_GROUP_REASONS:
            self._set_phase(csv, "Pending", "RequirementsUnknown", "InstallModes now support target namespaces")
            return self.phase_delay
        if phase in ("Pending", "Failed"):
            return self._check_requirements(csv, phase)
        if phase == "InstallReady":
            install(self.ctx, csv)
            self._set_phase(csv, "Installing", "InstallSucceeded", "waiting for install components to report healthy")
            return self.phase_delay
        missing = missing_deployments(self.ctx, csv)
        if phase == "Installing":
            if missing:
                install(self.ctx, csv)
                return self.phase_delay
            waiting = unavailable_deployments(self.ctx, csv) if self.wait_for_available else []
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

    def _operator_group_problem(self, csv: Obj) -> tuple[str, str] | None:
        """(reason, message) when the CSV's namespace has no OperatorGroup, several, or one whose targets its
        installModes do not support; with exactly one, the CSV's OLM annotations are brought up to date first."""
        og_rt = self.ctx.rt("operators.coreos.com/operatorgroups")
        groups, _ = self.ctx.store.list(og_rt, objects.namespace_of(csv))
        if not groups:
            return "NoOperatorGroup", "csv in namespace with no operatorgroups"
        if len(groups) > 1:
            return (
                "TooManyOperatorGroups",
                "csv created in namespace with multiple operatorgroups, can't pick one automatically",
            )
        self._annotate(csv, groups[0])
        targets = csv["metadata"]["annotations"]["olm.targetNamespaces"].split(",")
        modes = objects.spec(csv).get("installModes") or []
        why = unsupported(modes, objects.namespace_of(csv), targets)
        return None if why is None else ("UnsupportedOperatorGroup", why)

    def _check_requirements(self, csv: Obj, phase: str) -> float | None:
        if phase == "Failed":
            self._set_phase(csv, "Pending", "RequirementsUnknown", "requirements not yet checked")
            return self.phase_delay
        requirements, met = self._requirement_status(csv)
        extra = {"requirementStatus": requirements}
        if not met:
            self._set_phase(csv, "Pending", "RequirementsNotMet", "one or more requirements couldn't be found", extra)
            return RETRY_DELAY
        self._set_phase(csv, "InstallReady", "AllRequirementsMet", "all requirements found, attempting install", extra)
        return self.phase_delay

    def _requirement_status(self, csv: Obj) -> tuple[list[Obj], bool]:
        """Each owned CRD must exist and be Established (served), as OLM checks before installing."""
        crd_rt = self.ctx.rt("apiextensions.k8s.io/customresourcedefinitions")
        owned = (objects.spec(csv).get("customresourcedefinitions") or {}).get("owned") or []
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
                entry["uuid"] = objects.uid_of(found)
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
        targets = ",".join(objects.spec(og).get("targetNamespaces") or [])
        notes = {
            "olm.operatorGroup": objects.name_of(og),
            "olm.operatorNamespace": objects.namespace_of(og),
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
        old = objects.status(csv)
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


def _established(crd: Obj) -> bool:
    return objects.condition_true(crd, "Established")
