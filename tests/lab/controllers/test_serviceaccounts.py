"""Every namespace gets its `default` service account (and OpenShift's builder/deployer), and keeps it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kalab.lab.apiserver.namespaces import NamespaceTerminator
from kalab.lab.controllers.bootstrap import bootstrap
from kalab.lab.controllers.serviceaccounts import ServiceAccountsController
from tests.lab.controllers.cluster_kit import ControlPlane, wait_for


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path)
    bootstrap(plane.ctx)
    plane.start(ServiceAccountsController(plane.ctx))
    yield plane
    plane.stop()


def test_existing_and_new_namespaces_get_default(cp: ControlPlane) -> None:
    wait_for(lambda: cp.get("/serviceaccounts", "default", "kube-system"), what="default SA in kube-system")
    cp.namespace("keepalived-operator")
    for name in ("default", "builder", "deployer"):
        wait_for(lambda n=name: cp.get("/serviceaccounts", n, "keepalived-operator"), what=f"{name} SA")


def test_a_deleted_default_comes_back(cp: ControlPlane) -> None:
    cp.namespace("demo")
    first = wait_for(lambda: cp.get("/serviceaccounts", "default", "demo"), what="default SA")
    cp.store.delete(cp.rt("/serviceaccounts"), "demo", "default")
    again = wait_for(lambda: cp.get("/serviceaccounts", "default", "demo"), what="default SA again")
    assert again["metadata"]["uid"] != first["metadata"]["uid"]


def test_a_deleted_namespace_is_left_alone(cp: ControlPlane) -> None:
    cp.namespace("gone")
    wait_for(lambda: cp.get("/serviceaccounts", "default", "gone"), what="default SA")
    cp.store.delete(cp.rt("/namespaces"), None, "gone")
    # The "kubernetes" finalizer keeps it Terminating until the namespace controller's pass has emptied it.
    assert NamespaceTerminator(cp.store, 0).run("gone")
    controller = cp.controllers[0]
    done = controller.reconciled
    wait_for(lambda: controller.reconciled > done, what="the controller to look again")
    assert cp.get("/serviceaccounts", "default", "gone") is None
