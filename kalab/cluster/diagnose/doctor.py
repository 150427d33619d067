"""The doctor: every catalog check (catalog.py) on the cluster, each KeepalivedGroup, each annotated service.

Each check reuses the diagnoses' findings (external_ip, keepalived_pods, vip) and becomes one `Verdict` per catalog
id and subject: ok, warn or fail, a one-line summary, the evidence seen and the fix as a command. Checks run in
order, each bounded by a timeout; a check whose cause lies upstream (no pods because no node is labelled) says so
as a warn instead of failing twice, and a check that cannot run says why, also as a warn. It reads only what an
administrator with `oc` can: objects, events, pod logs, exec into the hostNetwork keepalived pods, the exporters'
metrics through the pod proxy.

This module is the runner: the order of the checks, which depends on which, and the bound on each. The checks
live beside it by what they look at (doctor_cluster, doctor_groups, doctor_vips), the reads they share in
doctor_evidence, and the verdicts they return in verdicts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import api_message
from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose import doctor_cluster, doctor_groups, doctor_vips
from kalab.cluster.diagnose.doctor_evidence import Evidence, GroupReads
from kalab.cluster.diagnose.findings import Finding
from kalab.cluster.diagnose.verdicts import Verdict
from kalab.model import operator
from kalab.model.errors import KalabError

CHECK_TIMEOUT = 8.0  # seconds one check may take before it is reported as not finished
# The group checks that stand between a group and its keepalived pods running: the VIP checks wait for them.
_GROUP_FAULTS = ("no-loadbalancer-nodes", "scc-missing", "image-pull", "wrong-interface", "port-conflict")


class Doctor:
    """One run of every check; `run()` returns the verdicts in the order the checks ran: the cluster's, the services'
    group references, each group's, each service's VIP, and last where each group's VIPs are."""

    def __init__(
        self, cluster: Cluster, namespace: str | None = None, service: str | None = None, timeout: float = CHECK_TIMEOUT
    ) -> None:
        self.cluster, self.namespace, self.service, self.timeout = cluster, namespace, service, timeout
        self.verdicts: list[Verdict] = []
        self.evidence = Evidence(cluster, timeout)

    def _failed(self, fault_id: str, subject: str | None = None) -> Verdict | None:
        return next(
            (v for v in self.verdicts if v.id == fault_id and v.status == "fail" and subject in (None, v.subject)),
            None,
        )

    def _check(
        self, fault_id: str, subject: str, run: Callable[[], Verdict], after: Sequence[tuple[str, str | None]] = ()
    ) -> None:
        """Run one check within the timeout, unless a check it depends on (id, subject) failed already."""
        for upstream, where in after:
            cause = self._failed(upstream, where)
            if cause is not None:
                seen = f"not checked: {upstream} fails for {cause.subject} first"
                self.verdicts.append(Verdict(fault_id, "warn", seen, cause.summary, "", subject))
                return
        self.verdicts.append(_bounded(fault_id, subject, run, self.timeout))

    def run(self) -> list[Verdict]:
        ev = self.evidence
        self.verdicts += ev.read_services(self.namespace, self.service)
        needs_block = [("autoassign-missing", "cluster")]
        self._check("operator-not-ready", "cluster", lambda: doctor_cluster.operator_ready(ev))
        self._check("autoassign-missing", "cluster", lambda: doctor_cluster.autoassign(ev))
        self._check("cidr-exhausted", "cluster", lambda: doctor_cluster.exhausted(ev), needs_block)
        self._check("externalip-not-allowed", "cluster", lambda: doctor_cluster.policy(ev))
        self._check("cidr-overlaps-cluster", "cluster", lambda: doctor_cluster.overlaps(ev), needs_block)
        for svc in ev.services:
            self._service_refs(svc)
        if self.service is None and self._failed("operator-not-ready") is None:
            ev.read_all_groups()
        for ref in sorted(ev.groups):
            self._group_checks(ev.groups[ref])
        for svc in ev.services:
            self._vip_checks(svc)
        for ref in sorted(ev.groups):
            group = ev.groups[ref]
            after = [(f, ref) for f in _GROUP_FAULTS] + [("vrrp-blocked", None), ("vip-nowhere", None)]
            self._check("vips-concentrated", ref, lambda g=group: doctor_vips.concentrated(ev, g), after)  # type: ignore[misc]
        return self.verdicts

    def _service_refs(self, svc: dict[str, Any]) -> None:
        """annotation-malformed and group-missing for one service; the second registers the group it names."""
        where = operator.namespaced_name(svc)
        self._check("annotation-malformed", where, lambda: doctor_groups.annotation(svc))
        after = [("annotation-malformed", where), ("operator-not-ready", "cluster")]
        self._check("group-missing", where, lambda: doctor_groups.group_exists(self.evidence, svc), after)

    def _group_checks(self, group: GroupReads) -> None:
        ev, ref, after = self.evidence, group.ref, [("operator-not-ready", "cluster")]
        self._check("no-loadbalancer-nodes", ref, lambda: doctor_groups.selector(ev, group), after)
        self._check("scc-missing", ref, lambda: doctor_groups.scc(ev, group), [*after, ("no-loadbalancer-nodes", ref)])
        pod_after = [*after, ("no-loadbalancer-nodes", ref), ("scc-missing", ref)]
        self._check("image-pull", ref, lambda: doctor_groups.image_pull(group), pod_after)
        self._check(
            "wrong-interface", ref, lambda: doctor_groups.interface(ev, group), [*pod_after, ("image-pull", ref)]
        )
        self._check("port-conflict", ref, lambda: doctor_groups.ports(group), pod_after)
        self._check("router-ids-exhausted", ref, lambda: doctor_groups.router_ids(group), after)
        self._check("node-down", ref, lambda: doctor_groups.node_down(group), [*after, ("no-loadbalancer-nodes", ref)])

    def _vip_checks(self, svc: dict[str, Any]) -> None:
        ev, where, ref = self.evidence, operator.namespaced_name(svc), doctor_groups.group_ref(svc)
        # Without a ready operator the group is not read (group-missing is not checked), so neither are the VIPs.
        after: list[tuple[str, str | None]] = [("operator-not-ready", "cluster"), ("annotation-malformed", where)]
        after += [("group-missing", where), *((f, ref) for f in _GROUP_FAULTS)]
        if not operator.service_vips(svc):
            after += [("autoassign-missing", "cluster"), ("cidr-exhausted", "cluster")]
        placement: dict[str, list[Finding]] = {}

        def place() -> dict[str, list[Finding]]:  # looked at once, for all three placement checks
            if not placement:
                placement.update(doctor_vips.placement(ev, svc, ev.groups[ref]))
            return placement

        group = ev.groups.get(ref)
        if operator.service_vips(svc) and group is not None:
            self._check("vrid-collision", where, lambda: doctor_vips.collision(ev, svc, group), after)
        after.append(("vrid-collision", where))
        for fault_id in doctor_vips.PLACEMENT_FAULTS:
            self._check(fault_id, where, lambda f=fault_id: doctor_vips.placed(f, where, place()), after)  # type: ignore[misc]


