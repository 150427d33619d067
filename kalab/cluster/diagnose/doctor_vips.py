"""The doctor's checks of where the VIPs are: per service, whether another VRRP speaker shares its router ID,
whether a MASTER holds each VIP, on exactly one node; per group, whether all its VIPs crowd onto one node."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from kalab.cluster import exporter, keepalived, nodes
from kalab.cluster._common import Deadline
from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose._reads import _joined
from kalab.cluster.diagnose.doctor_evidence import Evidence, GroupReads
from kalab.cluster.diagnose.findings import Finding
from kalab.cluster.diagnose.keepalived_pods import _ready
from kalab.cluster.diagnose.verdicts import Verdict, bad_verdict, from_findings, ok_verdict
from kalab.cluster.diagnose.vip import placement_findings, router_id_finding
from kalab.model import objects, operator
from kalab.model.errors import KalabError

COLLISION_LOOK = 2.0  # seconds between the two looks at the exporters' error counters
SETTLE = 5.0  # seconds an election in progress (no MASTER yet) is looked at again before it counts
PLACEMENT_FAULTS = ("vip-nowhere", "vrrp-blocked", "vip-not-on-master")  # checked from one look at the placement


def collision(ev: Evidence, svc: dict[str, Any], group: GroupReads) -> Verdict:
    """Adverts for the service's router ID that carry other addresses: keepalived counts them in addr_list_err.
    A counter keeps what happened since keepalived started, so it counts only when it rises between two looks."""
    where, keys = operator.namespaced_name(svc), operator.instance_keys(svc)
    if group.ref not in ev.errors:
        first = _addr_list_errors(ev.cluster, group)
        time.sleep(COLLISION_LOOK)  # two adverts at the operator's advert_int of 1 s
        second = _addr_list_errors(ev.cluster, group)
        ev.errors[group.ref] = {k: (first.get(k, v), v) for k, v in second.items() if v > first.get(k, v)}
    rising = {k: v for k, v in ev.errors[group.ref].items() if k[1] in keys}
    vrids = objects.status(group.obj).get("routerIDs") or {}
    if rising:
        seen = "; ".join(f"addr_list_err of {n} on {p} rose {a:g} → {b:g}" for (p, n), (a, b) in rising.items())
        seen += f" (router ID {_joined(str(vrids.get(k)) for k in keys)} is used by another VRRP speaker)"
        return bad_verdict("vrid-collision", where, seen, group=group.name, group_namespace=group.namespace)
    return ok_verdict(
        "vrid-collision",
        where,
        f"no adverts with other addresses for router ID {_joined(vrids.get(k) for k in keys)}",
    )


def _addr_list_errors(cluster: Cluster, group: GroupReads) -> dict[tuple[str, str], float]:
    """(pod, instance) → keepalived_vrrp_addr_list_err, from every Running keepalived pod's exporter."""
    frame = exporter.scrape_all(cluster, group.namespace, group.name)
    if "name" not in frame.columns:
        return {}
    errors = frame[frame["metric"] == "keepalived_vrrp_addr_list_err"]
    return {(str(p), str(n)): float(v) for p, n, v in zip(errors["pod"], errors["name"], errors["value"], strict=True)}


def placed(fault_id: str, where: str, placement: Mapping[str, list[Finding]]) -> Verdict:
    """One of PLACEMENT_FAULTS for the service `where`, from the findings `placement` gave."""
    ns, name = where.split("/", 1)
    return from_findings(fault_id, where, placement[fault_id], service=name, namespace=ns)


def placement(ev: Evidence, svc: dict[str, Any], group: GroupReads) -> dict[str, list[Finding]]:
    """The VIP checks for one service, looked at again for a few seconds while an election may be running."""
    deadline = Deadline(SETTLE)
    while True:
        found = _placement_once(ev, svc, group)
        if all(f.ok for fs in found.values() for f in fs) or deadline.expired():
            return found
        time.sleep(min(0.5, deadline.left()))
        ev.states.pop(group.ref, None)
        ev.addresses.pop(group.ref, None)


