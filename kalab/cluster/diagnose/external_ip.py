"""EXTERNAL-IP pending: no autoAssignCIDRs, a requested externalIP the policy refuses, or the block exhausted."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from kalab.cluster import network
from kalab.cluster._common import fail
from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose._reads import _as_dict, _joined, _networks, _policy_nets, _read_service
from kalab.cluster.diagnose.findings import PENDING, Finding, _ok, _problem
from kalab.model import objects, operator


@dataclass(frozen=True)
class ServiceAttempt:
    """What became of a request to create a service: admitted, or refused with the API server's own words."""

    namespace: str
    name: str
    admitted: bool
    message: str = ""
    external_ips: tuple[str, ...] = ()


def policy_refusal(ip: str, external_ip: Mapping[str, Any] | None) -> str | None:
    """Why OpenShift's `spec.externalIP.policy` refuses a requested externalIP, or None when it allows it.

    rejectedCIDRs win over allowedCIDRs; a policy that lists neither refuses every requested address.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"{ip} is not an IP address"
    allowed, rejected = _policy_nets(external_ip, "allowedCIDRs"), _policy_nets(external_ip, "rejectedCIDRs")
    if not allowed and not rejected:
        return f"spec.externalIP.policy lists no allowedCIDRs, so every requested externalIP ({ip}) is refused"
    inside = [n for n in rejected if address in n]
    if inside:
        return f"{ip} is inside rejectedCIDRs {inside[0]}"
    if allowed and not any(address in n for n in allowed):
        return f"{ip} is outside allowedCIDRs {_joined(allowed)}"
    return None


def auto_block(external_ip: Mapping[str, Any] | None) -> ipaddress.IPv4Network | None:
    """The network of the first autoAssignCIDRs entry (host bits masked off), or None when there is none."""
    nets = _networks((external_ip or {}).get("autoAssignCIDRs") or [])
    return nets[0] if nets and isinstance(nets[0], ipaddress.IPv4Network) else None


def block_finding(external_ip: Mapping[str, Any] | None) -> Finding:
    """Is there an auto-assign block for LoadBalancer services at all?"""
    block = auto_block(external_ip)
    if block is None:
        seen = "spec.externalIP.autoAssignCIDRs of network.config/cluster is not set, so no LoadBalancer service "
        seen += "gets an EXTERNAL-IP"
        return _problem(PENDING, "auto-assign block", seen, "patch the externalIP CIDRs (notebook 02)")
    raw = _joined((external_ip or {}).get("autoAssignCIDRs") or [])
    return _ok(PENDING, "auto-assign block", f"autoAssignCIDRs {raw} (network {block})")


def policy_finding(ips: Sequence[str], external_ip: Mapping[str, Any] | None) -> Finding:
    """Are the externalIPs requested by hand inside the policy?"""
    check, allowed = "requested externalIPs allowed", _joined(_policy_nets(external_ip, "allowedCIDRs"))
    if not ips:
        return _ok(PENDING, check, "no externalIP requested by hand (the EXTERNAL-IP comes from autoAssignCIDRs)")
    refusals = [r for ip in ips if (r := policy_refusal(ip, external_ip)) is not None]
    if not refusals:
        return _ok(PENDING, check, f"{_joined(ips)} inside allowedCIDRs {allowed}")
    todo = f"request an address inside allowedCIDRs {allowed}, leave spec.externalIPs empty so a LoadBalancer "
    todo += "service gets one from autoAssignCIDRs, or add the range to spec.externalIP.policy.allowedCIDRs"
    return _problem(PENDING, check, "; ".join(refusals), todo)


def _admission_finding(attempt: ServiceAttempt) -> Finding:
    check, where = "API server admission", f"{attempt.namespace}/{attempt.name}"
    if attempt.admitted:
        return _ok(PENDING, check, f"the API server accepted {where}")
    seen = f"the API server refused {where} with: {attempt.message.rstrip('.')}"
    return _problem(PENDING, check, seen, "change the request as the next check says; nothing was created")


def _holders(cluster: Cluster) -> dict[str, str]:
    """Every service's external address → the service (namespace/name) holding it."""
    try:
        items = cluster.core.list_service_for_all_namespaces().items
    except ApiException as err:
        raise fail("Listing services", err, "use a kubeconfig that may list services in all namespaces") from None
    held: dict[str, str] = {}
    for svc in (_as_dict(cluster, item) for item in items):
        for ip in operator.service_vips(svc):
            held.setdefault(ip, operator.namespaced_name(svc))
    return held


