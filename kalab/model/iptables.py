"""iptables text → data: ``iptables-save`` dumps, ``iptables -L -n -v`` rule lines, and traces of a destination
through kube-proxy's nat rules to the endpoints it is DNATed to, with each endpoint's probability.

Real dumps from the nf_tables backend (iptables 1.8.9) differ from what was restored, and both forms parse:
chains and rules come back sorted by chain name; ``MARK --or-mark 0x4000`` comes back as
``--set-xmark 0x4000/0x4000`` and ``--xor-mark`` as ``--set-xmark 0x4000/0x0``; probabilities come back with the
kernel's 31-bit rounding (``0.3333333333`` → ``0.33333333349``); ``-L`` prints protocol numbers (``6``) where older
versions printed names (``tcp``) — parse_listing_line gives names either way.

A trace is a model, not the kernel: it follows the rules a packet to ``dst_ip:dst_port`` would hit, branching at
every random statistic. Matches it cannot decide from the packet alone are assumed as a client outside the node
would see them (source unknown = outside every listed range; the destination is an address of this node; the
packet was not bridged in), and each assumption made is listed in the trace.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

import pandas as pd

from kalab.model.errors import KalabError

BUILTIN_CHAINS: Final[Mapping[str, tuple[str, ...]]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
# `iptables -L` of 1.8.9 prints protocol numbers; listings are compared by name.
PROTOCOL_NAMES: Final[Mapping[str, str]] = {
    "0": "all", "1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp",
}  # fmt: skip
# Targets after which the packet leaves the chain walk for good (in the nat table DNAT/SNAT/… end it too).
TERMINAL_TARGETS: Final = frozenset(
    {"ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NETMAP", "QUEUE", "NFQUEUE"}
)
MASQ_CHAIN: Final = "KUBE-MARK-MASQ"
DROP_CHAIN: Final = "KUBE-MARK-DROP"
MASQ_BIT: Final = 0x4000

# ---------------------------------------------------------------------------------------------- save model


@dataclass(frozen=True)
class Counters:
    packets: int
    bytes: int


@dataclass(frozen=True)
class Option:
    """``--name value…`` inside a match or a target; ``negated`` when written ``! --name``."""

    name: str
    values: tuple[str, ...] = ()
    negated: bool = False

    @property
    def value(self) -> str | None:
        return self.values[0] if self.values else None


@dataclass(frozen=True)
class Match:
    """One ``-m module`` with its options (options of ``-p tcp`` given without ``-m tcp`` land in ``tcp``)."""

    module: str
    options: tuple[Option, ...] = ()

    def option(self, name: str) -> Option | None:
        return next((opt for opt in self.options if opt.name == name), None)


@dataclass(frozen=True)
class Condition:
    """A basic rule condition such as ``! -s 10.254.0.0/16``."""

    value: str
    negated: bool = False


@dataclass(frozen=True)
class Rule:
    table: str
    chain: str
    text: str
    line_no: int
    source: Condition | None = None
    destination: Condition | None = None
    protocol: Condition | None = None
    in_interface: Condition | None = None
    out_interface: Condition | None = None
    matches: tuple[Match, ...] = ()
    target: str | None = None
    target_options: tuple[Option, ...] = ()
    goto: bool = False
    counters: Counters | None = None

    def match(self, module: str) -> Match | None:
        return next((m for m in self.matches if m.module == module), None)

    def match_option(self, name: str) -> Option | None:
        """The first option called ``name`` (e.g. ``--dport``) in any match of this rule."""
        return next((opt for m in self.matches for opt in m.options if opt.name == name), None)

    def target_option(self, name: str) -> Option | None:
        return next((opt for opt in self.target_options if opt.name == name), None)

    @property
    def comment(self) -> str | None:
        found = self.match("comment")
        opt = found.option("--comment") if found else None
        return opt.value if opt else None

    @property
    def dport(self) -> str | None:
        opt = self.match_option("--dport") or self.match_option("--destination-port")
        return opt.value if opt else None

    @property
    def probability(self) -> float | None:
        """The ``-m statistic --mode random --probability P`` of this rule, if any."""
        stat = self.match("statistic")
        if stat is None:
            return None
        mode = stat.option("--mode")
        prob = stat.option("--probability")
        if mode is None or mode.value != "random" or prob is None or prob.value is None:
            return None
        return float(prob.value)

    @property
    def to_destination(self) -> str | None:
        opt = self.target_option("--to-destination")
        return opt.value if opt else None


@dataclass(frozen=True)
class Chain:
    name: str
    policy: str | None  # None for user-defined chains (``-`` in the dump)
    counters: Counters | None
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Table:
    name: str
    chains: Mapping[str, Chain]

    def rules(self) -> Iterator[Rule]:
        for chain in self.chains.values():
            yield from chain.rules


@dataclass(frozen=True)
class IptablesSave:
    tables: Mapping[str, Table]

    def table(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            raise KalabError(
                f"The iptables-save text has no {name} table; dump it with `iptables-save -t {name}`."
            ) from None

    def rules(self, table: str | None = None) -> Iterator[Rule]:
        for tab in self.tables.values():
            if table is None or tab.name == table:
                yield from tab.rules()


# ---------------------------------------------------------------------------------------------- save parser

_COUNTERS: Final = re.compile(r"^\[(\d+):(\d+)\]\s*")
_CHAIN_LINE: Final = re.compile(r"^:(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?\s*$")
_BASIC: Final[Mapping[str, str]] = {
    "-s": "source", "--source": "source", "--src": "source",
    "-d": "destination", "--destination": "destination", "--dst": "destination",
    "-p": "protocol", "--protocol": "protocol",
    "-i": "in_interface", "--in-interface": "in_interface",
    "-o": "out_interface", "--out-interface": "out_interface",
}  # fmt: skip


_PROTOCOL_OPTIONS: Final = frozenset(
    {"--dport", "--sport", "--destination-port", "--source-port", "--tcp-flags", "--syn", "--tcp-option"}
)
_PORT_MODULES: Final = frozenset({"tcp", "udp", "sctp", "udplite", "dccp", "multiport"})


def _fail(line_no: int, problem: str) -> KalabError:
    return KalabError(f"Line {line_no} of the iptables-save text {problem}.")


class _RuleParser:
    """Walks one rule's tokens; options after ``-m X`` belong to X, after ``-j X`` to the target."""

    def __init__(self, tokens: list[str], line_no: int) -> None:
        self.tokens = tokens
        self.line_no = line_no
        self.pos = 0
        self.basic: dict[str, Condition] = {}
        self.matches: list[tuple[str, list[Option]]] = []
        self.target: str | None = None
        self.target_options: list[Option] = []
        self.goto = False
        self.counters: Counters | None = None
        self.context: str | None = None  # "match", "target" or None (before any -m/-j)

    def next_value(self, option: str) -> str:
        if self.pos >= len(self.tokens):
            raise _fail(self.line_no, f"ends after {option}, which needs a value")
        value = self.tokens[self.pos]
        self.pos += 1
        return value

    def option_values(self) -> tuple[str, ...]:
        values: list[str] = []
        while (
            self.pos < len(self.tokens) and not self.tokens[self.pos].startswith("-") and self.tokens[self.pos] != "!"
        ):
            values.append(self.tokens[self.pos])
            self.pos += 1
        return tuple(values)

    def run(self) -> None:
        negate = False
        while self.pos < len(self.tokens):
            tok = self.tokens[self.pos]
            self.pos += 1
            if tok == "!":
                negate = True
                continue
            self.step(tok, negate)
            negate = False
        if negate:
            raise _fail(self.line_no, "ends with a dangling '!'")

    def step(self, tok: str, negate: bool) -> None:
        if tok in _BASIC:
            self.basic[_BASIC[tok]] = Condition(self.next_value(tok), negate)
            # `-p tcp --dport 80` without `-m tcp`: later options belong to the protocol's implicit match.
            if _BASIC[tok] == "protocol" and self.context is None:
                self.context = "implicit"
        elif tok in ("-m", "--match"):
            self.matches.append((self.next_value(tok), []))
            self.context = "match"
        elif tok in ("-j", "--jump", "-g", "--goto"):
            self.target = self.next_value(tok)
            self.goto = tok in ("-g", "--goto")
            self.context = "target"
        elif tok in ("-c", "--set-counters"):
            pkts, nbytes = self.next_value(tok), self.next_value(tok)
            if not (pkts.isdigit() and nbytes.isdigit()):
                raise _fail(self.line_no, f"has {tok} {pkts} {nbytes}, which are not packet and byte counts")
            self.counters = Counters(int(pkts), int(nbytes))
        elif tok in ("-f", "--fragment"):
            self.matches.append(("fragment", [Option("-f", (), negate)]))
        elif tok.startswith("--"):
            self.add_option(Option(tok, self.option_values(), negate))
        else:
            raise _fail(self.line_no, f"has {tok!r} where an iptables option was expected")

    def add_option(self, opt: Option) -> None:
        # `-p tcp -m comment --comment x --dport 80`: a port option after another module is still the protocol's.
        implicit = (
            "protocol" in self.basic
            and opt.name in _PROTOCOL_OPTIONS
            and self.context == "match"
            and self.matches[-1][0] not in _PORT_MODULES
        )
        if self.context == "target":
            self.target_options.append(opt)
        elif self.context == "match" and not implicit:
            self.matches[-1][1].append(opt)
        elif self.context == "implicit" or implicit:
            proto = self.basic["protocol"].value
            if not self.matches or self.matches[-1][0] != proto:
                self.matches.append((proto, []))
            self.matches[-1][1].append(opt)
        else:
            raise _fail(self.line_no, f"has {opt.name} before any -m/-j it could belong to")


