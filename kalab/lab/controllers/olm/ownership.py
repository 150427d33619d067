"""How OLM marks the cluster-scoped objects a namespaced CSV cannot own (owner references are
`kalab.model.objects.owner_reference`)."""

from __future__ import annotations


def owner_labels(namespace: str, csv: str) -> dict[str, str]:
    return {"olm.owner": csv, "olm.owner.kind": "ClusterServiceVersion", "olm.owner.namespace": namespace}
