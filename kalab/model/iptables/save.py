"""Parsing ``iptables-save`` text into the rule model (rules.py).

Real dumps from the nf_tables backend (iptables 1.8.9) differ from what was restored, and both forms parse:
chains and rules come back sorted by chain name; ``MARK --or-mark 0x4000`` comes back as
``--set-xmark 0x4000/0x4000`` and ``--xor-mark`` as ``--set-xmark 0x4000/0x0``; probabilities come back with the
kernel's 31-bit rounding (``0.3333333333`` → ``0.33333333349``).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from typing import Final

from kalab.model.iptables.rules import (
    BUILTIN_CHAINS,
    Chain,
    Condition,
    Counters,
    IptablesSave,
    Match,
    Option,
    Rule,
    Table,
    rule_error,
)

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
            raise rule_error(self.line_no, f"ends after {option}, which needs a value")
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
            raise rule_error(self.line_no, "ends with a dangling '!'")

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
                raise rule_error(self.line_no, f"has {tok} {pkts} {nbytes}, which are not packet and byte counts")
            self.counters = Counters(int(pkts), int(nbytes))
        elif tok in ("-f", "--fragment"):
            self.matches.append(("fragment", [Option("-f", (), negate)]))
        elif tok.startswith("--"):
            self.add_option(Option(tok, self.option_values(), negate))
        else:
            raise rule_error(self.line_no, f"has {tok!r} where an iptables option was expected")

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
            raise rule_error(self.line_no, f"has {opt.name} before any -m/-j it could belong to")


def _tokens(text: str, line_no: int) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as err:
        raise rule_error(line_no, f"cannot be split into words ({err})") from None


def _check_addresses(cond: Condition | None, line_no: int) -> None:
    if cond is None:
        return
    for part in cond.value.split(","):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise rule_error(line_no, f"has {part!r} where an address or CIDR was expected") from None


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
            raise rule_error(line_no, "comes before any *table line")
        elif line.startswith(":"):
            self.declare_chain(line_no, line)
        elif line.startswith(("-", "[")):
            self.add_rule(line_no, line)
        else:
            raise rule_error(line_no, f"is not a table, chain, rule or COMMIT line: {line[:60]!r}")

    def open_table(self, line_no: int, name: str) -> None:
        if self.table is not None:
            raise rule_error(line_no, f"starts table {name!r} but table {self.table!r} has no COMMIT yet")
        if not name:
            raise rule_error(line_no, "has '*' without a table name")
        self.table, self.table_line = name, line_no
        self.chains, self.rules = {}, {}

    def declare_chain(self, line_no: int, line: str) -> None:
        found = _CHAIN_LINE.match(line)
        if not found:
            raise rule_error(line_no, "is not a chain line like ':KUBE-SERVICES - [0:0]'")
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
        raise rule_error(line_no, f"adds a rule to chain {name!r}, which was never declared (':{name} - [0:0]')")

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
            raise rule_error(line_no, "is a rule that does not start with -A CHAIN")
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
            raise rule_error(line_no, "has a --probability that is not a number") from None
        if prob is not None and not 0.0 <= prob <= 1.0:
            raise rule_error(line_no, f"has probability {prob}, outside 0..1")
        return rule

    def commit(self, line_no: int) -> None:
        if self.table is None:
            raise rule_error(line_no, "has COMMIT outside any table")
        chains = {
            name: Chain(name, policy, counters, tuple(self.rules[name]))
            for name, (policy, counters) in self.chains.items()
        }
        self.tables[self.table] = Table(self.table, chains)
        self.table = None

    def finish(self) -> IptablesSave:
        if self.table is not None:
            raise rule_error(self.table_line, f"opens table {self.table!r}, which never reaches COMMIT")
        return IptablesSave(dict(self.tables))


def parse_save(text: str) -> IptablesSave:
    """Parse ``iptables-save`` output (any tables, with or without ``-c`` counters); KalabError names the line."""
    parser = _SaveParser()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        parser.feed(line_no, raw.strip())
    return parser.finish()
