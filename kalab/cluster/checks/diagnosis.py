"""Notebook 06: the diagnosis of each symptom, the symptoms reproduced on purpose, and the doctor's exercise."""

from __future__ import annotations

from collections.abc import Sequence

from kalab.cluster.diagnose.findings import Finding, problems
from kalab.cluster.diagnose.verdicts import Verdict
from kalab.model.check import Check, failed, passed


def _evidence(findings: Sequence[Finding], check: str) -> str:
    return next((f.evidence for f in findings if f.check == check), "")


def all_ok(name: str, findings: Sequence[Finding], *evidence_of: str) -> Check:
    """Every finding ok; the reason quotes the evidence of the named checks (the first problem otherwise)."""
    found = problems(findings)
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more in the table)" if len(found) > 1 else ""
        return failed(
            name,
            f"{first.symptom}, {first.check}: {first.evidence}{more}",
            look="the table above",
            fix=first.what_to_do,
        )
    quoted = "; ".join(e for e in (_evidence(findings, c) for c in evidence_of) if e)
    return passed(name, f"all {len(findings)} checks ok" + (f": {quoted}" if quoted else ""))


def namespace_phase_is(name: str, namespace: str, phase: str | None, wanted: str | None) -> Check:
    """The scratch namespace is Active (wanted "Active") or gone (wanted None)."""
    if phase == wanted:
        return passed(name, f"namespace {namespace} is {'gone' if wanted is None else wanted}")
    if wanted is None:
        return failed(
            name, f"Namespace {namespace} is still {phase}", "its content is not gone yet", f"oc get all -n {namespace}"
        )
    return failed(
        name,
        f"Namespace {namespace} is {phase or 'missing'}",
        "it is being deleted from an earlier run",
        f"oc get ns {namespace}",
    )


def symptom_reproduced(name: str, findings: Sequence[Finding], symptom: str, blamed: str) -> Check:
    """The diagnosis shows `symptom`, and its evidence names `blamed` (the cause put there on purpose)."""
    found = problems(findings, symptom)
    if not found:
        return failed(
            name,
            f'The diagnosis shows no "{symptom}" problem in {len(findings)} checks',
            "the reproduction did not take effect",
            "the table above",
        )
    text = "; ".join(f"{f.check}: {f.evidence}" for f in found)
    if blamed not in text:
        return failed(
            name, f"The diagnosis does not blame the {blamed}: {text}", "another problem came first", "the table above"
        )
    return passed(name, text)


def refused_externalip(admitted: bool, outside_ip: str, findings: Sequence[Finding], symptom: str) -> Check:
    name = "refused externalIP explained"
    if admitted:
        return failed(
            name,
            f"The API server admitted {outside_ip}",
            "the address is inside allowedCIDRs",
            "oc get network cluster -o jsonpath='{.spec.externalIP.policy}'",
        )
    return symptom_reproduced(name, findings, symptom, "")


def demo_unchanged(before: str, findings: Sequence[Finding]) -> Check:
    name = "demo unchanged"
    after = _evidence(findings, "EXTERNAL-IP assigned")
    if after != before:
        return failed(
            name,
            f"The demo's address changed: {before} before, {after} now",
            "the scratch services took the demo's address",
            "oc get svc -A",
        )
    check = all_ok(name, findings)
    return check if not check.passed else passed(name, f"{check.reason}; {after}")


def _doctor_failed(name: str, bad: Sequence[Verdict]) -> Check:
    """The doctor's failing verdicts as one failed check, hinted with the first one's catalog id and fix."""
    first = bad[0]
    reason = "; ".join(f"{v.id} ({v.subject}): {v.summary}" for v in bad)
    return failed(name, reason, look="kalab doctor", fault=first.id, fix=first.fix)


def doctor_named(verdicts: Sequence[Verdict], broken: bool) -> Check:
    """With a fault broken the doctor names it (fail, or warn for the milder ones); without one nothing fails."""
    name = "the doctor's diagnosis"
    bad = [v for v in verdicts if v.status == "fail"]
    warned = [v for v in verdicts if v.status == "warn" and not v.summary.startswith("not checked")]
    if broken:
        named = bad or warned
        if not named:
            return failed(
                name,
                "The doctor reports nothing although a fault is broken",
                "the fault has not shown yet",
                "kalab doctor",
            )
        return passed(name, "; ".join(f"{v.id} ({v.subject}): fix with {v.fix}" for v in named))
    if bad:
        return _doctor_failed(name, bad)
    return passed(name, f"{len(verdicts)} checks, none fails")


def healthy_again(verdicts: Sequence[Verdict], healed: Sequence[str]) -> Check:
    name = "healthy again"
    bad = [v for v in verdicts if v.status == "fail"]
    if bad:
        return _doctor_failed(name, bad)
    done = f"; healed {', '.join(healed)}" if healed else ""
    return passed(name, f"{sum(v.status == 'ok' for v in verdicts)} of {len(verdicts)} checks ok{done}")


def restored(wanted: bool, demo_left: bool, journal_left: bool, external_ip: object, journal: str) -> Check:
    name = "cluster restored"
    if not wanted:
        return passed(name, "skipped (restore_cluster = False): the demo and the externalIP patch stay")
    if demo_left:
        return failed(name, "Demo pods are still there", "the delete is still running", "oc get pods -n demo")
    if journal_left:
        return failed(
            name,
            f"The undo journal {journal} was not used",
            "the network patch was not undone",
            "oc get network cluster -o yaml",
        )
    return passed(
        name, f"demo deleted; spec.externalIP is {external_ip if external_ip is not None else 'absent'} again"
    )
