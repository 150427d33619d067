"""Where the VIP is: nowhere (no MASTER) or on two nodes (split brain, or a stale address a dead keepalived left)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from kalab.cluster import exporter, keepalived, nodes
from kalab.cluster._common import Deadline
from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose._reads import _joined, _read_group, _read_service
from kalab.cluster.diagnose.findings import NOWHERE, PENDING, TWO_NODES, Finding, _ok, _problem, problems
from kalab.cluster.diagnose.keepalived_pods import _ready
from kalab.model import objects, operator
from kalab.model.errors import KalabError

SETTLING = frozenset(
    {
        "instance in the group",
        "nodes to carry the VIP",
        "exporters answer",
        "`ip addr` on the nodes",
        "a MASTER exists",
        "VIP on a node",
        "at most one MASTER",
        "VIP on at most one node",
    }
)
SPLIT_BRAIN_TODO = (
    "the keepalived instances do not hear each other's VRRP adverts: let IP protocol 112 (VRRP, multicast "
    "224.0.0.18) pass between the nodes, or set unicastEnabled: true in the KeepalivedGroup"
)


def annotation_finding(svc: Mapping[str, Any], group_ref: str) -> Finding:
    """Does the service opt in to this group (annotation), and is it a kind of service the operator serves?"""
    where, check = operator.namespaced_name(svc), "group annotation"
    value = str(objects.annotations_of(svc).get(operator.GROUP_ANNOTATION, "")).strip()
    spec = objects.spec(svc)
    if not value:
        ns, name = where.split("/", 1)
        seen = f"{where} has no {operator.GROUP_ANNOTATION} annotation, so no KeepalivedGroup makes a VRRP "
        seen += "instance for its VIP"
        return _problem(NOWHERE, check, seen, f"oc annotate svc {name} -n {ns} {operator.GROUP_ANNOTATION}={group_ref}")
    if value != group_ref:
        todo = "set the annotation to <namespace>/<name> of an existing KeepalivedGroup"
        return _problem(NOWHERE, check, f"{where} names the group {value}, not {group_ref}", todo)
    if spec.get("type") != "LoadBalancer" and not spec.get("externalIPs"):
        seen = f"{where} is type {spec.get('type') or 'ClusterIP'} without externalIPs"
        todo = "the operator serves only LoadBalancer services and ones with spec.externalIPs: change the type"
        return _problem(NOWHERE, check, seen, todo)
    return _ok(NOWHERE, check, f"{operator.GROUP_ANNOTATION}: {value}")


def router_id_finding(keys: Sequence[str], router_ids: Mapping[str, Any], group_ref: str) -> Finding:
    """Has the operator given the service's VRRP instance(s) a router ID (status.routerIDs of the group)?"""
    check, have = "instance in the group", {k: router_ids[k] for k in keys if k in router_ids}
    if keys and len(have) == len(keys):
        return _ok(NOWHERE, check, "; ".join(f"{k} has router ID {v}" for k, v in have.items()))
    seen = f"status.routerIDs of {group_ref} has no entry for {_joined(keys, 'the service')} "
    seen += f"(it lists {_joined(router_ids, 'nothing')})"
    return _problem(NOWHERE, check, seen, "the operator has not taken the service in: fix its annotation first")


def interface_finding(spec: Mapping[str, Any], addresses: Mapping[str, pd.DataFrame]) -> Finding:
    """Does the group's interface exist on every node that runs keepalived (addresses: node → `ip addr` rows)?"""
    check = "interface on the nodes"
    if spec.get("interfaceFromIP"):
        seen = f"interfaceFromIP {spec['interfaceFromIP']}: each node uses the interface that routes to it"
        return _ok(NOWHERE, check, seen)
    wanted = str(spec.get("interface") or "")
    missing = {node: frame for node, frame in addresses.items() if wanted not in set(frame["interface"])}
    if not missing:
        return _ok(NOWHERE, check, f"{wanted} exists on {_joined(addresses, 'no node')}")
    have = "; ".join(f"{n} has {_joined(sorted({str(i) for i in f['interface'] if i}))}" for n, f in missing.items())
    seen = f"interface {wanted or '(empty)'} does not exist on {_joined(missing)} ({have})"
    todo = "set spec.interface of the KeepalivedGroup to the nodes' interface on the VIPs' network, or interfaceFromIP"
    return _problem(NOWHERE, check, seen, todo)