def _tokens(text: str, line_no: int) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as err:
        raise _fail(line_no, f"cannot be split into words ({err})") from None


def _check_addresses(cond: Condition | None, line_no: int) -> None:
    if cond is None:
        return
    for part in cond.value.split(","):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise _fail(line_no, f"has {part!r} where an address or CIDR was expected") from None


class _SaveParser:
    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.table: str | None = None
        self.table_line = 0
        self.chains: dict[str, tuple[str | None, Counters | None]] = {}
        self.rules: dict[str, list[Rule]] = {}

    def feed(self, line_no: int, line: str) -> None:
        if not line or line.startswith("#"):
            return
        if line.startswith("*"):
            self.open_table(line_no, line[1:].strip())
        elif line == "COMMIT":
            self.commit(line_no)
        elif self.table is None:
            raise _fail(line_no, "comes before any *table line")
        elif line.startswith(":"):
            self.declare_chain(line_no, line)
        elif line.startswith(("-", "[")):
            self.add_rule(line_no, line)
        else:
            raise _fail(line_no, f"is not a table, chain, rule or COMMIT line: {line[:60]!r}")

    def open_table(self, line_no: int, name: str) -> None:
        if self.table is not None:
            raise _fail(line_no, f"starts table {name!r} but table {self.table!r} has no COMMIT yet")
        if not name:
            raise _fail(line_no, "has '*' without a table name")
        self.table, self.table_line = name, line_no
        self.chains, self.rules = {}, {}

    def declare_chain(self, line_no: int, line: str) -> None:
        found = _CHAIN_LINE.match(line)
        if not found:
            raise _fail(line_no, "is not a chain line like ':KUBE-SERVICES - [0:0]'")
        name, policy, pkts, nbytes = found.groups()
        counters = Counters(int(pkts), int(nbytes)) if pkts is not None else None
        self.chains[name] = (None if policy == "-" else policy, counters)
        self.rules.setdefault(name, [])

    def ensure_chain(self, line_no: int, name: str) -> None:
        assert self.table is not None
        if name in self.chains:
            return
        # Built-in chains exist without a declaration, as iptables-restore allows.
        if name in BUILTIN_CHAINS.get(self.table, ()):
            self.chains[name] = ("ACCEPT", None)
            self.rules[name] = []
            return
        raise _fail(line_no, f"adds a rule to chain {name!r}, which was never declared (':{name} - [0:0]')")

    def add_rule(self, line_no: int, line: str) -> None:
        assert self.table is not None
        counters: Counters | None = None
        found = _COUNTERS.match(line)
        body = line
        if found:
            counters = Counters(int(found.group(1)), int(found.group(2)))
            body = line[found.end() :]
        tokens = _tokens(body, line_no)
        if len(tokens) < 2 or tokens[0] not in ("-A", "--append", "-I", "--insert"):
            raise _fail(line_no, "is a rule that does not start with -A CHAIN")
        chain = tokens[1]
        self.ensure_chain(line_no, chain)
        rest = tokens[2:]
        insert_at: int | None = None
        if tokens[0] in ("-I", "--insert"):
            insert_at = 0
            if rest and rest[0].isdigit():
                insert_at = int(rest[0]) - 1
                rest = rest[1:]
        rule = self.build_rule(line_no, line, chain, rest, counters)
        if insert_at is None:
            self.rules[chain].append(rule)
        else:
            self.rules[chain].insert(insert_at, rule)

    def build_rule(self, line_no: int, line: str, chain: str, tokens: list[str], counters: Counters | None) -> Rule:
        assert self.table is not None
        parser = _RuleParser(tokens, line_no)
        parser.run()
        rule = Rule(
            table=self.table,
            chain=chain,
            text=line,
            line_no=line_no,
            matches=tuple(Match(name, tuple(opts)) for name, opts in parser.matches),
            target=parser.target,
            target_options=tuple(parser.target_options),
            goto=parser.goto,
            counters=counters or parser.counters,
            source=parser.basic.get("source"),
            destination=parser.basic.get("destination"),
            protocol=parser.basic.get("protocol"),
            in_interface=parser.basic.get("in_interface"),
            out_interface=parser.basic.get("out_interface"),
        )
        _check_addresses(rule.source, line_no)
        _check_addresses(rule.destination, line_no)
        try:
            prob = rule.probability
        except ValueError:
            raise _fail(line_no, "has a --probability that is not a number") from None
        if prob is not None and not 0.0 <= prob <= 1.0:
            raise _fail(line_no, f"has probability {prob}, outside 0..1")
        return rule

    def commit(self, line_no: int) -> None:
        if self.table is None:
            raise _fail(line_no, "has COMMIT outside any table")
        chains = {
            name: Chain(name, policy, counters, tuple(self.rules[name]))
            for name, (policy, counters) in self.chains.items()
        }
        self.tables[self.table] = Table(self.table, chains)
        self.table = None

    def finish(self) -> IptablesSave:
        if self.table is not None:
            raise _fail(self.table_line, f"opens table {self.table!r}, which never reaches COMMIT")
        return IptablesSave(dict(self.tables))


