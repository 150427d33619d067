"""The rule model of an ``iptables-save`` dump: tables, chains, rules with their matches and targets, and the
constants kube-proxy's rules are read with."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

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
    "0": "all",
    "1": "icmp",
    "6": "tcp",
    "17": "udp",
    "58": "ipv6-icmp",
    "132": "sctp",
}
# Targets after which the packet leaves the chain walk for good (in the nat table DNAT/SNAT/… end it too).
TERMINAL_TARGETS: Final = frozenset(
    {"ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NETMAP", "QUEUE", "NFQUEUE"}
)
MASQ_CHAIN: Final = "KUBE-MARK-MASQ"
DROP_CHAIN: Final = "KUBE-MARK-DROP"
MASQ_BIT: Final = 0x4000


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


def rule_error(line_no: int, problem: str) -> KalabError:
    """An error about one line of the dump, for the parser and the trace alike."""
    return KalabError(f"Line {line_no} of the iptables-save text {problem}.")
