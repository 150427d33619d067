"""How the lab makes each catalog fault for real, and undoes it.

Every fault is made the way it happens in the field: through the API as a user with kubectl would (a label
removed, a patch to the network config, an annotation typed wrong), or on the nodes through the lab's entry (a
firewall rule, a link down). `make` returns what `undo` needs to restore the lab (kept in the lab's state dir).
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kalab.cluster import exporter, keepalived, network, scc
from kalab.cluster._common import as_dict, poll
from kalab.cluster.olm import OLM_GROUP
from kalab.lab.dataplane.naming import POD_INTERFACE
from kalab.lab.dataplane.topology import Topology, TopologySpec
from kalab.lab.faults.site import GROUP, GROUP_NAMESPACE, SERVICE, SERVICE_NAMESPACE, FaultSite
from kalab.model import manifests, objects
from kalab.model.errors import KalabError
from kalab.model.operator import GROUP_ANNOTATION

Memo = dict[str, Any]
FAULT_NAMESPACE: Final = "kalab-faults"  # what the lab adds for a fault (extra services) lives here
BAD_IMAGE: Final = "quay.io/redhat-cop/keepalived-ipfailover-typo:latest"
BAD_INTERFACE: Final = "eth1"
SECOND_GROUP: Final = "keepalivedgroup-second"
MISSING_GROUP: Final = f"{GROUP_NAMESPACE}/keepalivedgroup-missing"
ROGUE_VIP: Final = "192.168.7.250"  # on the nodes' segment, outside every externalIP block
ROGUE_COMMAND: Final = ["/usr/sbin/keepalived", "--no-syslog"]  # no console log: the daemon keeps no pipe open
VRRP_DROP: Final = ["INPUT", "-p", "vrrp", "-j", "DROP"]


@dataclass(frozen=True)
class Recipe:
    """One reproducible fault: `make` breaks the lab and returns a memo, `undo` restores it from that memo."""

    id: str
    make: Callable[[FaultSite], Memo]
    undo: Callable[[FaultSite, Memo], None]


# -- network.config/cluster ------------------------------------------------------------------------------------


def _external_ip(site: FaultSite) -> dict[str, Any]:
    found = network.read_external_ip(site.cluster)
    if not found or not found.get("autoAssignCIDRs"):
        raise KalabError("network.config/cluster has no autoAssignCIDRs yet; patch the CIDRs first (notebook 02).")
    return found


def _no_autoassign(site: FaultSite) -> Memo:
    memo = {"autoAssignCIDRs": _external_ip(site)["autoAssignCIDRs"]}
    site.patch_network({"autoAssignCIDRs": None})
    return memo


def _policy_empty(site: FaultSite) -> Memo:
    memo = {"policy": _external_ip(site).get("policy") or {}}
    site.patch_network({"policy": {"allowedCIDRs": None, "rejectedCIDRs": None}})  # an empty policy refuses all
    return memo


def _overlapping_block(site: FaultSite) -> Memo:
    """Both CIDRs moved, as notebook 02 patches them, to the last /27 of the service network: the services get
    addresses that clients inside the cluster route to kube-proxy's service range instead."""
    current = _external_ip(site)
    memo = {"autoAssignCIDRs": current["autoAssignCIDRs"], "policy": current.get("policy") or {}}
    services = objects.status(network.read_network(site.cluster)).get("serviceNetwork") or []
    if not services:
        raise KalabError("network.config/cluster reports no status.serviceNetwork to overlap.")
    last = list(ipaddress.ip_network(str(services[0])).subnets(new_prefix=27))[-1]
    site.patch_network({"autoAssignCIDRs": [str(last)], "policy": {"allowedCIDRs": [str(last)]}})
    return memo


def _restore_network(site: FaultSite, memo: Memo) -> None:
    site.patch_network(memo)


# -- OLM ---------------------------------------------------------------------------------------------------------


