"""A control plane without an API server for controller tests: a Store, a LabContext and running controllers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

from waiting import wait_for as wait_for  # re-exported: the tests import it from here

from kalab.lab.apiserver.resources import Registry, ResourceType
from kalab.lab.apiserver.store import Store
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller
from kalab.lab.dataplane.topology import Topology

T = TypeVar("T")
Obj = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what `oc patch --type=merge` sends)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class ControlPlane:
    def __init__(self, tmp_path: Path, topology: Topology | None = None) -> None:
        self.store = Store(Registry())
        self.ctx = LabContext(store=self.store, state_dir=tmp_path, topology=topology)
        self.controllers: list[Controller] = []

    def start(self, *controllers: Controller) -> None:
        for controller in controllers:
            controller.start()
            self.controllers.append(controller)

    def stop(self) -> None:
        for controller in self.controllers:
            controller.stop()

    def rt(self, key: str) -> ResourceType:
        return self.ctx.rt(key)

    def create(self, key: str, obj: Obj, namespace: str | None = None) -> Obj:
        return self.store.create(self.rt(key), obj, namespace)

    def get(self, key: str, name: str, namespace: str | None = None) -> Obj | None:
        return self.store.try_get(self.rt(key), namespace, name)

    def patch(self, key: str, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        current = self.store.get(self.rt(key), namespace, name)
        return self.store.update(self.rt(key), merge_patch(current, patch), namespace)

    def patch_status(self, key: str, name: str, status: Obj, namespace: str | None = None) -> Obj:
        current = self.store.get(self.rt(key), namespace, name)
        current["status"] = status
        return self.store.update(self.rt(key), current, namespace, subresource="status")

    def namespace(self, name: str) -> Obj:
        return self.create("/namespaces", {"metadata": {"name": name}})
