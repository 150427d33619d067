"""kube-proxy's iptables mode as data: its chain names and the nat table it programs for services.

The rules follow the kube-proxy generation OpenShift 4.7 ran (the seed's): KUBE-SERVICES matches each service's
cluster IP, external IPs and load-balancer IPs; load-balancer IPs go through a ``KUBE-FW-`` chain, node ports
through KUBE-NODEPORTS; ``KUBE-SVC-`` picks an endpoint at random and ``KUBE-SEP-`` DNATs to it. Traffic that
must leave with the node's address is marked by KUBE-MARK-MASQ (mark 0x4000) and masqueraded in KUBE-POSTROUTING.

When an address is both an external IP and a load-balancer IP (OpenShift's auto-assigned externalIPs, the seed's
``172.21.6.50,172.21.6.50``), both sets of rules are written, external-IP rules first, as kube-proxy does; packets
from outside therefore take the external-IP rules and the ``KUBE-FW-`` rule counts nothing (the seed's ``0 0``).

externalTrafficPolicy Local: external traffic goes through ``KUBE-XLB-``, which only picks endpoints whose
``node`` is the node being programmed (``nat_rules(..., node_name=...)``); with none there it is marked for
dropping (KUBE-MARK-DROP). Pods and the node itself still reach every endpoint through ``KUBE-SVC-``.

How to apply: the document is a whole nat table (built-in chains declared, ``COMMIT`` last) for plain
``iptables-restore`` — NOT ``--noflush``. The kernel swaps the table atomically and re-applying the same text
leaves the same table, so a sync is idempotent. That replaces every nat rule in the target network namespace,
which is right for a lab node namespace, whose nat table belongs to the lab's kube-proxy alone; it must never be
applied where the nat table holds anybody else's rules. (With ``--noflush`` the jumps appended to the built-in
chains would pile up on every sync.)
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from kalab.model.errors import KalabError

MASQ_MARK: Final = "0x4000"
DROP_MARK: Final = "0x8000"
NODEPORTS_COMMENT: Final = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
BUILTIN_NAT_CHAINS: Final = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
PROTOCOLS: Final = ("tcp", "udp", "sctp")
POLICIES: Final = ("Cluster", "Local")


# ---------------------------------------------------------------------------------------------- naming


def service_port_name(namespace: str, service: str, port_name: str = "") -> str:
    """``ns/svc:port``; an unnamed port (a single-port service) leaves out the ``:port`` part, as kube-proxy does."""
    base = f"{namespace}/{service}"
    return f"{base}:{port_name}" if port_name else base


def _hash16(text: str) -> str:
    # Chain names are capped at 28 characters, so kube-proxy keeps 16 base32 characters of a sha256.
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def chain_suffix(service_port_name: str, protocol: str = "tcp") -> str:
    """The 16-character suffix shared by a service port's SVC/FW/XLB/EXT chains."""
    return _hash16(service_port_name + protocol.lower())


def svc_chain(service_port_name: str, protocol: str = "tcp") -> str:
    return "KUBE-SVC-" + chain_suffix(service_port_name, protocol)


def fw_chain(service_port_name: str, protocol: str = "tcp") -> str:
    return "KUBE-FW-" + chain_suffix(service_port_name, protocol)


def xlb_chain(service_port_name: str, protocol: str = "tcp") -> str:
    return "KUBE-XLB-" + chain_suffix(service_port_name, protocol)


def ext_chain(service_port_name: str, protocol: str = "tcp") -> str:
    """Newer kube-proxy's chain for external traffic; named here so analyses can recognise it."""
    return "KUBE-EXT-" + chain_suffix(service_port_name, protocol)


def sep_chain(service_port_name: str, protocol: str, endpoint: str) -> str:
    """``KUBE-SEP-`` for one endpoint given as ``ip:port``."""
    return "KUBE-SEP-" + _hash16(service_port_name + protocol.lower() + endpoint)


# ---------------------------------------------------------------------------------------------- input


@dataclass(frozen=True)
class Endpoint:
    """One ready backend of a service port; ``port`` None means the service's target port."""

    ip: str
    port: int | None = None
    node: str | None = None


