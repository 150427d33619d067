"""A control plane without an API server for controller tests: a Store, a LabContext and running controllers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.patch import merge_patch
from kalab.lab.apiserver.resources import Registry, ResourceType
from kalab.lab.apiserver.store import Store
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller
from kalab.lab.dataplane.topology import Topology
from tests.support.waiting import wait_for as wait_for  # re-exported: the tests import it from here

T = TypeVar("T")
Obj = dict[str, Any]


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
        def write() -> Obj:
            current = self.store.get(self.rt(key), namespace, name)
            return self.store.update(self.rt(key), merge_patch(current, patch), namespace)

        return _retrying_conflicts(write)

    def patch_status(self, key: str, name: str, status: Obj, namespace: str | None = None) -> Obj:
        def write() -> Obj:
            current = self.store.get(self.rt(key), namespace, name)
            current["status"] = status
            return self.store.update(self.rt(key), current, namespace, subresource="status")

        return _retrying_conflicts(write)

    def namespace(self, name: str) -> Obj:
        return self.create("/namespaces", {"metadata": {"name": name}})


def _retrying_conflicts(write: Callable[[], Obj], attempts: int = 5) -> Obj:
    """A patch as the API server applies one: read, merge, write, and again if a controller wrote in between."""
    for _ in range(attempts - 1):
        try:
            return write()
        except ApiError as err:
            if err.reason != "Conflict":
                raise
    return write()
