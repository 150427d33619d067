"""The seed from start to end against `kalab lab up`, through the Kubernetes API only (the official client).

Install the operator through OLM, label master-1 and master-2, watch the DaemonSet fail until the SCC grant,
create the KeepalivedGroup, patch the externalIP CIDRs, deploy the demo, curl its EXTERNAL-IP from the bastion,
find the seed's KUBE-FW chain on master-2 through exec, scrape the exporter through the API proxy, delete the
demo and see the VIP leave every node.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.stream import stream

from kalab.cluster import failover
from kalab.lab import control
from kalab.lab.dataplane import naming, netlink
from kalab.lab.running import RunningLab
from kalab.model import manifests
from kalab.model.prometheus import parse_exposition
from tests.support.labs import running_lab
from tests.support.markers import needs_lab_tools
from tests.support.waiting import wait_for

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
LAB = "t-seed"
BASTION = naming.bastion_ns(naming.DEFAULT_PREFIX)  # every lab has its own, by the same name
DEMO_BODY = "Hello!<br>Welcome to RedHat Developer<br>Enjoy all of the ad-free articles<br>"
T = TypeVar("T")


def until(what: str, probe: Callable[[], T], timeout: float = 60.0) -> T:
    """Wait for `probe` (the order reads like the seed's steps: what, how, how long)."""
    return wait_for(probe, timeout, what, 0.1)


@pytest.fixture(scope="module")
def lab() -> Iterator[control.LabInfo]:
    with running_lab(LAB) as info:
        yield info


@pytest.fixture(scope="module")
def api(lab: control.LabInfo) -> client.ApiClient:
    return config.new_client_from_config(str(lab.kubeconfig))


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create_any(api: client.ApiClient, obj: dict[str, Any]) -> None:
    """Create one manifest the way `oc create -f` would, whatever its kind."""
    kind, ns = obj["kind"], obj["metadata"].get("namespace")
    core = client.CoreV1Api(api)
    if kind == "Namespace":
        core.create_namespace(obj)
    elif kind == "Pod":
        core.create_namespaced_pod(ns, obj)
    elif kind == "Service":
        core.create_namespaced_service(ns, obj)
    else:
        group, version = obj["apiVersion"].split("/")
        plural = {
            "OperatorGroup": "operatorgroups",
            "Subscription": "subscriptions",
            "KeepalivedGroup": "keepalivedgroups",
        }[kind]
        custom(api).create_namespaced_custom_object(group, version, ns, plural, obj)


def exec_out(api: client.ApiClient, ns: str, pod: str, container: str, command: list[str]) -> str:
    resp = stream(
        client.CoreV1Api(api).connect_get_namespaced_pod_exec,
        pod,
        ns,
        container=container,
        command=command,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=30)
    out = resp.read_stdout()
    assert resp.returncode == 0, resp.read_stderr()
    return str(out)


def curl_vip(lab: control.LabInfo, vip: str) -> str:
    done = subprocess.run(
        lab.entry().command(BASTION, ["curl", "-s", "--max-time", "2", f"http://{vip}/"]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout if done.returncode == 0 else ""


def keepalived_pods(api: client.ApiClient) -> list[Any]:
    return list(
        client.CoreV1Api(api)
        .list_namespaced_pod("keepalived-operator", label_selector="keepalivedGroup=keepalivedgroup-workers")
        .items
    )


def test_the_seed_end_to_end(lab: control.LabInfo, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    assert [n.metadata.name for n in core.list_node().items] == ["master-0", "master-1", "master-2"]

    # 1. Install the operator through OLM and wait for its CSV.
    for obj in manifests.olm_install():
        create_any(api, obj)
    csvs = lambda: custom(api).list_namespaced_custom_object(  # noqa: E731
        "operators.coreos.com", "v1alpha1", "keepalived-operator", "clusterserviceversions"
    )["items"]
    until("the CSV to succeed", lambda: [c for c in csvs() if c.get("status", {}).get("phase") == "Succeeded"])

    # 2. Label the loadbalancer nodes, as the seed does.
    for node in ("master-2", "master-1"):
        core.patch_node(node, {"metadata": {"labels": {"node-role.kubernetes.io/loadbalancer": ""}}})

    # 3. The KeepalivedGroup's DaemonSet cannot create pods before the SCC grant ...
    create_any(api, manifests.keepalived_group(interface=lab_interface()))
    events = lambda: [  # noqa: E731
        e
        for e in core.list_namespaced_event("keepalived-operator").items
        if e.reason == "FailedCreate" and "unable to validate against any security context constraint" in e.message
    ]
    until("FailedCreate events", events)
    assert keepalived_pods(api) == []

    # ... and runs them once `oc adm policy add-scc-to-user privileged -z default -n keepalived-operator` is done.
    patch = manifests.scc_grant("keepalived-operator", form="users")
    dynamic = DynamicClient(api, cache_file=str(lab.state_dir / "discovery.json"))  # not /tmp/osrcp-*.json
    sccs = dynamic.resources.get(api_version="security.openshift.io/v1", kind="SecurityContextConstraints")
    sccs.patch(name="privileged", body=patch, content_type="application/json-patch+json")
    running = lambda: [  # noqa: E731
        p
        for p in keepalived_pods(api)
        if p.status and p.status.phase == "Running"  # status comes after creation
    ]
    pods = until("two running keepalived pods", lambda: len(running()) == 2 and running())
    assert sorted(p.spec.node_name for p in pods) == ["master-1", "master-2"]
    assert all(p.metadata.annotations.get("openshift.io/scc") == "privileged" for p in pods)

    # 4. Patch the externalIP CIDRs exactly as the seed does (host bits and all).
    custom(api).patch_cluster_custom_object(
        "config.openshift.io", "v1", "networks", "cluster", manifests.network_patch("172.21.6.33/27", "172.21.6.33/27")
    )

    # 5. Deploy the demo; the service gets an EXTERNAL-IP from 172.21.6.32/27, shown twice like the seed's.
    core.create_namespace({"metadata": {"name": "demo"}})
    for obj in manifests.demo():
        create_any(api, obj)
    svc = until(
        "an EXTERNAL-IP",
        lambda: (
            (s := core.read_namespaced_service("demo", "demo")).status
            and s.status.load_balancer
            and s.status.load_balancer.ingress
            and s.spec.external_ips  # the controller writes both, separately: wait for what is asserted below
            and s
        ),
    )
    vip = svc.status.load_balancer.ingress[0].ip
    assert ipaddress.ip_address(vip) in ipaddress.ip_network("172.21.6.32/27")
    assert svc.spec.external_ips == [vip]

    # 6. curl it from the bastion: the seed's page, from both pods over repeated requests.
    def both_pod_ips() -> set[str]:
        # The kubelet gives each pod its IP when it starts it, after the pod exists: wait for both addresses.
        ips = {p.status.pod_ip if p.status else None for p in core.list_namespaced_pod("demo").items}
        return ips if len(ips) == 2 and None not in ips else set()

    pod_ips = until("both demo pods to have an IP", both_pod_ips)
    until("the VIP to answer", lambda: curl_vip(lab, vip).startswith(DEMO_BODY), 60)
    answered: set[str] = set()
    for _ in range(80):
        body = curl_vip(lab, vip)
        assert body.startswith(DEMO_BODY)
        answered.add(body.removeprefix(DEMO_BODY))
        if answered == pod_ips:
            break
    assert answered == pod_ips

    # 7. The seed's KUBE-FW chain on master-2, read through exec into its keepalived pod (hostNetwork).
    on_master_2 = next(p for p in keepalived_pods(api) if p.spec.node_name == "master-2").metadata.name

    def kube_services() -> str | None:
        argv = ["iptables", "-t", "nat", "-L", "KUBE-SERVICES", "-n", "-v"]
        out = exec_out(api, "keepalived-operator", on_master_2, "keepalived", argv)
        return out if "KUBE-FW-ZFZLPEKTCJ3DBGAL" in out else None

    listing = until("the KUBE-FW rule on master-2", kube_services, 30)
    line = next(ln for ln in listing.splitlines() if "KUBE-FW-ZFZLPEKTCJ3DBGAL" in ln)
    assert "/* demo/demo:http loadbalancer IP */" in line and vip in line and "dpt:80" in line

    # 8. The exporter through the API proxy: exactly one MASTER for demo/demo, once each node's reloader has given
    # its keepalived the demo's instance (it polls the config every 5 s, so the backup may still lack it).
    def demo_states() -> list[str]:
        states = []
        for pod in keepalived_pods(api):
            text = core.connect_get_namespaced_pod_proxy_with_path(
                f"{pod.metadata.name}:9650", "keepalived-operator", "metrics"
            )
            frame = parse_exposition(text)
            if "name" not in frame:
                return []
            sent = frame[(frame["metric"] == "keepalived_vrrp_advert_sent") & (frame["name"] == "demo/demo")]
            states += sent["state"].tolist()
        return sorted(states) if len(states) == 2 else []

    states = until("both exporters to report demo/demo", demo_states, 30)
    assert states == ["BACKUP", "MASTER"]

    # 9. A graceful failover on the running lab: the backup claims the VIP after Skew_Time.
    result, _, _ = failover.run_trial(RunningLab(lab), "graceful")
    assert result.new_master not in (None, result.old_master)
    assert result.takeover_ms is not None and 500 <= result.takeover_ms <= 900

    # 10. Delete the demo ("to restore"): the VIP leaves every node.
    for obj in manifests.demo():
        kind, name = obj["kind"], obj["metadata"]["name"]
        (core.delete_namespaced_service if kind == "Service" else core.delete_namespaced_pod)(name, "demo")
    nodes = [naming.node_ns(naming.DEFAULT_PREFIX, n) for n in ("master-0", "master-1", "master-2")]
    entry = lab.entry()
    until(
        "the VIP to leave every node",
        lambda: not any(a.startswith(vip + "/") for ns in nodes for a in netlink.addresses(ns, lab_interface(), entry)),
        30,
    )


def lab_interface() -> str:
    from kalab.lab.dataplane.naming import POD_INTERFACE

    return POD_INTERFACE
