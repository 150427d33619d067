"""SCC admission checks the requesting user as well as the pod's service account, as OpenShift does."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kalab.lab.apiserver import access
from kalab.lab.apiserver.errors import ApiError
from kalab.lab.controllers.bootstrap import bootstrap
from kalab.lab.controllers.scc import SCC_ANNOTATION, install_scc_admission
from tests.lab.controllers.cluster_kit import ControlPlane
from tests.support.paths import FIXTURES

NS = "keepalived-operator"


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path)
    bootstrap(plane.ctx)
    install_scc_admission(plane.ctx)
    plane.namespace(NS)
    yield plane
    access.set_requester(None)  # this thread is the test's: leave it as the lab's own writes are


def keepalived_pod() -> dict[str, Any]:
    pod = yaml.safe_load((FIXTURES / "seed_keepalived_pod.yaml").read_text())
    for field in ("name", "uid", "resourceVersion", "creationTimestamp", "selfLink", "annotations"):
        pod["metadata"].pop(field, None)
    pod.pop("status", None)
    return pod


def test_the_admin_may_create_a_privileged_pod(cp: ControlPlane) -> None:
    access.set_requester(access.ADMIN)
    pod = cp.create("/pods", copy.deepcopy(keepalived_pod()), NS)
    assert pod["metadata"]["annotations"][SCC_ANNOTATION] == "privileged"


def test_an_unprivileged_requester_adds_nothing(cp: ControlPlane) -> None:
    access.set_requester(access.service_account_user("demo", "builder"))
    with pytest.raises(ApiError) as err:
        cp.create("/pods", copy.deepcopy(keepalived_pod()), NS)
    assert err.value.code == 403 and "unable to validate against any security context constraint" in err.value.message


def test_the_lab_s_own_writes_are_not_the_admin_s(cp: ControlPlane) -> None:
    """A controller thread (no requester), like the DaemonSet controller's, gets only what the account may use."""
    access.set_requester(access.ADMIN)  # the test's thread is the admin's; a controller's thread is not
    outcome: list[BaseException] = []

    def create() -> None:
        try:
            cp.create("/pods", copy.deepcopy(keepalived_pod()), NS)
        except ApiError as err:
            outcome.append(err)

    thread = threading.Thread(target=create)
    thread.start()
    thread.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], ApiError) and outcome[0].code == 403
