"""Planning the externalIP block: what a CIDR really covers and whether it clashes with the cluster's networks.

OpenShift hands out LoadBalancer addresses from `spec.externalIP.autoAssignCIDRs` of the cluster network
configuration. A mistyped or overlapping block shows up much later as services without an address or as VIPs
that collide with pods, services or nodes, so the plan spells those problems out up front.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kalab.model.errors import KalabError

EXAMPLE = "172.21.6.32/27"

# The seed's cheat sheet for choosing a prefix: /24 256 … /28 16 addresses.
SIZE_TABLE: dict[int, int] = {prefix: 1 << (32 - prefix) for prefix in range(24, 29)}

# A network address and a prefix length written as digits, as Go's net.ParseCIDR (what OpenShift uses) expects;
# Python's ipaddress would also take a netmask ("/255.255.255.0") or a bare address, OpenShift would not.
_CIDR_SHAPE = re.compile(r"^[^/\s]+/\d{1,3}$")


@dataclass(frozen=True)
class CidrPlan:
    """What `requested` covers, plus full-sentence warnings and errors; `ok` means no errors."""

    requested: str
    network: str | None = None
    size: int | None = None
    first: str | None = None
    last: str | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def address_count(prefix: int) -> int:
    """Number of addresses in an IPv4 block of this prefix length (/27 → 32)."""
    if not 0 <= prefix <= 32:
        raise KalabError(f"/{prefix} is not an IPv4 prefix length; use a number from 0 to 32.")
    return 1 << (32 - prefix)


def size_rows(prefixes: Sequence[int] = tuple(SIZE_TABLE)) -> list[dict[str, int]]:
    """The seed's prefix → address-count table, with the usable count (minus network and broadcast) beside it."""
    return [{"prefix": p, "addresses": address_count(p), "usable": _usable_count(address_count(p))} for p in prefixes]


def cidr_problem(text: str, role: str = "") -> str | None:
    """The sentence saying why `text` is not an IPv4 CIDR (naming it by `role`, e.g. "the cluster network"), or None."""
    subject = _capitalise(f'{role} "{text}"' if role else f'"{text}"')
    shape = f"write it as an IPv4 network address and prefix length such as {EXAMPLE}"
    if not text.strip():
        return f"{_capitalise(role or 'the CIDR')} is empty; {shape}."
    if text != text.strip():
        return f"{subject} has spaces around it; remove them."
    try:
        parsed = ipaddress.ip_network(text, strict=False)
    except ValueError:
        prefix = text.rpartition("/")[2]
        if _CIDR_SHAPE.match(text) and int(prefix) > 32:
            return f"{subject} has prefix length /{prefix}, but IPv4 prefix lengths run from 0 to 32; {shape}."
        return f"{subject} is not a CIDR; {shape}."
    if not _CIDR_SHAPE.match(text):
        if "/" not in text:
            return (
                f"{subject} is a single address, not a CIDR; add a prefix length, e.g. {text}/32 for just that "
                f"address or {EXAMPLE} for a block of 32."
            )
        return f"{subject} gives a netmask instead of a prefix length; {shape}."
    if parsed.version != 4:
        return f"{subject} is an IPv6 network, but an IPv4 range is required here; use one such as {EXAMPLE}."
    return None


def ipv4_network(text: str, role: str = "") -> ipaddress.IPv4Network:
    """The network `text` names (host bits masked off); KalabError with one sentence when it is not an IPv4 CIDR."""
    problem = cidr_problem(text, role)
    if problem is not None:
        raise KalabError(problem)
    return ipaddress.IPv4Network(text, strict=False)


def has_host_bits(text: str) -> bool:
    """True when the address part of a valid CIDR is not the network address (172.21.6.33/27)."""
    return ipaddress.ip_interface(text).ip != ipaddress.ip_network(text, strict=False).network_address


