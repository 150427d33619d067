"""The troubleshooting exercise's steps: look at the symptoms as a user would, wait for the doctor to name a fault,
and wait for it to be all ok again.

Each look at the symptoms is what an administrator types (`oc get svc`, `oc get pods`, the exporters' states, a
curl from where the clients are); a look that cannot be made says why instead of stopping the others, because a
broken cluster is exactly when some of them fail.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import poll
from kalab.cluster.connect import Cluster
from kalab.cluster.demo import service_table
from kalab.cluster.diagnose.catalog import CATALOG
from kalab.cluster.diagnose.doctor import doctor
from kalab.cluster.diagnose.verdicts import Verdict
from kalab.cluster.exporter import vrrp_states
from kalab.cluster.keepalived import DEFAULT_GROUP, DEFAULT_NAMESPACE, keepalived_pods
from kalab.cluster.sites import Site, site_for
from kalab.cluster.traffic import vip_url
from kalab.model.errors import KalabError

SYMPTOM_COLUMNS = ["look", "what it shows"]


def _look(what: Callable[[], str]) -> str:
    try:
        return what()
    except (KalabError, ApiException, OSError) as err:
        return f"could not look: {str(err).splitlines()[0] if str(err) else type(err).__name__}"


def symptoms(
    cluster: Cluster,
    namespace: str = "demo",
    service: str = "demo",
    group: str = DEFAULT_GROUP,
    group_namespace: str = DEFAULT_NAMESPACE,
    probe_seconds: float = 1.0,
) -> pd.DataFrame:
    """What a user sees before asking the doctor: one row per look, with the command it stands for."""
    vip: list[str] = []

    def external_ip() -> str:
        shown = str(service_table(cluster, namespace, service)["EXTERNAL-IP"].iloc[0] or "")
        vip.extend(ip for ip in shown.split(",")[:1] if ip and not ip.startswith("<"))  # not <pending> or <none>
        return f"EXTERNAL-IP {shown or '<pending>'}"

    def pods() -> str:
        frame = keepalived_pods(cluster, group_namespace, group)
        if frame.empty:
            return "no keepalived pods"
        listed = ", ".join(
            f"{node or '(unscheduled)'} {phase}{'' if ready else ' not ready'}"
            for node, phase, ready in zip(frame["node"], frame["phase"], frame["ready"], strict=True)
        )
        return f"{int(frame['ready'].sum())} of {len(frame)} ready: {listed}"

    def masters() -> str:
        states = vrrp_states(cluster, group_namespace, group)
        instance = states[states["instance"] == f"{namespace}/{service}"]
        if instance.empty:
            return f"no exporter reports an instance {namespace}/{service}"
        return ", ".join(f"{node} {state}" for node, state in zip(instance["node"], instance["state"], strict=True))

    def curl() -> str:
        if not vip:
            return "nothing to curl: no EXTERNAL-IP"
        site = site_for(cluster)
        timeline = site.probe(vip_url(vip[0]), probe_seconds, 5.0, 1.0)
        answered = int(timeline["ok"].astype(bool).sum()) if len(timeline) else 0
        return f"{answered} of {len(timeline)} requests answered, from {site.where.rstrip('.')}"

    rows = [
        (f"oc get svc -n {namespace} {service}", _look(external_ip)),
        (f"oc get pods -n {group_namespace} -l keepalivedGroup={group} -o wide", _look(pods)),
        ("the exporters' VRRP state (port 9650, through the pod proxy)", _look(masters)),
        (f"curl http://VIP/ from where the clients are ({probe_seconds:g} s)", _look(curl)),
    ]
    return pd.DataFrame(rows, columns=SYMPTOM_COLUMNS)


def first_findings(cluster: Cluster, timeout: float = 60.0) -> list[Verdict]:
    """The doctor's findings once something is not ok: a fault takes seconds to show (pods restart, an election
    runs), so the doctor is asked again, every second, until it finds something or `timeout` passes."""

    def not_all_ok() -> list[Verdict] | None:
        found = doctor(cluster)
        return found if any(v.status != "ok" for v in found) else None

    nothing = KalabError(f"The doctor found nothing within {timeout:g} s; look at the symptoms by hand.")
    found: list[Verdict] = poll(not_all_ok, timeout, lambda: nothing, 1.0)
    return found


def healthy_again(cluster: Cluster, timeout: float = 90.0) -> list[Verdict]:
    """The doctor's findings once every check is ok, asked again every second for up to `timeout`."""

    def all_ok() -> list[Verdict] | None:
        found = doctor(cluster)
        return found if all(v.status == "ok" for v in found) else None

    not_healed = KalabError(f"The doctor is not all ok {timeout:g} s after the fix; read its findings.")
    found: list[Verdict] = poll(all_ok, timeout, lambda: not_healed, 1.0)
    return found


def catalog_table(site: Site) -> pd.DataFrame:
    """The troubleshooting catalog, with whether this site (the lab) can break each fault for real."""
    bench = site.faults
    reproducible = bench.reproducible() if bench else set()
    return pd.DataFrame(
        [{"id": f.id, "what you see": f.sees, "cause": f.cause, "lab": f.id in reproducible} for f in CATALOG]
    )


def break_for_exercise(site: Site, fault: str | None) -> str:
    """Break `fault` (a catalog id, or "mystery" for one picked in secret) where the site can; say what was done.

    On a real cluster nothing is ever broken: it is only diagnosed.
    """
    if not fault:
        return "nothing broken (fault = None): the doctor diagnoses the cluster as it is"
    bench = site.faults
    if bench is None:
        return f"{fault} is not broken: a real cluster is only diagnosed"
    if fault == "mystery":
        bench.mystery()
        return "one fault is broken; which one is yours to find"
    bench.break_fault(fault)
    return f"{fault} is broken"


def heal_after_exercise(site: Site) -> list[str]:
    """Undo whatever the exercise broke (the lab's `kalab lab heal`); nothing on a real cluster."""
    return site.faults.heal() if site.faults else []