def parse_save(text: str) -> IptablesSave:
    """Parse ``iptables-save`` output (any tables, with or without ``-c`` counters); KalabError names the line."""
    parser = _SaveParser()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        parser.feed(line_no, raw.strip())
    return parser.finish()


# ---------------------------------------------------------------------------------------------- -L listing

_OPTS: Final = re.compile(r"^(--|-f|!f)$")
_COUNT: Final = re.compile(r"^(\d+)([KMGTP]?)$")
_COMMENT: Final = re.compile(r"/\*\s?(.*?)\s?\*/")
_SUFFIX: Final[Mapping[str, int]] = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


@dataclass(frozen=True)
class ListingRule:
    """One rule line of ``iptables -L -n -v`` (optionally ``--line-numbers``)."""

    packets: int
    bytes: int
    target: str
    prot: str
    opt: str
    in_interface: str
    out_interface: str
    source: str
    destination: str
    comment: str | None
    extra: str
    num: int | None = None

    @property
    def signature(self) -> tuple[str, str, str, str, str, str, str, str | None, str]:
        """Everything but counters and line number: equal signatures mean the same rule."""
        return (self.target, self.prot, self.opt, self.in_interface, self.out_interface, self.source,
                self.destination, self.comment, self.extra)  # fmt: skip