def host_bits_warning(text: str) -> str | None:
    """The sentence explaining which block a CIDR with host bits set really names, or None when it has none."""
    if cidr_problem(text) is not None or not has_host_bits(text):
        return None
    net = ipaddress.IPv4Network(text, strict=False)
    return (
        f"{text} has host bits set: the network is {net} ({net.network_address}–{net.broadcast_address}), "
        f"so addresses are handed out from that whole block, not from {ipaddress.ip_interface(text).ip} on; "
        f"write {net} to say what you mean."
    )


def contains(outer: str, inner: str) -> bool:
    """True when the block `inner` lies entirely within `outer` (both IPv4 CIDRs; host bits are ignored)."""
    return ipv4_network(inner).subnet_of(ipv4_network(outer))


def usable_range(net: ipaddress.IPv4Network) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """First and last address a host can use: without network and broadcast, except /31 (RFC 3021) and /32."""
    if net.prefixlen >= 31:
        return net.network_address, net.broadcast_address
    return net.network_address + 1, net.broadcast_address - 1


def plan_cidr(
    cidr: str,
    allowed: Sequence[str] = (),
    cluster_network: str = "10.254.0.0/16",
    service_network: str = "172.30.0.0/16",
    machine_network: str | None = "192.168.7.0/24",
) -> CidrPlan:
    """Plan `cidr` as the auto-assign block; the defaults are the seed cluster's networks."""
    errors: list[str] = []
    named = {"cluster": cluster_network, "service": service_network, "machine": machine_network}
    networks = {key: _parse_named(text, f"the {key} network", errors) for key, text in named.items()}
    allowed_nets = [n for n in (_parse_named(a, "the allowed range", errors) for a in allowed) if n]
    problem = cidr_problem(cidr)
    if problem is not None:
        return CidrPlan(requested=cidr, errors=[problem, *errors])
    net = ipaddress.IPv4Network(cidr, strict=False)
    first, last = usable_range(net)
    warnings = [w for w in [host_bits_warning(cidr)] if w]
    errors[:0] = [
        f"{cidr} overlaps the {key} network {found[0]} ({why}); choose a block outside it."
        for key, why in _CLASH.items()
        if (found := networks[key]) is not None and net.overlaps(found[1])
    ]
    machine = networks["machine"]
    if machine is not None and net.overlaps(machine[1]):
        warnings.append(
            f"{cidr} overlaps the machine network {machine[0]}, so a VIP could be given an address a node or "
            "another host already uses; reserve those addresses on that network or choose a block outside it."
        )
    if allowed_nets and not any(net.subnet_of(a[1]) for a in allowed_nets):
        warnings.append(
            f"{cidr} is not inside the allowed ranges ({', '.join(a[0] for a in allowed_nets)}): auto-assigned "
            "addresses are not checked against the policy and will still be handed out, but a service that asks "
            "for one of them in spec.externalIPs will be rejected; add the block to allowedCIDRs."
        )
    return CidrPlan(cidr, str(net), net.num_addresses, str(first), str(last), warnings, errors)


# Overlapping these is an error: the cluster already routes those addresses to pods or services.
_CLASH = {
    "cluster": "pod addresses come from there, so a VIP could shadow a pod",
    "service": "ClusterIPs come from there, so a VIP could shadow a service",
}


def _capitalise(sentence: str) -> str:
    # str.capitalize() would lower-case the rest, including the value being quoted.
    return sentence[0].upper() + sentence[1:]


def _usable_count(count: int) -> int:
    return count if count <= 2 else count - 2


def _parse_named(text: str | None, role: str, errors: list[str]) -> tuple[str, ipaddress.IPv4Network] | None:
    """`text` and its network, or None (adding the sentence to `errors` when `text` is given but invalid)."""
    if text is None:
        return None
    problem = cidr_problem(text, role)
    if problem is not None:
        errors.append(problem)
        return None
    return text, ipaddress.IPv4Network(text, strict=False)
