"""The doctor's checks are bounded and independent: a check that hangs or breaks says why, as a warn, at once."""

from __future__ import annotations

import threading
from typing import cast

from kubernetes.client.exceptions import ApiException

from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose.catalog import CATALOG, FAULTS
from kalab.cluster.diagnose.doctor import _bounded, doctor
from kalab.cluster.diagnose.verdicts import Verdict, fix_for
from kalab.model.errors import KalabError


def test_a_check_that_hangs_is_a_warn_after_its_timeout() -> None:
    release, finished = threading.Event(), threading.Event()

    def hangs() -> Verdict:
        release.wait(30)
        finished.set()
        return Verdict("vip-nowhere", "ok", "", "")

    verdict = _bounded("vip-nowhere", "demo/demo", hangs, 0.2)
    assert not finished.is_set()  # the doctor went on while the check still hung
    release.set()
    assert verdict.status == "warn" and verdict.subject == "demo/demo"
    assert verdict.summary == "could not check: the check did not finish within 0.2 s"


def test_a_check_that_fails_to_run_says_why() -> None:
    def broken() -> Verdict:
        raise KalabError("Listing events in keepalived-operator failed (Forbidden); check the namespace exists.")

    verdict = _bounded("scc-missing", "keepalived-operator/keepalivedgroup-workers", broken, 5)
    assert verdict.status == "warn"
    assert verdict.evidence == "Listing events in keepalived-operator failed (Forbidden); check the namespace exists"


def test_the_fix_is_the_catalogs_command_with_what_is_known_filled_in() -> None:
    fix = fix_for("scc-missing", group_namespace="keepalived-operator")
    assert fix == "oc adm policy add-scc-to-user privileged -z default -n keepalived-operator"
    assert "<group-namespace>" in FAULTS["scc-missing"].fix


class _Refusing:
    """A cluster connection on which every call fails: services are Forbidden, everything else cannot be reached."""

    class core:  # stands in for Cluster.core
        @staticmethod
        def list_service_for_all_namespaces(**_: object) -> None:
            raise ApiException(status=403, reason="Forbidden")

    def __getattr__(self, name: str) -> object:
        raise ConnectionRefusedError(f"no {name}")


def test_checks_that_cannot_run_say_why_and_the_others_still_run() -> None:
    verdicts = doctor(cast(Cluster, _Refusing()))
    service_ids = {f.id for f in CATALOG if f.scope == "service"}
    skipped = [v for v in verdicts if v.subject == "services"]
    assert {v.id for v in skipped} == service_ids
    assert all(v.status == "warn" and "listing services failed (403 Forbidden)" in v.summary for v in skipped)
    cluster_wide = {v.id: v for v in verdicts if v.subject == "cluster"}
    assert {"operator-not-ready", "autoassign-missing", "externalip-not-allowed"} <= set(cluster_wide)
    assert all(v.status == "warn" and v.summary.startswith("could not check: ") for v in cluster_wide.values())