def _operator_group(site: FaultSite) -> dict[str, Any]:
    """The one OperatorGroup of the operator's namespace (the seed installs the operator where its group lives)."""
    found = as_dict(
        site.cluster.custom.list_namespaced_custom_object(OLM_GROUP, "v1", GROUP_NAMESPACE, "operatorgroups")
    )
    groups = found.get("items") or []
    if len(groups) != 1:
        raise KalabError(f"{GROUP_NAMESPACE} has {len(groups)} OperatorGroups, not one; install the operator first.")
    return dict(groups[0])


def _own_namespace_group(site: FaultSite) -> Memo:
    """The operator's OperatorGroup narrowed to its own namespace (as many operators' install docs have it): OLM
    fails the CSV with UnsupportedOperatorGroup, since this operator supports AllNamespaces only."""
    group = _operator_group(site)
    name = objects.name_of(group)
    memo = {"name": name, "targetNamespaces": objects.spec(group).get("targetNamespaces")}
    _patch_operator_group(site, name, [GROUP_NAMESPACE])
    return memo


def _restore_operator_group(site: FaultSite, memo: Memo) -> None:
    _patch_operator_group(site, memo["name"], memo["targetNamespaces"])


def _patch_operator_group(site: FaultSite, name: str, targets: list[str] | None) -> None:
    body = {"spec": {"targetNamespaces": targets}}  # a merge patch: None removes the field (all namespaces)
    site.cluster.custom.patch_namespaced_custom_object(OLM_GROUP, "v1", GROUP_NAMESPACE, "operatorgroups", name, body)


# -- nodes and the SCC -----------------------------------------------------------------------------------------


def _unlabel(site: FaultSite) -> Memo:
    selector = {str(k): str(v) for k, v in objects.spec(site.group()).get("nodeSelector", {}).items()}
    if not selector:
        raise KalabError(f"KeepalivedGroup {GROUP_NAMESPACE}/{GROUP} has no nodeSelector to unmatch.")
    labelled = []
    for node in site.cluster.core.list_node().items:
        meta = node.metadata or client.V1ObjectMeta()
        if meta.name and all((meta.labels or {}).get(k) == v for k, v in selector.items()):
            labelled.append(meta.name)
            site.cluster.core.patch_node(meta.name, {"metadata": {"labels": dict.fromkeys(selector)}})
    return {"nodes": labelled, "labels": selector}


def _relabel(site: FaultSite, memo: Memo) -> None:
    for node in memo["nodes"]:
        site.cluster.core.patch_node(node, {"metadata": {"labels": memo["labels"]}})


def _revoke_scc(site: FaultSite) -> Memo:
    """Take the privileged SCC away from the group namespace's `default` SA, then let the DaemonSet re-create its
    pods (as a node drain or an upgrade does): SCC admission now refuses them."""
    user, memo = manifests.scc_user(GROUP_NAMESPACE), {"users": False, "rbac": False}
    sccs = site.cluster.dynamic.resources.get(api_version="security.openshift.io/v1", kind="SecurityContextConstraints")
    users = list(sccs.get(name="privileged").to_dict().get("users") or [])
    if user in users:
        index = users.index(user)
        patch = [{"op": "test", "path": f"/users/{index}", "value": user}, {"op": "remove", "path": f"/users/{index}"}]
        sccs.patch(name="privileged", body=patch, content_type="application/json-patch+json")
        memo["users"] = True
    binding = manifests.scc_grant(GROUP_NAMESPACE, form="rbac")
    assert isinstance(binding, dict)
    with contextlib.suppress(ApiException):
        site.cluster.rbac.delete_namespaced_role_binding(objects.name_of(binding), GROUP_NAMESPACE)
        memo["rbac"] = True
    site.cluster.core.delete_collection_namespaced_pod(GROUP_NAMESPACE, label_selector=f"keepalivedGroup={GROUP}")
    return memo


def _grant_scc(site: FaultSite, memo: Memo) -> None:
    scc.grant_privileged(site.cluster, GROUP_NAMESPACE, form="rbac" if memo.get("rbac") else "users")


# -- the KeepalivedGroup and the service -----------------------------------------------------------------------


def _group_field(key: str, value: str) -> Callable[[FaultSite], Memo]:
    def make(site: FaultSite) -> Memo:
        memo = {key: objects.spec(site.group()).get(key)}
        site.patch_group({"spec": {key: value}})
        return memo

    return make


