"""iptables text → data: ``iptables-save`` dumps (save.py into the rule model of rules.py), ``iptables -L -n -v``
rule lines (listing.py), and traces of a destination through kube-proxy's nat rules to the endpoints it is
DNATed to, with each endpoint's probability (tracing.py).
"""

from kalab.model.iptables.listing import ListingRule, parse_listing_line
from kalab.model.iptables.rules import (
    BUILTIN_CHAINS,
    DROP_CHAIN,
    MASQ_BIT,
    MASQ_CHAIN,
    PROTOCOL_NAMES,
    TERMINAL_TARGETS,
    Chain,
    Condition,
    Counters,
    IptablesSave,
    Match,
    Option,
    Rule,
    Table,
)
from kalab.model.iptables.save import parse_save
from kalab.model.iptables.tracing import Destination, Hop, Outcome, Trace, trace

__all__ = [
    "BUILTIN_CHAINS",
    "DROP_CHAIN",
    "MASQ_BIT",
    "MASQ_CHAIN",
    "PROTOCOL_NAMES",
    "TERMINAL_TARGETS",
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
