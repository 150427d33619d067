"""One line of ``iptables -L -n -v`` as data; ``-L`` of 1.8.9 prints protocol numbers (``6``) where older
versions printed names (``tcp``): parse_listing_line gives names either way."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from kalab.model.errors import KalabError
from kalab.model.iptables.rules import (
    PROTOCOL_NAMES,
)

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


def protocol_name(prot: str) -> str:
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
        prot=protocol_name(prot),
        opt=opt,
        in_interface=in_if,
        out_interface=out_if,
        source=source,
        destination=destination,
        comment=comment,
        extra=" ".join(rest.split()),
        num=num,
    )