def _no_free_router_id(site: FaultSite) -> Memo:
    """Every router ID 1–255 blacklisted (meant to dodge other VRRP speakers, overdone): the operator has no ID left
    for the demo's instance, as a group with more than 255 services has none for the 256th."""
    memo = {"blacklistRouterIDs": objects.spec(site.group()).get("blacklistRouterIDs")}
    site.patch_group({"spec": {"blacklistRouterIDs": list(range(1, 256))}})
    return memo


def _restore_group(site: FaultSite, memo: Memo) -> None:
    site.patch_group({"spec": memo})


def _second_group(site: FaultSite) -> Memo:
    """A second KeepalivedGroup selecting the same nodes: its pods want the exporter's hostPort 9650 as well."""
    group = site.group()
    body = {
        "apiVersion": group["apiVersion"],
        "kind": group["kind"],
        "metadata": {"name": SECOND_GROUP, "namespace": GROUP_NAMESPACE},
        "spec": objects.spec(group),
    }
    site.cluster.custom.create_namespaced_custom_object(
        keepalived.GROUP, keepalived.VERSION, GROUP_NAMESPACE, keepalived.PLURAL, body
    )
    return {"group": SECOND_GROUP}


def _drop_second_group(site: FaultSite, memo: Memo) -> None:
    """Delete the second group and wait until its pods are gone too."""
    try:
        site.cluster.custom.delete_namespaced_custom_object(
            keepalived.GROUP, keepalived.VERSION, GROUP_NAMESPACE, keepalived.PLURAL, memo["group"]
        )
    except ApiException as err:
        if err.status != 404:
            raise

    def timed_out() -> KalabError:
        return KalabError(f"The pods of KeepalivedGroup {memo['group']} are still there after 60 s.")

    poll(lambda: keepalived.keepalived_pods(site.cluster, GROUP_NAMESPACE, memo["group"]).empty, 60, timed_out, 0.25)


def _annotate(value: str) -> Callable[[FaultSite], Memo]:
    def make(site: FaultSite) -> Memo:
        memo = {"annotation": site.annotation()}
        site.annotate(value)
        return memo

    return make


def _restore_annotation(site: FaultSite, memo: Memo) -> None:
    site.annotate(memo["annotation"])


def _create_services(site: FaultSite, names: list[str]) -> None:
    """LoadBalancer services in the group, in a namespace of the lab's faults, as an app team would add them."""
    meta = client.V1ObjectMeta(name=FAULT_NAMESPACE, labels={"app.kubernetes.io/managed-by": "kalab-faults"})
    site.cluster.core.create_namespace(client.V1Namespace(metadata=meta))
    for name in names:
        body = client.V1Service(
            metadata=client.V1ObjectMeta(name=name, annotations={GROUP_ANNOTATION: f"{GROUP_NAMESPACE}/{GROUP}"}),
            spec=client.V1ServiceSpec(
                type="LoadBalancer", selector={"app": name}, ports=[client.V1ServicePort(port=80)]
            ),
        )
        site.cluster.core.create_namespaced_service(FAULT_NAMESPACE, body)


def _small_block(site: FaultSite) -> Memo:
    """The auto-assign block narrowed to the /30 around the demo's address (two usable addresses), then two more
    services: one takes the last address, the other stays <pending>."""
    memo = {"autoAssignCIDRs": _external_ip(site)["autoAssignCIDRs"]}
    svc = site.cluster.core.read_namespaced_service(SERVICE, SERVICE_NAMESPACE)
    ingress = (svc.status.load_balancer.ingress if svc.status and svc.status.load_balancer else None) or []
    if not ingress or not ingress[0].ip:
        raise KalabError(f"Service {SERVICE_NAMESPACE}/{SERVICE} has no EXTERNAL-IP yet; deploy the demo first.")
    site.patch_network({"autoAssignCIDRs": [str(ipaddress.ip_network(f"{ingress[0].ip}/30", strict=False))]})
    _create_services(site, ["shop", "blog"])
    return {**memo, "namespace": FAULT_NAMESPACE}


