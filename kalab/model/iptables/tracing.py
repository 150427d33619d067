"""Traces of a destination through kube-proxy's nat rules to the endpoints it is DNATed to, with each endpoint's
probability.

A trace is a model, not the kernel: it follows the rules a packet to ``dst_ip:dst_port`` would hit, branching at
every random statistic. Matches it cannot decide from the packet alone are assumed as a client outside the node
would see them (source unknown = outside every listed range; the destination is an address of this node; the
packet was not bridged in), and each assumption made is listed in the trace.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import pandas as pd

from kalab.model.errors import KalabError
from kalab.model.iptables.listing import protocol_name
from kalab.model.iptables.rules import (
    DROP_CHAIN,
    MASQ_BIT,
    MASQ_CHAIN,
    TERMINAL_TARGETS,
    IptablesSave,
    Option,
    Rule,
    Table,
    rule_error,
)


@dataclass(frozen=True)
class Hop:
    """A rule the packet matched and acted on."""

    chain: str
    rule: str
    comment: str | None
    target: str | None
    line_no: int
    target_args: str = ""  # e.g. "--to-destination 10.254.0.5:80"


@dataclass(frozen=True)
class Outcome:
    """One way the packet can go, with its probability."""

    probability: float
    hops: tuple[Hop, ...]
    path: tuple[str, ...]  # the chains the packet was in when its fate was decided
    verdict: str  # "DNAT", another terminal target, or "no match" when it fell off the start chain
    dnat: str | None
    masquerade: bool
    marked_drop: bool

    @property
    def sep_chain(self) -> str | None:
        return next((c for c in reversed(self.path) if c.startswith("KUBE-SEP-")), None)


@dataclass(frozen=True)
class Destination:
    endpoint: str
    probability: float
    sep_chain: str | None
    path: tuple[str, ...]
    masquerade: bool


@dataclass(frozen=True)
class Trace:
    dst_ip: str
    dst_port: int
    protocol: str
    src_ip: str | None
    start_chain: str
    outcomes: tuple[Outcome, ...]
    assumptions: tuple[str, ...] = ()

    @property
    def destinations(self) -> tuple[Destination, ...]:
        return tuple(
            Destination(o.dnat, o.probability, o.sep_chain, o.path, o.masquerade)
            for o in self.outcomes
            if o.dnat is not None
        )

    @property
    def matched(self) -> bool:
        return bool(self.destinations)

    @property
    def masquerade(self) -> bool:
        """Whether the packet is marked for masquerading on (any of) its DNAT paths."""
        return any(d.masquerade for d in self.destinations)

    def endpoint_probabilities(self) -> dict[str, float]:
        """Endpoint → total probability (an endpoint reachable by several paths is summed)."""
        totals: dict[str, float] = {}
        for dest in self.destinations:
            totals[dest.endpoint] = totals.get(dest.endpoint, 0.0) + dest.probability
        return totals

    @property
    def packet(self) -> str:
        source = self.src_ip or "outside"
        return f"{self.protocol} {source} → {self.dst_ip}:{self.dst_port}"

    @property
    def explanation(self) -> str:
        if not self.matched:
            dropped = (
                " and it is marked for dropping (KUBE-MARK-DROP)" if any(o.marked_drop for o in self.outcomes) else ""
            )
            return (
                f"Nothing in the nat table rewrites {self.packet}: no rule from {self.start_chain} DNATs it, "
                f"so it keeps its destination{dropped}."
            )
        shares = ", ".join(f"{ep} ({p:.1%})" for ep, p in self.endpoint_probabilities().items())
        unmatched = 1.0 - sum(self.endpoint_probabilities().values())
        rest = f"; with probability {unmatched:.1%} nothing DNATs it" if unmatched > 1e-9 else ""
        masq = _masquerade_summary(self.destinations)
        return f"{self.packet} is DNATed to {shares}{rest}; the source is {masq}."

    def describe(self) -> str:
        lines = [self.explanation, ""]
        for outcome in self.outcomes:
            fate = outcome.dnat or outcome.verdict
            lines.append(f"{outcome.probability:8.2%}  {fate}  via {' → '.join(outcome.path)}")
            for hop in outcome.hops:
                note = f"  /* {hop.comment} */" if hop.comment else ""
                jump = " ".join(part for part in (hop.target or "(no target)", hop.target_args) if part)
                lines.append(f"            {hop.chain}: -j {jump}{note}")
        if self.assumptions:
            lines += ["", "Assumed: " + "; ".join(self.assumptions) + "."]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def to_frame(self) -> pd.DataFrame:
        """One row per DNAT path: endpoint, probability, sep_chain, path, masquerade."""
        rows = [
            {
                "endpoint": d.endpoint,
                "probability": d.probability,
                "sep_chain": d.sep_chain,
                "path": " → ".join(d.path),
                "masquerade": d.masquerade,
            }
            for d in self.destinations
        ]
        return pd.DataFrame(rows, columns=["endpoint", "probability", "sep_chain", "path", "masquerade"])


def _masquerade_summary(destinations: Sequence[Destination]) -> str:
    marked = [d for d in destinations if d.masquerade]
    if len(marked) == len(destinations):
        return "masqueraded (replies come back through this node)"
    if not marked:
        return "not masqueraded (the endpoint sees the client's address)"
    return "masqueraded only towards " + ", ".join(d.endpoint for d in marked)


# ---------------------------------------------------------------------------------------------- tracer


@dataclass(frozen=True)
class _Packet:
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    dport: int
    protocol: str
    src: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    local: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] | None


@dataclass(frozen=True)
class _Branch:
    probability: float = 1.0
    hops: tuple[Hop, ...] = ()
    stack: tuple[str, ...] = ()
    mark: int = 0
    masquerade: bool = False
    marked_drop: bool = False

    def scaled(self, factor: float) -> _Branch:
        return replace(self, probability=self.probability * factor)


@dataclass(frozen=True)
class _Result:
    branch: _Branch
    final: bool
    verdict: str = ""
    dnat: str | None = None


_MAX_DEPTH: Final = 64


def _in_any(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, spec: str) -> bool:
    return any(addr in ipaddress.ip_network(part, strict=False) for part in spec.split(","))


def _port_in(port: int, spec: str) -> bool:
    for part in spec.split(","):
        low, _, high = part.partition(":")
        if int(low or 0) <= port <= int(high or low or 65535):
            return True
    return False


def _mark_matches(mark: int, spec: str) -> bool:
    value, _, mask = spec.partition("/")
    return (mark & int(mask or "0xffffffff", 0)) == int(value, 0)


def _apply_mark(mark: int, options: Sequence[Option]) -> int:
    for opt in options:
        value, _, mask_text = (opt.value or "0").partition("/")
        bits = int(value, 0)
        mask = int(mask_text, 0) if mask_text else 0xFFFFFFFF
        if opt.name == "--set-xmark":
            mark = (mark & ~mask) ^ bits
        elif opt.name == "--set-mark":
            mark = (mark & ~mask) | bits
        elif opt.name == "--or-mark":
            mark |= bits
        elif opt.name == "--xor-mark":
            mark ^= bits
        elif opt.name == "--and-mark":
            mark &= bits
    return mark & 0xFFFFFFFF


class _Tracer:
    def __init__(self, table: Table, packet: _Packet) -> None:
        self.table = table
        self.packet = packet
        self.assumptions: dict[str, None] = {}  # ordered set

    def assume(self, text: str) -> bool:
        self.assumptions[text] = None
        return True

    # -- matching ---------------------------------------------------------------------------------------------

    def basic_ok(self, rule: Rule) -> bool:
        pkt = self.packet
        if rule.protocol is not None:
            name = protocol_name(rule.protocol.value.lower())
            if (name in ("all", pkt.protocol)) == rule.protocol.negated:
                return False
        if rule.destination is not None and _in_any(pkt.dst, rule.destination.value) == rule.destination.negated:
            return False
        if rule.source is not None:
            # An unknown source is a client outside every listed range.
            inside = pkt.src is not None and _in_any(pkt.src, rule.source.value)
            if pkt.src is None:
                self.assume("the client (no source given) is outside every source range in the rules")
            if inside == rule.source.negated:
                return False
        if rule.in_interface is not None or rule.out_interface is not None:
            self.assume("interface conditions (-i/-o) match")
        return True

    def is_local(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None, role: str) -> bool:
        local = self.packet.local
        if local is not None and addr is not None:
            return addr in local
        if role == "dst":
            return self.assume("the destination is an address of this node (addrtype LOCAL)")
        self.assume("the source is not an address of this node")
        return False

    def option_ok(self, module: str, opt: Option, branch: _Branch) -> bool:
        pkt = self.packet
        name = opt.name
        if module in ("tcp", "udp", "sctp", "multiport") and name in (
            "--dport",
            "--destination-port",
            "--dports",
            "--destination-ports",
        ):
            return _port_in(pkt.dport, opt.value or "") != opt.negated
        if module == "addrtype" and name in ("--dst-type", "--src-type"):
            if opt.value != "LOCAL":
                return self.assume(f"addrtype {name} {opt.value} matches")
            addr = pkt.dst if name == "--dst-type" else pkt.src
            return self.is_local(addr, "dst" if name == "--dst-type" else "src") != opt.negated
        if module == "physdev":
            # Not bridged in: every physdev condition is false, so only negated ones match.
            self.assume("the packet did not arrive through a bridge port")
            return opt.negated
        if module == "mark" and name == "--mark":
            return _mark_matches(branch.mark, opt.value or "0") != opt.negated
        if module in ("comment", "statistic") or (module in ("tcp", "udp", "sctp") and not opt.values):
            return True
        return self.assume(f"-m {module} {name} matches")

    def rule_ok(self, rule: Rule, branch: _Branch) -> bool:
        try:
            return self._rule_ok(rule, branch)
        except ValueError as err:
            raise rule_error(rule.line_no, f"has a value the trace cannot read ({err})") from None

    def _rule_ok(self, rule: Rule, branch: _Branch) -> bool:
        if not self.basic_ok(rule):
            return False
        for match in rule.matches:
            if match.module == "statistic" and rule.probability is None:
                self.assume("-m statistic (not random mode) matches")
            for opt in match.options:
                if not self.option_ok(match.module, opt, branch):
                    return False
        return True

    # -- walking ----------------------------------------------------------------------------------------------

    def walk(self, chain: str, start: int, branch: _Branch, depth: int) -> list[_Result]:
        if depth > _MAX_DEPTH:
            raise KalabError(f"Chain {chain} is nested more than {_MAX_DEPTH} jumps deep; the rules loop.")
        rules = self.table.chains[chain].rules
        for index in range(start, len(rules)):
            rule = rules[index]
            if not self.rule_ok(rule, branch):
                continue
            prob = rule.probability
            if prob is None or prob >= 1.0:
                return self.take(chain, index, rule, branch, depth)
            # A random statistic splits the packet's fate: taken with p, passed on with 1 - p.
            results = self.take(chain, index, rule, branch.scaled(prob), depth) if prob > 0 else []
            return results + self.walk(chain, index + 1, branch.scaled(1.0 - prob), depth)
        return [_Result(branch, final=False)]

    def take(self, chain: str, index: int, rule: Rule, branch: _Branch, depth: int) -> list[_Result]:
        args = " ".join(("! " if o.negated else "") + " ".join((o.name, *o.values)) for o in rule.target_options)
        hop = Hop(chain, rule.text, rule.comment, rule.target, rule.line_no, args)
        branch = replace(branch, hops=(*branch.hops, hop))
        target = rule.target
        if target is None:
            return self.walk(chain, index + 1, branch, depth)
        if target in self.table.chains:
            return self.call(chain, index, rule, target, branch, depth)
        if target == "RETURN":
            return [_Result(branch, final=False)]
        if target in TERMINAL_TARGETS:
            dnat = rule.to_destination if target == "DNAT" else None
            return [_Result(branch, final=True, verdict=target, dnat=dnat)]
        if target == "MARK":
            try:
                branch = replace(branch, mark=_apply_mark(branch.mark, rule.target_options))
            except ValueError:
                raise rule_error(rule.line_no, "has a MARK value that is not a number") from None
        elif target == MASQ_CHAIN:  # named but not declared: still means "masquerade me"
            branch = replace(branch, masquerade=True)
        return self.walk(chain, index + 1, branch, depth)

    def call(self, chain: str, index: int, rule: Rule, target: str, branch: _Branch, depth: int) -> list[_Result]:
        entered = replace(
            branch,
            stack=(*branch.stack, target),
            masquerade=branch.masquerade or target == MASQ_CHAIN,
            marked_drop=branch.marked_drop or target == DROP_CHAIN,
        )
        results: list[_Result] = []
        for res in self.walk(target, 0, entered, depth + 1):
            if res.final or rule.goto:
                # After -g, falling off the target returns from the caller too.
                results.append(res if res.final else replace(res, branch=replace(res.branch, stack=branch.stack)))
                continue
            back = replace(res.branch, stack=branch.stack)
            results += self.walk(chain, index + 1, back, depth)
        return results


def _outcome(result: _Result) -> Outcome:
    b = result.branch
    return Outcome(
        probability=b.probability,
        hops=b.hops,
        path=b.stack,
        verdict=result.verdict if result.final else "no match",
        dnat=result.dnat,
        masquerade=b.masquerade or bool(b.mark & MASQ_BIT),
        marked_drop=b.marked_drop,
    )


def _address(text: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise KalabError(f"{text!r} ({what}) is not an IP address.") from None


def trace(
    save: IptablesSave,
    dst_ip: str,
    dst_port: int,
    protocol: str = "tcp",
    src_ip: str | None = None,
    *,
    start: str | None = None,
    local_ips: Sequence[str] | None = None,
) -> Trace:
    """Follow a packet to ``dst_ip:dst_port`` through the nat table to the endpoints it is DNATed to.

    Starts at PREROUTING (or KUBE-SERVICES when PREROUTING is missing or empty; ``start`` overrides).
    ``src_ip`` None means a client outside the cluster; ``local_ips`` are the node's own addresses (None: assume
    the destination is one of them). Probabilities of all outcomes sum to 1.
    """
    table = save.table("nat")
    if not 0 < dst_port < 65536:
        raise KalabError(f"Port {dst_port} is not a port number (1-65535).")
    packet = _Packet(
        dst=_address(dst_ip, "the destination"),
        dport=dst_port,
        protocol=protocol.lower(),
        src=_address(src_ip, "the source") if src_ip is not None else None,
        local=frozenset(_address(a, "a local address") for a in local_ips) if local_ips is not None else None,
    )
    chain = start or _start_chain(table)
    if chain not in table.chains:
        raise KalabError(f"The nat table has no chain {chain}; trace from PREROUTING or KUBE-SERVICES.")
    tracer = _Tracer(table, packet)
    results = tracer.walk(chain, 0, _Branch(stack=(chain,)), 0)
    return Trace(
        dst_ip=dst_ip,
        dst_port=dst_port,
        protocol=packet.protocol,
        src_ip=src_ip,
        start_chain=chain,
        outcomes=tuple(_outcome(r) for r in results),
        assumptions=tuple(tracer.assumptions),
    )


def _start_chain(table: Table) -> str:
    prerouting = table.chains.get("PREROUTING")
    if prerouting is not None and prerouting.rules:
        return "PREROUTING"
    if "KUBE-SERVICES" in table.chains:
        return "KUBE-SERVICES"
    if prerouting is not None:
        return "PREROUTING"
    raise KalabError("The nat table has neither a PREROUTING nor a KUBE-SERVICES chain to trace from.")