def _bounded(fault_id: str, subject: str, run: Callable[[], Verdict], timeout: float) -> Verdict:
    """Run a check in a thread of its own for at most `timeout` s; a check that fails or hangs says why."""
    result: list[Verdict] = []
    error: list[str] = []

    def target() -> None:
        try:
            result.append(run())
        except KalabError as err:
            error.append(str(err).rstrip("."))
        except ApiException as err:
            error.append(f"the API answered {err.status} ({api_message(err).rstrip('.')})")
        except Exception as err:  # one broken check must not stop the others
            error.append(f"{type(err).__name__}: {err}")

    thread = threading.Thread(target=target, name=f"doctor-{fault_id}", daemon=True)
    thread.start()
    thread.join(timeout)
    if result:
        return result[0]
    why = error[0] if error else f"the check did not finish within {timeout:g} s"
    return Verdict(fault_id, "warn", f"could not check: {why}", why, "", subject)


def doctor(
    cluster: Cluster, namespace: str | None = None, service: str | None = None, timeout: float = CHECK_TIMEOUT
) -> list[Verdict]:
    """Every catalog check: cluster-wide, per KeepalivedGroup in use, per annotated LoadBalancer service (or the one
    given); each bounded by `timeout` seconds."""
    return Doctor(cluster, namespace, service, timeout).run()
