"""Endpoints follow the ready pods behind each service, with their nodes and resolved target ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kalab.lab.controllers.endpoints import EndpointsController, subsets
from tests.lab.controllers.cluster_kit import ControlPlane, wait_for


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path)
    plane.namespace("demo")
    plane.namespace("other")
    plane.start(EndpointsController(plane.ctx))
    yield plane
    plane.stop()


def pod(name: str, node: str, ip: str | None, ready: bool, phase: str = "Running", **labels: str) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]}
    if ip:
        status["podIP"] = ip
    return {
        "metadata": {"name": name, "labels": labels or {"env": "test"}},
        "spec": {"nodeName": node, "containers": [{"name": "php", "ports": [{"name": "web", "containerPort": 8080}]}]},
        "status": status,
    }


def service(target: Any = 80, name: str = "demo") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "spec": {
            "selector": {"env": "test"},
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": target}],
        },
    }


def endpoints(cp: ControlPlane, name: str = "demo") -> dict[str, Any] | None:
    return cp.get("/endpoints", name, "demo")


def test_ready_pods_are_addresses_others_not_ready(cp: ControlPlane) -> None:
    cp.create("/pods", pod("test-0", "master-0", "10.254.0.10", True), "demo")
    cp.create("/pods", pod("test-1", "master-2", "10.254.2.10", True), "demo")
    cp.create("/pods", pod("starting", "master-1", "10.254.1.10", False), "demo")
    cp.create("/pods", pod("unscheduled", "", None, False, "Pending"), "demo")
    cp.create("/pods", pod("done", "master-1", "10.254.1.11", False, "Succeeded"), "demo")
    cp.create("/pods", pod("stranger", "master-1", "10.254.1.12", True, env="prod"), "demo")
    cp.create("/pods", pod("elsewhere", "master-1", "10.254.1.13", True), "other")
    cp.create("/services", service(), "demo")
    found = wait_for(lambda: endpoints(cp), what="endpoints")
    assert found["metadata"]["labels"] == {"app": "demo"}
    [subset] = found["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.254.0.10", "10.254.2.10"]
    assert subset["addresses"][1]["nodeName"] == "master-2"
    assert subset["addresses"][1]["targetRef"]["kind"] == "Pod"
    assert subset["addresses"][1]["targetRef"]["name"] == "test-1"
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.254.1.10"]
    assert subset["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]


def test_endpoints_follow_readiness_labels_and_deletion(cp: ControlPlane) -> None:
    cp.create("/services", service(), "demo")
    cp.create("/pods", pod("test-0", "master-0", "10.254.0.10", False), "demo")
    wait_for(lambda: (e := endpoints(cp)) and "notReadyAddresses" in e["subsets"][0], what="a not-ready address")
    cp.patch_status("/pods", "test-0", pod("x", "master-0", "10.254.0.10", True)["status"], "demo")
    wait_for(lambda: (e := endpoints(cp)) and "addresses" in e["subsets"][0], what="the pod to become an address")
    cp.patch("/pods", "test-0", {"metadata": {"labels": {"env": "gone"}}}, "demo")
    wait_for(lambda: (e := endpoints(cp)) and "subsets" not in e, what="the pod to leave")
    cp.store.delete(cp.rt("/services"), "demo", "demo")
    wait_for(lambda: endpoints(cp) is None, what="the endpoints to go with the service")


def test_named_target_port_is_resolved_per_pod(cp: ControlPlane) -> None:
    cp.create("/pods", pod("test-0", "master-0", "10.254.0.10", True), "demo")
    cp.create("/services", service("web"), "demo")
    found = wait_for(lambda: (e := endpoints(cp)) and e.get("subsets") and e, what="endpoints")
    assert found["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_services_without_selector_keep_their_own_endpoints(cp: ControlPlane) -> None:
    manual = service()
    del manual["spec"]["selector"]
    cp.create("/services", manual, "demo")
    port = {"port": 80, "protocol": "TCP"}  # the protocol as the API server defaults it
    mine = {"metadata": {"name": "demo"}, "subsets": [{"addresses": [{"ip": "10.254.0.99"}], "ports": [port]}]}
    cp.create("/endpoints", mine, "demo")
    cp.create("/pods", pod("test-0", "master-0", "10.254.0.10", True), "demo")
    controller = cp.controllers[0]
    wait_for(lambda: controller.reconciled >= 1 and controller.idle(), what="the controller to catch up")
    found = endpoints(cp)
    assert found is not None and found["subsets"] == mine["subsets"]


def test_publish_not_ready_addresses() -> None:
    svc = service()
    svc["spec"]["publishNotReadyAddresses"] = True
    starting = pod("starting", "master-1", "10.254.1.10", False)
    starting["metadata"]["namespace"] = "demo"
    [subset] = subsets(svc, [starting])
    assert [a["ip"] for a in subset["addresses"]] == ["10.254.1.10"] and "notReadyAddresses" not in subset
