"""The doctor's verdicts: one catalog id checked on one subject, ok, warn or fail, with the evidence seen and the
fix as a command; and the few ways a check builds one (from diagnosis findings, or from what it saw directly)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from kalab.cluster.diagnose.catalog import FAULTS
from kalab.cluster.diagnose.findings import Finding

VerdictStatus = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Verdict:
    """One catalog id checked on one subject (the cluster, a group <ns>/<name>, or a service <ns>/<name>)."""

    id: str
    status: VerdictStatus
    summary: str
    evidence: str
    fix: str = ""
    subject: str = "cluster"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def failing(verdicts: Iterable[Verdict], status: VerdictStatus = "fail") -> list[Verdict]:
    """The verdicts with `status` (fail by default)."""
    return [v for v in verdicts if v.status == status]


def fix_for(fault_id: str, **values: str) -> str:
    """The catalog's fix for `fault_id`, with the <placeholders> named by `values` filled in (`group_namespace`
    fills <group-namespace>)."""
    text = FAULTS[fault_id].fix
    for key, value in values.items():
        text = text.replace(f"<{key.replace('_', '-')}>", value)
    return text


def from_findings(fault_id: str, subject: str, findings: Sequence[Finding], **fix: str) -> Verdict:
    """A verdict from diagnosis findings: the catalog's severity when any is a problem, else ok."""
    bad = [f for f in findings if not f.ok]
    evidence = "; ".join(f"{f.check}: {f.evidence}" for f in (bad or findings))
    if not bad:
        return Verdict(fault_id, "ok", findings[-1].evidence if findings else "nothing to check", evidence, "", subject)
    summary = f"{FAULTS[fault_id].cause}: {bad[0].evidence}"
    return Verdict(fault_id, FAULTS[fault_id].severity, summary, evidence, fix_for(fault_id, **fix), subject)


def ok_verdict(fault_id: str, subject: str, evidence: str) -> Verdict:
    """`fault_id` ruled out on `subject`, by what was seen."""
    return Verdict(fault_id, "ok", evidence, evidence, "", subject)


def bad_verdict(fault_id: str, subject: str, evidence: str, **fix: str) -> Verdict:
    """`fault_id` found on `subject`: the catalog's severity and cause, and its fix filled in with `fix`."""
    fault = FAULTS[fault_id]
    return Verdict(fault_id, fault.severity, f"{fault.cause}: {evidence}", evidence, fix_for(fault_id, **fix), subject)