def _placement_once(ev: Evidence, svc: dict[str, Any], group: GroupReads) -> dict[str, list[Finding]]:
    where, vips = operator.namespaced_name(svc), operator.instance_vips(svc)
    if not vips:
        seen = f"{where} has no EXTERNAL-IP to carry"
        return {
            "vip-nowhere": [Finding("VIP nowhere", "EXTERNAL-IP assigned", "problem", seen, "")],
            "vrrp-blocked": [Finding("VIP on two nodes", "EXTERNAL-IP assigned", "ok", "no VIP to place")],
            "vip-not-on-master": [Finding("VIP nowhere", "EXTERNAL-IP assigned", "ok", "no VIP to place")],
        }
    keys = operator.instance_keys(svc)
    routed = router_id_finding(keys, objects.status(group.obj).get("routerIDs") or {}, group.ref)
    if group.ref not in ev.addresses:
        ready = sorted(_ready(keepalived.keepalived_pods(ev.cluster, group.namespace, group.name))["node"])
        ev.addresses[group.ref] = {n: nodes.node_interfaces(ev.cluster, n, group.namespace) for n in ready}
    if group.ref not in ev.states:
        try:
            ev.states[group.ref] = exporter.vrrp_states(ev.cluster, group.namespace, group.name)
        except KalabError:
            ev.states[group.ref] = pd.DataFrame(columns=exporter.STATE_COLUMNS)
    addresses, states = ev.addresses[group.ref], ev.states[group.ref]
    master_exists, somewhere, once, on_one = placement_findings(keys, vips, states, addresses)
    mine = states[states["instance"].isin(keys)]
    masters = sorted(set(mine[mine["state"] == "MASTER"]["node"]))
    lacking = [
        f"{vip} not on {node}"
        for node in masters
        for vip in vips
        if node in addresses and vip not in set(addresses[node]["address"].dropna()) and len(keys) == 1
    ]
    check = "the MASTER holds the VIP"
    if lacking:
        on_master = Finding("VIP nowhere", check, "problem", f"MASTER on {_joined(masters)}, but {_joined(lacking)}")
    else:
        on_master = Finding(
            "VIP nowhere", check, "ok", f"MASTER on {_joined(masters, 'no node')} holds {_joined(vips)}"
        )
    return {
        "vip-nowhere": [routed, master_exists, somewhere],
        "vrrp-blocked": [once, on_one],
        "vip-not-on-master": [on_master],
    }


def concentrated(ev: Evidence, group: GroupReads) -> Verdict:
    """Are all the group's VIPs (of services not spreading theirs) MASTER on one node while others could help?"""
    states = ev.states.get(group.ref)
    if states is None:
        states = exporter.vrrp_states(ev.cluster, group.namespace, group.name)
    masters = states[states["state"] == "MASTER"]
    by_node = masters.groupby("node")["instance"].nunique().to_dict() if len(masters) else {}
    ready = sorted(_ready(group.pods)["node"]) if len(group.pods) else []
    total = int(masters["instance"].nunique()) if len(masters) else 0
    seen = ", ".join(f"{n}: {c}" for n, c in sorted(by_node.items())) or "no MASTER"
    if total >= 2 and len(by_node) == 1 and len(ready) >= 2:
        spread = [operator.namespaced_name(s) for s in ev.services if not operator.spreads_vips(s)]
        ns, name = spread[0].split("/", 1) if spread else ("<namespace>", "<service>")
        evidence = f"all {total} VIP instances are MASTER on {next(iter(by_node))} (of {_joined(ready)})"
        return bad_verdict("vips-concentrated", group.ref, evidence, service=name, namespace=ns)
    return ok_verdict("vips-concentrated", group.ref, f"MASTER instances per node: {seen}")
