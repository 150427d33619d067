"""The troubleshooting catalog against one seeded lab: each reproducible fault broken for real, named by the
doctor (and nothing else failing), healed, and the doctor all ok again.

The lab is the seed's end state (tests/cluster/seeded.py). Between faults the test waits until the doctor is all
ok and both keepalived pods are Ready again, so each fault starts from a healthy lab.
"""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from kalab.cluster import keepalived
from kalab.cluster.diagnose.catalog import FAULTS, IDS
from kalab.cluster.diagnose.doctor import doctor
from kalab.cluster.diagnose.verdicts import Verdict, failing
from kalab.lab import faults
from tests.cluster.seeded import SeededLab, seeded_lab
from tests.lab.apiserver.api_kit import KUBECTL
from tests.support.kalabcli import run_kalab
from tests.support.labs import SharedLab
from tests.support.markers import needs_lab_tools
from tests.support.waiting import wait_for

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "iptables", "ip", "curl")
REPRODUCIBLE = sorted(faults.RECIPES)


@pytest.fixture(scope="module")
def seeded(shared_lab: SharedLab) -> SeededLab:
    return seeded_lab(shared_lab)


def healthy(seeded: SeededLab) -> list[Verdict] | None:
    """The doctor's verdicts when every one is ok and both keepalived pods are Ready; else None."""
    pods = keepalived.keepalived_pods(seeded.cluster)
    if len(pods) != 2 or not pods["ready"].all():
        return None
    verdicts = doctor(seeded.cluster)
    return verdicts if all(v.status == "ok" for v in verdicts) else None


def wait_healthy(seeded: SeededLab, timeout: float = 90) -> list[Verdict]:
    return wait_for(lambda: healthy(seeded), timeout, "the doctor all ok and both keepalived pods Ready", 0.5)


# True while the lab is as the previous test's final wait_healthy saw it (healthy) and nothing has touched it since:
# the next test then need not run the doctor again before it breaks something (tests run one after another).
_ENDED_HEALTHY = [False]


def starts_healthy(seeded: SeededLab) -> None:
    """Before a test breaks something: healthy, as the previous test left it or else waited for."""
    if not _ENDED_HEALTHY[0]:
        wait_healthy(seeded)
    _ENDED_HEALTHY[0] = False  # the test changes the lab from here on


def ends_healthy(seeded: SeededLab) -> None:
    wait_healthy(seeded)
    _ENDED_HEALTHY[0] = True


def named(seeded: SeededLab, fault_id: str) -> list[Verdict] | None:
    """The verdicts once the doctor reports `fault_id` with its catalog severity (checked, not skipped) and no
    other id fails."""
    verdicts = doctor(seeded.cluster)
    mine = [v for v in verdicts if v.id == fault_id and v.status == FAULTS[fault_id].severity]
    others = [v for v in failing(verdicts) if v.id != fault_id]
    return verdicts if mine and not others else None


def test_the_catalog_has_the_issues_ids_each_with_what_is_seen_its_cause_and_a_fix() -> None:
    assert IDS == (
        "operator-not-ready",
        "no-loadbalancer-nodes",
        "scc-missing",
        "image-pull",
        "wrong-interface",
        "port-conflict",
        "autoassign-missing",
        "cidr-exhausted",
        "externalip-not-allowed",
        "group-missing",
        "annotation-malformed",
        "router-ids-exhausted",
        "vrrp-blocked",
        "vrid-collision",
        "node-down",
        "vip-nowhere",
        "vip-not-on-master",
        "vips-concentrated",
        "cidr-overlaps-cluster",
    )
    assert all(f.sees and f.cause and f.fix.startswith(("oc ", "iptables ")) for f in FAULTS.values())
    assert {f.id for f in FAULTS.values() if f.severity == "warn"} == {"vips-concentrated", "cidr-overlaps-cluster"}


def test_the_list_names_every_catalog_id_once() -> None:
    listed = faults.faults()
    assert [f.id for f in listed] == list(IDS)
    assert {f.id for f in listed if f.reproducible} == set(REPRODUCIBLE)
    assert all(f.why for f in listed)
    printed = run_kalab("lab", "faults", "--json")
    assert printed.returncode == 0 and json.loads(printed.stdout) == [f.to_dict() for f in listed]


