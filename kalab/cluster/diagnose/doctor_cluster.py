"""The doctor's cluster-wide checks: is the operator installed and ready, and does the network config hand out
LoadBalancer addresses (an auto-assign block that is set, not exhausted, admitted by the externalIP policy, and
clear of the cluster's own networks)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace

from kalab.cluster import keepalived, network
from kalab.cluster._common import as_dict
from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose._reads import _joined, _networks, _policy_nets
from kalab.cluster.diagnose.doctor_evidence import Evidence
from kalab.cluster.diagnose.external_ip import (
    _holders,
    _service_warnings,
    auto_block,
    block_finding,
    policy_refusal,
    usage_finding,
)
from kalab.cluster.diagnose.keepalived_pods import _operator_findings
from kalab.cluster.diagnose.verdicts import Verdict, bad_verdict, from_findings, ok_verdict
from kalab.cluster.olm import OLM_GROUP
from kalab.model import objects, operator


def operator_ready(ev: Evidence) -> Verdict:
    namespace = keepalived.DEFAULT_NAMESPACE
    verdict = from_findings("operator-not-ready", "cluster", _operator_findings(ev.cluster, namespace))
    if verdict.status == "fail" and "UnsupportedOperatorGroup" in verdict.evidence:
        # Redoing the install would keep the narrowed group: the fix is the group watching all namespaces.
        return replace(verdict, fix=_widen_operator_group(ev.cluster, namespace))
    return verdict


def _widen_operator_group(cluster: Cluster, namespace: str) -> str:
    """The fix for a CSV that supports AllNamespaces only: its OperatorGroup without targetNamespaces."""
    found = as_dict(cluster.custom.list_namespaced_custom_object(OLM_GROUP, "v1", namespace, "operatorgroups"))
    names = [objects.name_of(g) for g in found.get("items") or []]
    name = names[0] if len(names) == 1 else "<operatorgroup>"
    remove = '[{"op":"remove","path":"/spec/targetNamespaces"}]'
    return f"oc patch operatorgroup {name} -n {namespace} --type json -p '{remove}'"


def autoassign(ev: Evidence) -> Verdict:
    return from_findings("autoassign-missing", "cluster", [block_finding(ev.external())])


def exhausted(ev: Evidence) -> Verdict:
    block = auto_block(ev.external())
    assert block is not None  # autoassign-missing comes first
    waiting = [s for s in ev.services if not operator.service_vips(s)]
    found = usage_finding(block, _holders(ev.cluster), bool(waiting))
    if not found.ok:  # the events of the services left waiting say so in OpenShift's words
        events = [
            f"{operator.namespaced_name(s)}: {w}"
            for s in waiting
            for w in _service_warnings(ev.cluster, *operator.namespaced_name(s).split("/", 1))
        ]
        found = replace(found, evidence=f"{found.evidence}; events: {_joined(events)}")
    return from_findings("cidr-exhausted", "cluster", [found])


def policy(ev: Evidence) -> Verdict:
    """Requested externalIPs must pass spec.externalIP.policy: the services' own, and the block's addresses."""
    external = ev.external()
    allowed = _policy_nets(external, "allowedCIDRs")
    refusals: list[str] = []
    for svc in ev.services:
        spec, block = objects.spec(svc), auto_block(external)
        for ip in spec.get("externalIPs") or []:
            auto = spec.get("type") == "LoadBalancer" and block is not None and ipaddress.ip_address(ip) in block
            reason = None if auto else policy_refusal(str(ip), external)
            if reason:
                refusals.append(f"{operator.namespaced_name(svc)}: {reason}")
    block = auto_block(external)
    if block is not None:
        reason = policy_refusal(str(next(block.hosts(), block.network_address)), external)
        if reason:
            refusals.append(f"requesting an address of {block} by hand is refused: {reason}")
    cidr = str(block) if block is not None else "<cidr>"
    if refusals:
        return bad_verdict("externalip-not-allowed", "cluster", "; ".join(refusals), cidr=cidr)
    return ok_verdict("externalip-not-allowed", "cluster", f"policy.allowedCIDRs {_joined(allowed)} admits the block")


def overlaps(ev: Evidence) -> Verdict:
    block = auto_block(ev.external())
    assert block is not None  # autoassign-missing comes first
    status = objects.status(network.read_network(ev.cluster))
    cluster_nets = [e.get("cidr") for e in status.get("clusterNetwork") or [] if isinstance(e, Mapping)]
    nets = _networks([*cluster_nets, *(status.get("serviceNetwork") or [])])
    clash = [str(n) for n in nets if n.version == block.version and n.overlaps(block)]
    if clash:
        return bad_verdict("cidr-overlaps-cluster", "cluster", f"{block} overlaps {_joined(clash)}")
    return ok_verdict("cidr-overlaps-cluster", "cluster", f"{block} overlaps neither {_joined(nets, 'network')}")