def _count(text: str) -> int:
    found = _COUNT.match(text)
    if not found:
        raise ValueError(text)
    return int(found.group(1)) * _SUFFIX[found.group(2)]


def _protocol_name(prot: str) -> str:
    negated = prot.startswith("!")
    bare = prot[1:] if negated else prot
    name = PROTOCOL_NAMES.get(bare, bare)
    return ("!" if negated else "") + name


def _listing_layout(words: list[str]) -> tuple[bool, bool]:
    """(has line number, has target): the opt column (``--``) is the anchor, an empty target shifts it left."""
    numeric = [bool(_COUNT.match(w)) for w in words[:3]]
    for has_num in (True, False) if all(numeric) else (False,):
        for has_target in (True, False):
            if len(words) > 2 + has_num + has_target + 5 and _OPTS.match(words[2 + has_num + has_target + 1]):
                return has_num, has_target
    raise ValueError("no opt column")


def parse_listing_line(line: str) -> ListingRule:
    """Parse a rule line of ``iptables -L -n -v``; protocol numbers (iptables ≥ 1.8.9) become names (6 → tcp)."""
    spans = [(m.group(0), m.end()) for m in re.finditer(r"\S+", line)]
    words = [w for w, _ in spans]
    try:
        has_num, has_target = _listing_layout(words)
        i = 1 if has_num else 0
        num = int(words[0]) if has_num else None
        packets, nbytes = _count(words[i]), _count(words[i + 1])
    except (ValueError, IndexError):
        raise KalabError(f"This is not a rule line of `iptables -L -n -v`: {line.strip()[:80]!r}.") from None
    i += 2
    target = words[i] if has_target else ""
    i += 1 if has_target else 0
    prot, opt, in_if, out_if, source, destination = words[i : i + 6]
    rest = line[spans[i + 5][1] :].strip()
    comment_match = _COMMENT.search(rest)
    comment = comment_match.group(1) if comment_match else None
    if comment_match:
        rest = rest[: comment_match.start()] + rest[comment_match.end() :]
    return ListingRule(
        packets=packets,
        bytes=nbytes,
        target=target,
        prot=_protocol_name(prot),
        opt=opt,
        in_interface=in_if,
        out_interface=out_if,
        source=source,
        destination=destination,
        comment=comment,
        extra=" ".join(rest.split()),
        num=num,
    )


# ---------------------------------------------------------------------------------------------- trace model


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
            name = _protocol_name(rule.protocol.value.lower())
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
            "--dport", "--destination-port", "--dports", "--destination-ports",
        ):  # fmt: skip
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
            raise _fail(rule.line_no, f"has a value the trace cannot read ({err})") from None

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
                raise _fail(rule.line_no, "has a MARK value that is not a number") from None
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


__all__ = [
    "Chain",
    "Condition",
    "Counters",
    "Destination",
    "Hop",
    "IptablesSave",
    "ListingRule",
    "Match",
    "Option",
    "Outcome",
    "Rule",
    "Table",
    "Trace",
    "parse_listing_line",
    "parse_save",
    "trace",
]
