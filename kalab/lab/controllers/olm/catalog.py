"""The lab's catalogs: which packages and channels each default CatalogSource offers, and the CatalogSource
objects in `openshift-marketplace` that users see (a source whose object is gone offers nothing)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from kalab.lab.apiserver.store import Obj, now_rfc3339
from kalab.lab.context import LabContext
from kalab.model.operator_manifests import OPERATOR_PACKAGE, OPERATOR_VERSION, csv_name, operator_csv

MARKETPLACE: Final = "openshift-marketplace"


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
