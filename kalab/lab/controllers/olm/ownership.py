"""How OLM marks what it creates: owner references, and labels for the cluster-scoped objects a namespaced CSV
cannot own."""

from __future__ import annotations

from kalab.lab.apiserver.store import Obj


def owner_ref(obj: Obj, controller: bool) -> Obj:
    meta = obj["metadata"]
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}
    if controller:
        ref |= {"controller": True, "blockOwnerDeletion": True}
    return ref


def owner_labels(namespace: str, csv: str) -> dict[str, str]:
    return {"olm.owner": csv, "olm.owner.kind": "ClusterServiceVersion", "olm.owner.namespace": namespace}
