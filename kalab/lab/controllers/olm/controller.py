"""The OLM controller: routes store events to Subscription, ClusterServiceVersion and OperatorGroup keys and
reconciles each with its own module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kalab.lab.apiserver.store import Event
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import split_key
from kalab.lab.controllers.olm.catalog import Package, lab_catalogs
from kalab.lab.controllers.olm.csvs import PHASE_DELAY, CsvPhases
from kalab.lab.controllers.olm.operatorgroups import reconcile_operator_group
from kalab.lab.controllers.olm.subscriptions import reconcile_subscription
from kalab.model import objects

_SUB, _CSV, _OG = "sub", "csv", "og"


class OlmController(CsvPhases):
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
        self._not_before = {}
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
        meta = objects.meta(obj)
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
        namespace = objects.meta(event.object).get("namespace", "")
        return [
            f"{_CSV}|{namespace}/{ref.get('name', '')}"
            for ref in objects.owner_references(event.object)
            if ref.get("kind") == "ClusterServiceVersion"
        ]

    def reconcile(self, key: str) -> float | None:
        kind, _, rest = key.partition("|")
        namespace, name = split_key(rest)
        ns = namespace or ""
        if kind == _SUB:
            return reconcile_subscription(self.ctx, self.catalogs, ns, name)
        if kind == _CSV:
            return self._reconcile_csv(ns, name)
        if kind == _OG:
            reconcile_operator_group(self.ctx, ns, name)
        return None
