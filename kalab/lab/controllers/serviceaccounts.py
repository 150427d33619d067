"""Every namespace gets the service accounts OpenShift creates in it: `default`, `builder` and `deployer`.

Pods run as `default` unless they name another account, and `oc adm policy add-scc-to-user privileged -z default`
grants exactly that account, so it has to exist as soon as the namespace does. Deleting one brings it back.
"""

from __future__ import annotations

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.store import Event
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller
from kalab.model import objects

ACCOUNTS = ("default", "builder", "deployer")


def _namespace_key(event: Event) -> list[str]:
    return [objects.name_of(event.object)]


def _account_key(event: Event) -> list[str]:
    meta = event.object["metadata"]
    return [meta["namespace"]] if event.type == "DELETED" and meta.get("name") in ACCOUNTS else []


class ServiceAccountsController(Controller):
    name = "serviceaccounts"

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.watches["/namespaces"] = _namespace_key
        self.watches["/serviceaccounts"] = _account_key

    def reconcile(self, key: str) -> float | None:
        store = self.ctx.store
        ns = store.try_get(self.ctx.rt("/namespaces"), None, key)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return None
        accounts = self.ctx.rt("/serviceaccounts")
        for name in ACCOUNTS:
            if store.try_get(accounts, key, name) is not None:
                continue
            try:
                store.create(accounts, {"metadata": {"name": name, "namespace": key}}, key)
            except ApiError as err:
                # 409: created meanwhile; 404: the namespace went away meanwhile. Both leave nothing to do.
                if err.code not in (404, 409):
                    raise
        return None