def _states_text(mine: pd.DataFrame) -> str:
    return _joined(f"{s} on {n}" for n, s in sorted(zip(mine["node"], mine["state"], strict=True)))


def placement_findings(
    keys: Sequence[str], vips: Sequence[str], states: pd.DataFrame, addresses: Mapping[str, pd.DataFrame]
) -> list[Finding]:
    """Is the service's instance MASTER exactly once, and each VIP on exactly one node?

    `states` is exporter.vrrp_states (pod, node, instance, state); `addresses` maps each node that runs keepalived
    to its `ip addr` rows (interface, address), as nodes.node_interfaces returns them.
    """
    mine = states[states["instance"].isin(list(keys))]
    masters = sorted(set(mine[mine["state"] == "MASTER"]["node"]))
    holders = {vip: sorted(n for n, f in addresses.items() if vip in set(f["address"].dropna())) for vip in vips}
    return [
        _master_exists(masters, mine, keys, states),
        _vip_somewhere(holders, _joined(addresses, "no node")),
        _master_once(masters, mine, keys),
        _vip_on_one(holders, masters),
    ]


def _master_once(masters: Sequence[str], mine: pd.DataFrame, keys: Sequence[str]) -> Finding:
    check = "at most one MASTER"
    if len(masters) > 1:
        seen = f"{_joined(keys)} is MASTER on {_joined(masters)} at once (split brain)"
        return _problem(TWO_NODES, check, seen, SPLIT_BRAIN_TODO)
    return _ok(TWO_NODES, check, f"exporters: {_states_text(mine)}" if len(mine) else "no instance reports it")


def _vip_on_one(holders: Mapping[str, Sequence[str]], masters: Sequence[str]) -> Finding:
    check = "VIP on at most one node"
    doubled = {vip: held for vip, held in holders.items() if len(held) > 1}
    if not doubled:
        return _ok(TWO_NODES, check, "; ".join(f"{vip} on {_joined(held, 'no node')}" for vip, held in holders.items()))
    seen = "; ".join(f"{vip} is on {_joined(held)}" for vip, held in doubled.items())
    stale = sorted({n for held in doubled.values() for n in held if n not in masters})
    if not stale or not masters:
        return _problem(TWO_NODES, check, f"{seen} (split brain)", SPLIT_BRAIN_TODO)
    seen += f"; {_joined(stale)} is not MASTER, so its copy is a stale address left by a keepalived that died"
    todo = f"delete the keepalived pod on {_joined(stale)} so it starts clean, or remove the address there "
    todo += "with `ip addr del <vip>/32 dev <interface>`"
    return _problem(TWO_NODES, check, seen, todo)


def _master_exists(masters: Sequence[str], mine: pd.DataFrame, keys: Sequence[str], states: pd.DataFrame) -> Finding:
    check = "a MASTER exists"
    if masters:
        return _ok(NOWHERE, check, f"MASTER on {_joined(masters)}")
    if mine.empty:
        listed = _joined(sorted(set(states["instance"])), "no instance at all")
        seen = f"no keepalived instance reports {_joined(keys, 'the service')} (the exporters list {listed})"
        todo = "the group has no VRRP instance for the service: fix the checks above (annotation, routerIDs)"
        return _problem(NOWHERE, check, seen, todo)
    if (mine["state"] == "FAULT").any():
        todo = "keepalived cannot use its interface: compare spec.interface of the group with `ip -o addr` on the nodes"
        return _problem(NOWHERE, check, _states_text(mine), todo)
    todo = "an election takes about 4 s: look again, then read the keepalived container's log"
    return _problem(NOWHERE, check, f"no MASTER yet ({_states_text(mine)})", todo)


