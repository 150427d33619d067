"""OperatorGroups: their status lists the namespaces their operators watch."""

from __future__ import annotations

from kalab.lab.apiserver.store import now_rfc3339
from kalab.lab.context import LabContext
from kalab.lab.controllers.olm.status import same
from kalab.model import objects


def reconcile_operator_group(ctx: LabContext, namespace: str, name: str) -> None:
    rt = ctx.rt("operators.coreos.com/operatorgroups")
    og = ctx.store.try_get(rt, namespace, name)
    if og is None:
        return
    targets = list(objects.spec(og).get("targetNamespaces") or [])
    # OLM writes [""] for an AllNamespaces group: the operator watches the whole cluster.
    status = {"namespaces": targets or [""], "lastUpdated": now_rfc3339()}
    if not same(og.get("status"), status):
        og["status"] = status
        ctx.store.update(rt, og, subresource="status")
