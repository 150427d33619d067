"""Which Services a KeepalivedGroup picks up, their VIPs and instance keys (FACTS.md §2)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kalab.model.errors import KalabError
from kalab.model.operator import (
    GROUP_ANNOTATION,
    SPREADVIPS_ANNOTATION,
    VERBATIM_ANNOTATION,
    instance_keys,
    instance_vips,
    keepalived_pods,
    selected_services,
    service_vips,
    verbatim_config,
)

OPERATOR = Path(__file__).resolve().parents[1] / "fixtures" / "operator"


def load(name: str) -> Any:
    return yaml.safe_load((OPERATOR / name).read_text())


@pytest.fixture
def group() -> dict[str, Any]:
    return dict(load("keepalivedgroup-workers.yaml"))


@pytest.fixture
def demo() -> dict[str, Any]:
    return dict(load("demo-service.yaml"))


def service(
    name: str,
    namespace: str = "demo",
    svc_type: str = "ClusterIP",
    external_ips: list[str] | None = None,
    ingress: list[str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    notes = {GROUP_ANNOTATION: "keepalived-operator/keepalivedgroup-workers", **(annotations or {})}
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": notes},
        "spec": {"type": svc_type},
    }
    if external_ips is not None:
        svc["spec"]["externalIPs"] = external_ips
    if ingress is not None:
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in ingress]}}
    return svc


def names(services: list[dict[str, Any]]) -> list[str]:
    return [f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in services]


def test_the_seed_demo_service_is_selected(group: dict[str, Any], demo: dict[str, Any]) -> None:
    assert names(selected_services(group, [demo])) == ["demo/demo"]


def test_selection_needs_the_annotation_naming_this_group(group: dict[str, Any]) -> None:
    unannotated = service("plain", svc_type="LoadBalancer")
    del unannotated["metadata"]["annotations"]
    other_group = service("other", svc_type="LoadBalancer")
    other_group["metadata"]["annotations"][GROUP_ANNOTATION] = "keepalived-operator/keepalivedgroup-edge"
    # The annotation names <namespace>/<name>; the group's bare name is not enough.
    bare_name = service("bare", svc_type="LoadBalancer")
    bare_name["metadata"]["annotations"][GROUP_ANNOTATION] = "keepalivedgroup-workers"
    assert selected_services(group, [unannotated, other_group, bare_name]) == []


def test_selection_needs_load_balancer_type_or_external_ips(group: dict[str, Any]) -> None:
    lb = service("lb", svc_type="LoadBalancer")
    with_ips = service("ext", external_ips=["172.21.6.40"])
    empty_ips = service("empty", external_ips=[])
    cluster_ip = service("cip")
    node_port = service("np", svc_type="NodePort")
    picked = selected_services(group, [lb, with_ips, empty_ips, cluster_ip, node_port])
    assert names(picked) == ["demo/ext", "demo/lb"]


def test_selected_services_are_sorted_by_namespace_then_name(group: dict[str, Any]) -> None:
    services = [
        service("b", namespace="zeta", svc_type="LoadBalancer"),
        service("a", namespace="zeta", svc_type="LoadBalancer"),
        service("z", namespace="alpha", svc_type="LoadBalancer"),
    ]
    assert names(selected_services(group, services)) == ["alpha/z", "zeta/a", "zeta/b"]


def test_the_seed_vip_appears_twice_but_is_used_once(demo: dict[str, Any]) -> None:
    # `oc get svc` shows 172.21.6.50,172.21.6.50: once from spec.externalIPs, once from the LB status.
    assert service_vips(demo) == ["172.21.6.50"]


def test_vips_merge_ingress_first_then_external_ips_in_stable_order() -> None:
    svc = service(
        "m",
        svc_type="LoadBalancer",
        external_ips=["172.21.6.52", "172.21.6.50", "172.21.6.52"],
        ingress=["172.21.6.50", "172.21.6.51"],
    )
    assert service_vips(svc) == ["172.21.6.50", "172.21.6.51", "172.21.6.52"]


def test_hostname_only_ingress_entries_carry_no_vip() -> None:
    svc = service("h", svc_type="LoadBalancer")
    svc["status"] = {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}
    assert service_vips(svc) == []


def test_a_vip_that_is_not_an_address_names_the_service() -> None:
    svc = service("bad", external_ips=["172.21.6.999"])
    with pytest.raises(KalabError, match=r"Service demo/bad .*172\.21\.6\.999"):
        service_vips(svc)


def test_instance_key_is_namespace_slash_name(demo: dict[str, Any]) -> None:
    assert instance_keys(demo) == ["demo/demo"]


def test_spreadvips_gives_one_key_per_vip() -> None:
    svc = service("spread", external_ips=["172.21.6.50", "172.21.6.51"], annotations={SPREADVIPS_ANNOTATION: "true"})
    assert instance_keys(svc) == ["demo/spread/172.21.6.50", "demo/spread/172.21.6.51"]
    svc["metadata"]["annotations"][SPREADVIPS_ANNOTATION] = "false"
    assert instance_keys(svc) == ["demo/spread"]


def test_a_service_still_waiting_for_its_vip_has_no_instance() -> None:
    assert instance_keys(service("pending", svc_type="LoadBalancer")) == []


def test_ipv6_vips_are_not_instance_vips() -> None:
    svc = service("dual", external_ips=["172.21.6.50", "fd00::50"])
    assert service_vips(svc) == ["172.21.6.50", "fd00::50"]
    assert instance_vips(svc) == ["172.21.6.50"]


def test_verbatim_annotation_is_a_json_object_of_keyword_lines() -> None:
    svc = service("v", annotations={VERBATIM_ANNOTATION: '{"advert_int": "2", "nopreempt": "", "priority": 150}'})
    assert verbatim_config(svc) == {"advert_int": "2", "nopreempt": "", "priority": "150"}
    assert verbatim_config(service("none")) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"advert_int": 2', r"Service demo/v .*not valid JSON"),
        ('["advert_int"]', r"Service demo/v must be a JSON object"),
        ('{"a b": "1"}', r"one keepalived keyword"),
        ('{"advert_int": "1\\n}"}', r"single-line value"),
        ('{"advert_int": {"x": 1}}', r"give a string or a number"),
    ],
)
def test_bad_verbatim_annotation_is_one_sentence_naming_the_service(raw: str, message: str) -> None:
    svc = service("v", annotations={VERBATIM_ANNOTATION: raw})
    with pytest.raises(KalabError, match=message) as err:
        verbatim_config(svc)
    assert "\n" not in str(err.value)


def test_keepalived_pods_are_the_groups_labelled_pods_sorted_by_name(group: dict[str, Any]) -> None:
    pods = load("keepalived-pods.yaml")["items"]
    stranger = copy.deepcopy(pods[0])
    stranger["metadata"].update(name="aaa-other-group", labels={"keepalivedGroup": "keepalivedgroup-edge"})
    elsewhere = copy.deepcopy(pods[0])
    elsewhere["metadata"].update(name="aaa-elsewhere", namespace="demo")
    mine = keepalived_pods(group, [pods[1], stranger, elsewhere, pods[0]])
    assert [p["metadata"]["name"] for p in mine] == [
        "keepalivedgroup-workers-fgzv8",
        "keepalivedgroup-workers-q7xlp",
    ]