def test_the_seeded_lab_is_all_ok(seeded: SeededLab) -> None:
    verdicts = wait_healthy(seeded)
    _ENDED_HEALTHY[0] = True  # this test only reads
    ids = {v.id for v in verdicts}
    assert {"autoassign-missing", "scc-missing", "vrrp-blocked", "vip-nowhere", "vips-concentrated"} <= ids
    assert all(v.fix == "" for v in verdicts)
    done = run_kalab("doctor", "--name", seeded.info.name, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)
    assert {"id", "status", "summary", "evidence", "fix"} <= set(printed[0])
    assert {p["status"] for p in printed} == {"ok"}


@pytest.mark.parametrize("fault_id", REPRODUCIBLE)
def test_break_is_named_by_the_doctor_and_heal_makes_it_ok(seeded: SeededLab, fault_id: str) -> None:
    name = seeded.info.name
    starts_healthy(seeded)
    faults.break_fault(name, fault_id)
    try:
        assert list(faults.broken(seeded.info)) == [fault_id]
        verdicts = wait_for(lambda: named(seeded, fault_id), 60, f"the doctor to name {fault_id}", 0.5)
        found = next(v for v in verdicts if v.id == fault_id and v.status != "ok")
        assert found.evidence and found.fix and not found.summary.startswith("not checked")
    finally:
        assert faults.heal(name) == [fault_id]
    assert faults.broken(seeded.info) == {}
    ends_healthy(seeded)


def test_the_doctors_fix_for_a_narrowed_operator_group_heals_the_csv(seeded: SeededLab) -> None:
    """OLM's reason and message are the evidence, and the fix (run as written, kubectl for oc) widens the group
    again: redoing notebook 01's install would keep the narrowed one."""
    name = seeded.info.name
    starts_healthy(seeded)
    faults.break_fault(name, "operator-not-ready")
    try:
        verdicts = wait_for(lambda: named(seeded, "operator-not-ready"), 60, "the doctor to name it", 0.5)
        found = next(v for v in verdicts if v.id == "operator-not-ready")
        wording = "UnsupportedOperatorGroup: OwnNamespace InstallModeType not supported, cannot configure to watch own"
        assert wording in found.evidence
        argv = shlex.split(found.fix)
        assert argv[:3] == ["oc", "patch", "operatorgroup"]
        kubectl = [str(KUBECTL), "--kubeconfig", str(seeded.info.kubeconfig), *argv[1:]]
        done = subprocess.run(kubectl, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        wait_healthy(seeded)
    finally:
        faults.heal(name)
    ends_healthy(seeded)


def test_a_mystery_fault_is_not_named_until_the_doctor_finds_it(seeded: SeededLab) -> None:
    name = seeded.info.name
    starts_healthy(seeded)
    broke = run_kalab("lab", "break", "--name", name, "--mystery")
    assert broke.returncode == 0, broke.stderr
    (fault_id,) = faults.broken(seeded.info)
    assert fault_id in REPRODUCIBLE and fault_id not in broke.stdout
    try:
        wait_for(lambda: named(seeded, fault_id), 60, f"the doctor to name {fault_id}", 0.5)
        if FAULTS[fault_id].severity == "fail":
            done = run_kalab("doctor", "--name", name, "--json")
            assert done.returncode == 1
            assert fault_id in {p["id"] for p in json.loads(done.stdout) if p["status"] == "fail"}
    finally:
        healed = run_kalab("lab", "heal", "--name", name)
    assert healed.returncode == 0 and f"Healed {fault_id}." in healed.stdout
    ends_healthy(seeded)


def test_break_and_heal_refuse_what_they_cannot_do(seeded: SeededLab) -> None:
    name = seeded.info.name
    unknown = run_kalab("lab", "break", "--name", name, "no-such-fault")
    assert unknown.returncode == 1 and "There is no fault" in unknown.stderr
    not_yet = next(f.id for f in faults.faults() if not f.reproducible)
    later = run_kalab("lab", "break", "--name", name, not_yet)
    assert later.returncode == 1 and f"The lab cannot break {not_yet}" in later.stderr
    nothing = run_kalab("lab", "heal", "--name", name)
    assert nothing.returncode == 0 and "Nothing to heal" in nothing.stdout
