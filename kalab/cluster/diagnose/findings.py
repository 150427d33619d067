"""Findings: what a diagnosis saw for one check of one symptom, and tables of them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import pandas as pd

from kalab.cluster._common import sentence
from kalab.model.errors import KalabError

PENDING = "EXTERNAL-IP pending"
NO_PODS = "no keepalived pods"
TWO_NODES = "VIP on two nodes"
NOWHERE = "VIP nowhere"
SYMPTOMS = (PENDING, NO_PODS, TWO_NODES, NOWHERE)
COLUMNS = ["symptom", "check", "status", "evidence", "what_to_do"]
Status = Literal["ok", "problem"]


@dataclass(frozen=True)
class Finding:
    """One check of a diagnosis: which symptom it rules in or out, what was seen, and what to do about it."""

    symptom: str
    check: str
    status: Status
    evidence: str
    what_to_do: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _ok(symptom: str, check: str, evidence: str) -> Finding:
    return Finding(symptom, check, "ok", evidence)


def _problem(symptom: str, check: str, evidence: str, what_to_do: str) -> Finding:
    return Finding(symptom, check, "problem", evidence, what_to_do)


def table(findings: Iterable[Finding]) -> pd.DataFrame:
    """The findings as a table: symptom, check, status, evidence, what_to_do."""
    return pd.DataFrame([asdict(f) for f in findings], columns=COLUMNS)


def problems(findings: Iterable[Finding], symptom: str | None = None) -> list[Finding]:
    """The findings that are problems (of one symptom, when given)."""
    return [f for f in findings if not f.ok and (symptom is None or f.symptom == symptom)]


def all_ok(findings: Sequence[Finding]) -> str:
    """`all N checks ok`, or KalabError naming the first problem, its evidence and what to do."""
    found = problems(findings)
    if not found:
        return f"all {len(findings)} checks ok"
    first = found[0]
    more = f" (and {len(found) - 1} more problem(s) in the table)" if len(found) > 1 else ""
    raise KalabError(sentence(f"{first.symptom}, {first.check}: {first.evidence}{more}; {first.what_to_do}"))


def expect_problem(findings: Sequence[Finding], symptom: str) -> str:
    """The evidence of the problems found for `symptom` (when reproducing it); KalabError when there is none."""
    found = problems(findings, symptom)
    if not found:
        raise KalabError(
            f'The diagnosis shows no "{symptom}" problem in {len(findings)} checks, so the symptom was not '
            "reproduced; read the table for what the cluster did instead."
        )
    return "; ".join(f"{f.check}: {f.evidence}" for f in found)