def usable_count(block: ipaddress.IPv4Network) -> int:
    """Addresses a block hands out: all but its network and broadcast address (for blocks larger than /31)."""
    return block.num_addresses - 2 if block.prefixlen < 31 else block.num_addresses


def usage_finding(block: ipaddress.IPv4Network, held: Mapping[str, str], pending: bool) -> Finding:
    """How full the auto-assign block is; a problem when it is full and the service is still waiting."""
    inside = sorted((ip for ip in held if ipaddress.ip_address(ip) in block), key=ipaddress.ip_address)
    usable, check = usable_count(block), "free addresses in the block"
    if len(inside) < usable or not pending:
        return _ok(PENDING, check, f"{len(inside)} of {usable} usable addresses of {block} in use")
    owners = _joined(f"{ip} by {held[ip]}" for ip in inside[:3]) + (" …" if len(inside) > 3 else "")
    seen = f"all {usable} usable addresses of {block} are held ({owners})"
    return _problem(PENDING, check, seen, "delete services that no longer need an address, or widen autoAssignCIDRs")


def _service_warnings(cluster: Cluster, namespace: str, name: str) -> list[str]:
    selector = f"involvedObject.kind=Service,involvedObject.name={name}"
    try:
        items = cluster.core.list_namespaced_event(namespace, field_selector=selector).items
    except ApiException as err:
        raise fail(f"Listing the events of service {namespace}/{name}", err, "check your access") from None
    return [f"{e.reason}: {e.message}" for e in items if e.type == "Warning"]


def assigned_finding(
    svc: Mapping[str, Any], external_ip: Mapping[str, Any] | None, full: bool, warnings: Sequence[str] = ()
) -> Finding:
    """Has the service an EXTERNAL-IP, and if not, which cause fits (no block, block exhausted, not yet)?"""
    where, check, vips = operator.namespaced_name(svc), "EXTERNAL-IP assigned", operator.service_vips(svc)
    if vips:
        return _ok(PENDING, check, f"{where} has EXTERNAL-IP {_joined(vips)}")
    kind = objects.spec(svc).get("type") or "ClusterIP"
    if kind != "LoadBalancer":
        seen = f"{where} is type {kind} without spec.externalIPs, so it has no EXTERNAL-IP"
        return _problem(PENDING, check, seen, "make it type LoadBalancer, or request an externalIP inside allowedCIDRs")
    block = auto_block(external_ip)
    if block is None:
        cause, todo = "autoAssignCIDRs is not set", "patch the externalIP CIDRs (notebook 02)"
    elif full:
        cause, todo = f"the block {block} is exhausted", "free an address or widen autoAssignCIDRs"
    else:
        cause, todo = "no address handed out yet", "look again in a few seconds, then read the service's events"
    events = f" (events: {'; '.join(warnings)})" if warnings else ""
    return _problem(PENDING, check, f"{where} is <pending>: {cause}{events}", todo)


def diagnose_external_ip(
    cluster: Cluster, namespace: str = "demo", name: str = "demo", attempt: ServiceAttempt | None = None
) -> list[Finding]:
    """Why a service has (or lacks) an EXTERNAL-IP; given a refused `attempt`, why the API server refused it."""
    external_ip = network.read_external_ip(cluster)
    findings = [block_finding(external_ip)]
    if attempt is not None:
        namespace, name = attempt.namespace, attempt.name
        findings.append(_admission_finding(attempt))
        if not attempt.admitted:
            return [*findings, policy_finding(attempt.external_ips, external_ip)]
    svc = _read_service(cluster, namespace, name)
    ingress = operator.service_vips({"status": objects.status(svc)})  # the auto-assigned address
    requested = [str(ip) for ip in objects.spec(svc).get("externalIPs") or [] if str(ip) not in ingress]
    findings.append(policy_finding(requested, external_ip))
    pending, block, full = not operator.service_vips(svc), auto_block(external_ip), False
    if block is not None:
        findings.append(usage_finding(block, _holders(cluster), pending))
        full = not findings[-1].ok
    warnings = _service_warnings(cluster, namespace, name) if pending else []
    return [*findings, assigned_finding(svc, external_ip, full, warnings)]