def _vip_somewhere(holders: Mapping[str, Sequence[str]], looked: str) -> Finding:
    check, missing = "VIP on a node", [vip for vip, held in holders.items() if not held]
    if holders and not missing:
        return _ok(NOWHERE, check, "; ".join(f"{vip} on {_joined(held)}" for vip, held in holders.items()))
    seen = f"{_joined(missing, 'no VIP')} is on none of the keepalived nodes ({looked})"
    return _problem(NOWHERE, check, seen, "no keepalived instance is MASTER for it: see the checks above")


def _node_addresses(cluster: Cluster, ready: Sequence[str], namespace: str) -> tuple[dict[str, pd.DataFrame], str]:
    """Each node's addresses (`ip addr` through exec into its keepalived pod), and why some could not be read."""
    found: dict[str, pd.DataFrame] = {}
    failed: list[str] = []
    for node in ready:
        try:
            found[node] = nodes.node_interfaces(cluster, node, namespace)
        except KalabError as err:
            failed.append(f"{node}: {str(err).rstrip('.')}")
    return found, "; ".join(failed)


def _exporter_states(cluster: Cluster, namespace: str, group: str) -> tuple[pd.DataFrame, str]:
    try:
        return exporter.vrrp_states(cluster, namespace, group), ""
    except KalabError as err:
        return pd.DataFrame(columns=exporter.STATE_COLUMNS), str(err).rstrip(".")


def diagnose_vip(
    cluster: Cluster,
    namespace: str = "demo",
    name: str = "demo",
    group: str = keepalived.DEFAULT_GROUP,
    group_namespace: str = keepalived.DEFAULT_NAMESPACE,
    settle: float = 15,
) -> list[Finding]:
    """Where the service's VIP is: annotation, the group's instance, pods, interface, exporter states, `ip addr`.

    Problems that an election or a config reload in progress may still clear (no MASTER yet, an instance not yet
    reported) are looked at again for up to `settle` seconds (0: one look); what remains is the diagnosis.
    """
    deadline = Deadline(settle)
    while True:
        findings = _vip_once(cluster, namespace, name, group, group_namespace)
        found = {f.check for f in problems(findings)}
        if not found or not found <= SETTLING or deadline.expired():
            return findings
        time.sleep(min(1.0, deadline.left()))


def _vip_once(cluster: Cluster, namespace: str, name: str, group: str, group_namespace: str) -> list[Finding]:
    svc, group_ref = _read_service(cluster, namespace, name), f"{group_namespace}/{group}"
    findings, vips = [annotation_finding(svc, group_ref)], operator.instance_vips(svc)
    if not vips:
        seen = f"{namespace}/{name} has no EXTERNAL-IP to carry"
        return [*findings, _problem(PENDING, "EXTERNAL-IP assigned", seen, "diagnose_external_ip() says why")]
    obj = _read_group(cluster, group, group_namespace)
    if obj is None:
        seen, todo = f"there is no KeepalivedGroup {group_ref}", "create it (notebook 01) or fix the annotation"
        return [*findings, _problem(NOWHERE, "KeepalivedGroup exists", seen, todo)]
    keys = operator.instance_keys(svc)
    findings.append(router_id_finding(keys, objects.status(obj).get("routerIDs") or {}, group_ref))
    ready = sorted(_ready(keepalived.keepalived_pods(cluster, group_namespace, group))["node"])
    if not ready:
        seen, todo = "no keepalived pod of the group is Running and Ready", "diagnose_keepalived() says why"
        findings.append(_problem(NOWHERE, "nodes to carry the VIP", seen, todo))
        return [*findings, *placement_findings(keys, vips, pd.DataFrame(columns=exporter.STATE_COLUMNS), {})]
    findings.append(_ok(NOWHERE, "nodes to carry the VIP", f"keepalived Ready on {_joined(ready)}"))
    addresses, failed = _node_addresses(cluster, ready, group_namespace)
    if failed:
        findings.append(_problem(NOWHERE, "`ip addr` on the nodes", failed, "check the keepalived pods are Running"))
    findings.append(interface_finding(objects.spec(obj), addresses))
    states, scrape_error = _exporter_states(cluster, group_namespace, group)
    if scrape_error:
        todo = "check the prometheus-exporter container of each keepalived pod"
        findings.append(_problem(NOWHERE, "exporters answer", scrape_error, todo))
    return [*findings, *placement_findings(keys, vips, states, addresses)]