def _wide_block(site: FaultSite, memo: Memo) -> None:
    _drop_extra_services(site, memo)
    site.patch_network({"autoAssignCIDRs": memo["autoAssignCIDRs"]})


def _extra_services(site: FaultSite) -> Memo:
    """Two more LoadBalancer services in the group, none spreading its VIPs, and then a restart of the keepalived
    pods on every node but the demo's MASTER (as a rolling upgrade does): with equal priorities nobody takes a VIP
    back, so every VIP stays on the node that was not restarted."""
    names = ["shop", "blog"]
    _create_services(site, names)
    wanted = {f"{SERVICE_NAMESPACE}/{SERVICE}", *(f"{FAULT_NAMESPACE}/{n}" for n in names)}

    def holder() -> str | None:
        """The demo's MASTER node, once its keepalived runs an instance for every service."""
        states = exporter.vrrp_states(site.cluster, GROUP_NAMESPACE, GROUP)
        masters = states[(states["instance"] == f"{SERVICE_NAMESPACE}/{SERVICE}") & (states["state"] == "MASTER")]
        if len(masters) != 1:
            return None
        node = str(masters["node"].iloc[0])
        return node if wanted <= set(states[states["node"] == node]["instance"]) else None

    def timed_out() -> KalabError:
        return KalabError("The keepalived pods did not take in the new services within 30 s; see `kalab doctor`.")

    kept: str = poll(holder, 30, timed_out, interval=0.5)
    pods = keepalived.keepalived_pods(site.cluster, GROUP_NAMESPACE, GROUP)
    for pod in pods[pods["node"] != kept]["pod"]:
        site.cluster.core.delete_namespaced_pod(str(pod), GROUP_NAMESPACE)
    return {"namespace": FAULT_NAMESPACE}


def _drop_extra_services(site: FaultSite, memo: Memo) -> None:
    """Delete the faults' namespace and wait until it is gone, so the next fault may create it again."""
    namespace = memo["namespace"]
    try:
        site.cluster.core.delete_namespace(namespace)
    except ApiException as err:
        if err.status != 404:
            raise

    def gone() -> bool:
        try:
            site.cluster.core.read_namespace(namespace)
        except ApiException as err:
            if err.status == 404:
                return True
            raise
        return False

    def timed_out() -> KalabError:
        return KalabError(f"Namespace {namespace} is still there after 60 s; see `oc get ns {namespace} -o yaml`.")

    poll(gone, 60, timed_out, interval=0.25)


# -- the nodes' network ----------------------------------------------------------------------------------------


def _block_vrrp(site: FaultSite) -> Memo:
    nodes = site.keepalived_nodes()
    for node in nodes:
        site.node(node, ["iptables", "-w", "-I", *VRRP_DROP])
    return {"nodes": nodes}


def _allow_vrrp(site: FaultSite, memo: Memo) -> None:
    for node in memo["nodes"]:
        for _ in range(10):  # every copy of the rule, should it have been inserted twice
            if not _rule_present(site, node):
                break
            site.node(node, ["iptables", "-w", "-D", *VRRP_DROP])


def _rule_present(site: FaultSite, node: str) -> bool:
    rules = site.node(node, ["iptables", "-w", "-S", "INPUT"]).replace("-p 112 ", "-p vrrp ")
    return "-A INPUT -p vrrp -j DROP" in rules


def _links_down(site: FaultSite) -> Memo:
    """Every keepalived node loses its link: each keepalived goes FAULT and drops the VIP."""
    nodes, topology = site.keepalived_nodes(), Topology(TopologySpec.seed(), entry=site.info.entry())
    for node in nodes:
        topology.set_uplink(node, False)
    return {"nodes": nodes}


def _links_up(site: FaultSite, memo: Memo) -> None:
    topology = Topology(TopologySpec.seed(), entry=site.info.entry())
    for node in memo["nodes"]:
        topology.set_uplink(node, True)  # and its routes, which the kernel dropped with the link


def _rogue_dir(site: FaultSite) -> Path:
    return site.info.state_dir / "faults" / "rogue"