@dataclass(frozen=True, kw_only=True)
class ServicePort:
    """One port of one service, with what kube-proxy needs to program it."""

    namespace: str
    name: str
    port_name: str = ""
    port: int
    cluster_ip: str | None = None
    protocol: str = "TCP"
    target_port: int | None = None
    node_port: int | None = None
    external_ips: Sequence[str] = ()
    load_balancer_ips: Sequence[str] = ()
    endpoints: Sequence[Endpoint] = ()
    external_traffic_policy: str = "Cluster"
    # Filled in by __post_init__: the endpoints as (ip, port, node), sorted so the document is stable.
    resolved: tuple[tuple[str, int, str | None], ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        name = self.service_port_name
        if self.protocol.lower() not in PROTOCOLS:
            raise KalabError(f"Service port {name} has protocol {self.protocol!r}; use TCP, UDP or SCTP.")
        if self.external_traffic_policy not in POLICIES:
            raise KalabError(
                f"Service port {name} has externalTrafficPolicy {self.external_traffic_policy!r}; use Cluster or Local."
            )
        for label, ips in (("external_ips", self.external_ips), ("load_balancer_ips", self.load_balancer_ips)):
            if isinstance(ips, str):
                raise KalabError(f"Service port {name} has {label} as one string; give a list of addresses.")
        for label, value in (("port", self.port), ("targetPort", self.target_port), ("nodePort", self.node_port)):
            if value is not None and not 0 < value < 65536:
                raise KalabError(f"Service port {name} has {label} {value}, which is not a port number (1-65535).")
        for ip in (self.cluster_ip, *self.external_ips, *self.load_balancer_ips):
            if ip is not None:
                _ipv4(ip, f"an address of service port {name}")
        # Lists become tuples so the frozen dataclass stays hashable; duplicates would only repeat rules.
        object.__setattr__(self, "external_ips", tuple(dict.fromkeys(self.external_ips)))
        object.__setattr__(self, "load_balancer_ips", tuple(dict.fromkeys(self.load_balancer_ips)))
        object.__setattr__(self, "endpoints", tuple(self.endpoints))
        object.__setattr__(self, "resolved", self._resolve_endpoints())

    def _resolve_endpoints(self) -> tuple[tuple[str, int, str | None], ...]:
        default_port = self.target_port or self.port
        found: dict[tuple[str, int], str | None] = {}
        for ep in self.endpoints:
            ip = _ipv4(ep.ip, f"an endpoint of service port {self.service_port_name}")
            port = ep.port if ep.port is not None else default_port
            if not 0 < port < 65536:
                raise KalabError(f"Endpoint {ep.ip}:{port} of {self.service_port_name} has no valid port.")
            found[(str(ip), port)] = ep.node
        ordered = sorted(found, key=lambda key: (ipaddress.IPv4Address(key[0]), key[1]))
        return tuple((ip, port, found[(ip, port)]) for ip, port in ordered)

    @property
    def service_port_name(self) -> str:
        return service_port_name(self.namespace, self.name, self.port_name)

    @property
    def proto(self) -> str:
        """The protocol as iptables spells it (lower case)."""
        return self.protocol.lower()

    @property
    def svc_chain(self) -> str:
        return svc_chain(self.service_port_name, self.proto)

    @property
    def fw_chain(self) -> str:
        return fw_chain(self.service_port_name, self.proto)

    @property
    def xlb_chain(self) -> str:
        return xlb_chain(self.service_port_name, self.proto)

    def sep_chain(self, ip: str, port: int) -> str:
        return sep_chain(self.service_port_name, self.proto, f"{ip}:{port}")

    @property
    def local_policy(self) -> bool:
        return self.external_traffic_policy == "Local"


def _ipv4(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise KalabError(f"{text!r} ({what}) is not an IPv4 address; iptables rules here are IPv4 only.") from None


def _ipv4_network(text: str, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise KalabError(f"{text!r} ({what}) is not an IPv4 CIDR such as 10.254.0.0/16.") from None


# ---------------------------------------------------------------------------------------------- rendering


def probability(index: int, count: int) -> str:
    """The statistic probability of the ``index``-th of ``count`` endpoints: 1/(count-index), 11 decimals.

    Each rule only sees packets the earlier ones let through, so 1/(n-i) gives every endpoint 1/n overall.
    """
    return f"{1.0 / (count - index):.11f}"


class _Table:
    """Rules collected per chain; rendered in iptables-save's order (built-ins first, then sorted chains)."""

    def __init__(self) -> None:
        self.chains: dict[str, list[str]] = {name: [] for name in BUILTIN_NAT_CHAINS}

    def chain(self, name: str) -> None:
        self.chains.setdefault(name, [])

    def add(self, chain: str, spec: str) -> None:
        self.chain(chain)
        self.chains[chain].append(f"-A {chain} {spec}")

    def render(self) -> str:
        user = sorted(name for name in self.chains if name not in BUILTIN_NAT_CHAINS)
        lines = ["*nat"]
        lines += [f":{name} ACCEPT [0:0]" for name in BUILTIN_NAT_CHAINS]
        lines += [f":{name} - [0:0]" for name in user]
        for name in (*BUILTIN_NAT_CHAINS, *user):
            lines += self.chains[name]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def _spec(
    *,
    jump: str,
    comment: str | None = None,
    src: str | None = None,
    not_src: str | None = None,
    dst: str | None = None,
    proto: str | None = None,
    dport: int | None = None,
    proto_match: bool = False,
    matches: str = "",
    jump_args: str = "",
) -> str:
    """One rule's options in the order iptables-save prints them, so the document reads like a dump."""
    parts: list[str] = []
    if not_src:
        parts.append(f"! -s {not_src}")
    if src:
        parts.append(f"-s {src}")
    if dst:
        parts.append(f"-d {dst}")
    if proto:
        parts.append(f"-p {proto}")
    if comment:
        parts.append(f'-m comment --comment "{comment}"')
    if proto and (dport is not None or proto_match):
        parts.append(f"-m {proto}" + (f" --dport {dport}" if dport is not None else ""))
    if matches:
        parts.append(matches)
    parts.append(f"-j {jump}" + (f" {jump_args}" if jump_args else ""))
    return " ".join(parts)


def _base_rules(table: _Table) -> None:
    """The fixed plumbing: built-in hooks, the masquerade/drop marks, and the catch-all to KUBE-NODEPORTS."""
    table.add("PREROUTING", _spec(comment="kubernetes service portals", jump="KUBE-SERVICES"))
    table.add("OUTPUT", _spec(comment="kubernetes service portals", jump="KUBE-SERVICES"))
    table.add("POSTROUTING", _spec(comment="kubernetes postrouting rules", jump="KUBE-POSTROUTING"))
    table.add("KUBE-MARK-MASQ", _spec(jump="MARK", jump_args=f"--or-mark {MASQ_MARK}"))
    table.add("KUBE-MARK-DROP", _spec(jump="MARK", jump_args=f"--or-mark {DROP_MARK}"))
    # Unmarked packets leave KUBE-POSTROUTING untouched; marked ones lose the mark (so a re-route won't
    # masquerade twice) and get the node's address.
    table.add("KUBE-POSTROUTING", _spec(matches=f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK}", jump="RETURN"))
    table.add("KUBE-POSTROUTING", _spec(jump="MARK", jump_args=f"--xor-mark {MASQ_MARK}"))
    table.add(
        "KUBE-POSTROUTING",
        _spec(comment="kubernetes service traffic requiring SNAT", jump="MASQUERADE", jump_args="--random-fully"),
    )
    table.chain("KUBE-NODEPORTS")
    table.chain("KUBE-SERVICES")


def _nodeports_catchall(table: _Table, node_ip: str | None) -> None:
    # With a known node IP, node ports answer on it only (kube-proxy's --nodeport-addresses); otherwise on
    # every local address. Either way this must stay the last rule of KUBE-SERVICES.
    if node_ip:
        table.add("KUBE-SERVICES", _spec(comment=NODEPORTS_COMMENT, dst=f"{node_ip}/32", jump="KUBE-NODEPORTS"))
    else:
        table.add(
            "KUBE-SERVICES",
            _spec(comment=NODEPORTS_COMMENT, matches="-m addrtype --dst-type LOCAL", jump="KUBE-NODEPORTS"),
        )


def _balance(table: _Table, sp: ServicePort, chain: str, endpoints: Sequence[tuple[str, int]], label: str) -> None:
    """Spread over ``endpoints`` with random statistics: rule i takes 1/(n-i) of what reaches it, the last all."""
    count = len(endpoints)
    for index, (ip, port) in enumerate(endpoints):
        comment = label.format(index=index)
        target = sp.sep_chain(ip, port)
        if index < count - 1:
            stat = f"-m statistic --mode random --probability {probability(index, count)}"
            table.add(chain, _spec(comment=comment, matches=stat, jump=target))
        else:
            table.add(chain, _spec(comment=comment, jump=target))


def _endpoint_chains(table: _Table, sp: ServicePort) -> None:
    name = sp.service_port_name
    for ip, port, _node in sp.resolved:
        chain = sp.sep_chain(ip, port)
        # Hairpin: a pod reaching itself through the service must come back from the node's address.
        table.add(chain, _spec(comment=name, src=f"{ip}/32", jump="KUBE-MARK-MASQ"))
        table.add(
            chain,
            _spec(
                comment=name,
                proto=sp.proto,
                proto_match=True,
                jump="DNAT",
                jump_args=f"--to-destination {ip}:{port}",
            ),
        )


def _cluster_ip_rules(table: _Table, sp: ServicePort, cluster_cidr: str) -> None:
    if not sp.cluster_ip:
        return
    comment = f"{sp.service_port_name} cluster IP"
    dst = f"{sp.cluster_ip}/32"
    # Callers from outside the pod network would get replies from a pod they never talked to: masquerade them.
    table.add(
        "KUBE-SERVICES",
        _spec(not_src=cluster_cidr, dst=dst, proto=sp.proto, comment=comment, dport=sp.port, jump="KUBE-MARK-MASQ"),
    )
    table.add("KUBE-SERVICES", _spec(dst=dst, proto=sp.proto, comment=comment, dport=sp.port, jump=sp.svc_chain))


def _external_ip_rule(sp: ServicePort, ip: str, jump: str, matches: str = "") -> str:
    comment = f"{sp.service_port_name} external IP"
    return _spec(comment=comment, dst=f"{ip}/32", proto=sp.proto, dport=sp.port, matches=matches, jump=jump)


def _external_ip_rules(table: _Table, sp: ServicePort, external_target: str) -> None:
    for ip in sp.external_ips:
        if not sp.local_policy:
            table.add("KUBE-SERVICES", _external_ip_rule(sp, ip, "KUBE-MARK-MASQ"))
        # From outside (not bridged in from a local container, not sent by the node itself) ...
        outside = "-m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL"
        table.add("KUBE-SERVICES", _external_ip_rule(sp, ip, external_target, outside))
        # ... or addressed to this node (the VIP keepalived put here): both go to the service.
        table.add("KUBE-SERVICES", _external_ip_rule(sp, ip, external_target, "-m addrtype --dst-type LOCAL"))


def _load_balancer_rules(table: _Table, sp: ServicePort, external_target: str) -> None:
    if not sp.load_balancer_ips:
        return
    comment = f"{sp.service_port_name} loadbalancer IP"
    for ip in sp.load_balancer_ips:
        table.add(
            "KUBE-SERVICES",
            _spec(comment=comment, dst=f"{ip}/32", proto=sp.proto, dport=sp.port, jump=sp.fw_chain),
        )
    if not sp.local_policy:
        table.add(sp.fw_chain, _spec(comment=comment, jump="KUBE-MARK-MASQ"))
    table.add(sp.fw_chain, _spec(comment=comment, jump=external_target))
    # Only reached when the chain above returned without DNAT (e.g. source ranges in real kube-proxy).
    table.add(sp.fw_chain, _spec(comment=comment, jump="KUBE-MARK-DROP"))


def _node_port_rules(table: _Table, sp: ServicePort, external_target: str) -> None:
    if sp.node_port is None:
        return
    port = sp.node_port

    def rule(jump: str, src: str | None = None) -> str:
        return _spec(src=src, proto=sp.proto, comment=sp.service_port_name, dport=port, jump=jump)

    # Local keeps the client's address, except for the node talking to itself over loopback.
    table.add("KUBE-NODEPORTS", rule("KUBE-MARK-MASQ", "127.0.0.0/8" if sp.local_policy else None))
    table.add("KUBE-NODEPORTS", rule(external_target))


def _local_chain(table: _Table, sp: ServicePort, node_name: str, cluster_cidr: str) -> None:
    """KUBE-XLB-: external traffic to this node's endpoints only, keeping the client's source address."""
    name = sp.service_port_name
    chain = sp.xlb_chain
    table.add(
        chain,
        _spec(
            src=cluster_cidr,
            comment="Redirect pods trying to reach external loadbalancer VIP to clusterIP",
            jump=sp.svc_chain,
        ),
    )
    local_src = "-m addrtype --src-type LOCAL"
    table.add(
        chain, _spec(comment=f"masquerade LOCAL traffic for {name} LB IP", matches=local_src, jump="KUBE-MARK-MASQ")
    )
    table.add(
        chain,
        _spec(comment=f"route LOCAL traffic for {name} LB IP to service chain", matches=local_src, jump=sp.svc_chain),
    )
    local = [(ip, port) for ip, port, node in sp.resolved if node == node_name]
    if not local:
        table.add(chain, _spec(comment=f"{name} has no local endpoints", jump="KUBE-MARK-DROP"))
        return
    _balance(table, sp, chain, local, "Balancing rule {index} for " + name)


def _service_rules(table: _Table, sp: ServicePort, cluster_cidr: str, node_name: str | None) -> None:
    # A service without ready endpoints gets no nat rules at all (kube-proxy rejects it in the filter
    # table, which this document does not manage).
    if not sp.resolved:
        return
    if sp.local_policy and node_name is None:
        raise KalabError(
            f"Service port {sp.service_port_name} has externalTrafficPolicy Local, so nat_rules needs "
            "node_name to know which endpoints are local."
        )
    external_target = sp.xlb_chain if sp.local_policy else sp.svc_chain
    _cluster_ip_rules(table, sp, cluster_cidr)
    _external_ip_rules(table, sp, external_target)
    _load_balancer_rules(table, sp, external_target)
    _node_port_rules(table, sp, external_target)
    table.chain(sp.svc_chain)
    _balance(table, sp, sp.svc_chain, [(ip, port) for ip, port, _ in sp.resolved], sp.service_port_name)
    _endpoint_chains(table, sp)
    if sp.local_policy and node_name is not None:
        _local_chain(table, sp, node_name, cluster_cidr)


def nat_rules(
    services: Iterable[ServicePort],
    node_ip: str | None = None,
    cluster_cidr: str = "10.254.0.0/16",
    node_name: str | None = None,
) -> str:
    """The whole nat table kube-proxy would program on one node, as ``iptables-restore`` input.

    ``node_ip``: when given, node ports answer on that address only; otherwise on every local address.
    ``node_name``: the node being programmed; needed by externalTrafficPolicy Local services.
    The same services (in any order) always give the same text. Apply with plain ``iptables-restore``
    (a full-table swap), never ``--noflush``: see the module docstring.
    """
    cidr = str(_ipv4_network(cluster_cidr, "the cluster network"))
    if node_ip is not None:
        _ipv4(node_ip, "the node IP")
    ports = sorted(services, key=lambda sp: (sp.namespace, sp.name, sp.port_name, sp.proto))
    seen: set[tuple[str, str]] = set()
    table = _Table()
    _base_rules(table)
    for sp in ports:
        key = (sp.service_port_name, sp.proto)
        if key in seen:
            raise KalabError(f"Service port {sp.service_port_name} ({sp.proto}) is listed twice; list it once.")
        seen.add(key)
        _service_rules(table, sp, cidr, node_name)
    _nodeports_catchall(table, node_ip)
    return table.render()