def _rogue(site: FaultSite) -> Memo:
    """Another VRRP speaker on the segment (as the cluster's own keepalived for its API VIP would be), started on a
    node outside the group with the router ID the group gave the demo, for an address of its own."""
    status = objects.status(site.group())
    vrid = (status.get("routerIDs") or {}).get(f"{SERVICE_NAMESPACE}/{SERVICE}")
    if not vrid:
        raise KalabError(f"The group has no router ID for {SERVICE_NAMESPACE}/{SERVICE} yet; deploy the demo first.")
    lb_nodes = site.keepalived_nodes()
    others = [n for n in Topology(TopologySpec.seed()).node_names if n not in lb_nodes]
    node = others[0] if others else lb_nodes[0]
    folder = _rogue_dir(site)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "keepalived.conf").write_text(
        "vrrp_instance rogue {\n"
        f"    interface {POD_INTERFACE}\n    virtual_router_id {int(vrid)}\n    priority 100\n    advert_int 1\n"
        f"    virtual_ipaddress {{\n        {ROGUE_VIP}/32\n    }}\n}}\n"
    )
    # keepalived forks into the background (no --dont-fork), so it outlives this command, inside the lab's tree.
    site.node(node, [*ROGUE_COMMAND, f"--use-file={folder / 'keepalived.conf'}", *_pid_flags(folder)])
    return {"node": node, "vrid": int(vrid)}


def _pid_flags(folder: Path) -> list[str]:
    names = {"pid": "keepalived.pid", "vrrp_pid": "vrrp.pid", "checkers_pid": "checkers.pid", "bfd_pid": "bfd.pid"}
    return [f"--{flag}={folder / name}" for flag, name in names.items()]


def _stop_rogue(site: FaultSite, memo: Memo) -> None:
    folder = _rogue_dir(site)
    pid_file = folder / "keepalived.pid"
    if pid_file.exists():
        site.node(memo["node"], ["kill", pid_file.read_text().split()[0]], check=False)

    def timed_out() -> KalabError:
        return KalabError(f"The rogue keepalived on {memo['node']} did not stop within 30 s.")

    poll(lambda: not pid_file.exists(), 30, timed_out, interval=0.2)  # keepalived removes it when it ends
    shutil.rmtree(folder, ignore_errors=True)


RECIPES: Final[dict[str, Recipe]] = {
    r.id: r
    for r in (
        Recipe("operator-not-ready", _own_namespace_group, _restore_operator_group),
        Recipe("autoassign-missing", _no_autoassign, _restore_network),
        Recipe("externalip-not-allowed", _policy_empty, _restore_network),
        Recipe("no-loadbalancer-nodes", _unlabel, _relabel),
        Recipe("scc-missing", _revoke_scc, _grant_scc),
        Recipe("image-pull", _group_field("image", BAD_IMAGE), _restore_group),
        Recipe("wrong-interface", _group_field("interface", BAD_INTERFACE), _restore_group),
        Recipe("group-missing", _annotate(MISSING_GROUP), _restore_annotation),
        Recipe("annotation-malformed", _annotate(GROUP), _restore_annotation),  # the name without its namespace
        Recipe("vrrp-blocked", _block_vrrp, _allow_vrrp),
        Recipe("vip-nowhere", _links_down, _links_up),
        Recipe("vips-concentrated", _extra_services, _drop_extra_services),
        Recipe("cidr-exhausted", _small_block, _wide_block),
        Recipe("port-conflict", _second_group, _drop_second_group),
        Recipe("vrid-collision", _rogue, _stop_rogue),
        Recipe("router-ids-exhausted", _no_free_router_id, _restore_group),
        Recipe("cidr-overlaps-cluster", _overlapping_block, _restore_network),
    )
}

NOT_YET: Final[dict[str, str]] = {
    "node-down": "not yet: needs the lab's node controller to mark a node NotReady when its link is down",
    "vip-not-on-master": "no: keepalived 2.2.7 notices an address removed by hand and hands the VIP to its backup, "
    "so the disagreement does not last",
}
