"""VRRP timing per service, through the operator's verbatim-config annotation on the Service.

The annotation's JSON object becomes extra lines in that service's vrrp_instance; `advert_int` sets how often the
MASTER advertises, `version 3` allows sub-second intervals (RFC 5798 counts centiseconds). The operator re-renders
the ConfigMap, the pods' volumes catch up and the reloader sends keepalived SIGHUP — no pod restarts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import pandas as pd
from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import Progress, fail, report
from kalab.cluster.connect import Cluster
from kalab.cluster.exporter import sample
from kalab.cluster.keepalived import DEFAULT_GROUP, DEFAULT_NAMESPACE
from kalab.model.errors import KalabError
from kalab.model.operator import VERBATIM_ANNOTATION, verbatim_config
from kalab.model.prometheus import advert_rates
from kalab.model.vrrp import check_timing, timing_from_verbatim


def _service(cluster: Cluster, namespace: str, service: str) -> dict[str, object]:
    try:
        svc = cluster.core.read_namespaced_service(service, namespace)
    except ApiException as err:
        raise fail(f"Reading service {namespace}/{service}", err, "deploy the demo first (notebook 03)") from None
    obj: dict[str, object] = cluster.api.sanitize_for_serialization(svc)  # type: ignore[no-untyped-call]
    return obj


def vrrp_tuning(cluster: Cluster, namespace: str = "demo", service: str = "demo") -> dict[str, str]:
    """The service's verbatim keepalived lines (keyword → value); {} when it has none."""
    return verbatim_config(_service(cluster, namespace, service))


def _write(cluster: Cluster, namespace: str, service: str, verbatim: Mapping[str, str]) -> None:
    value = json.dumps(dict(sorted(verbatim.items()))) if verbatim else None  # None removes the annotation
    body = {"metadata": {"annotations": {VERBATIM_ANNOTATION: value}}}
    try:
        cluster.core.patch_namespaced_service(service, namespace, body)
    except ApiException as err:
        raise fail(f"Annotating service {namespace}/{service}", err, "check you may patch services") from None


def _number(value: float) -> str:
    return f"{value:g}"


def tune_vrrp(
    cluster: Cluster,
    advert_int: float,
    version: int | None = None,
    namespace: str = "demo",
    service: str = "demo",
    progress: Progress = None,
) -> dict[str, str]:
    """Set the service's advert_int (and VRRP version) through the verbatim annotation; returns the new lines."""
    current = vrrp_tuning(cluster, namespace, service)
    wanted = dict(current, advert_int=_number(advert_int))
    if version is not None:
        wanted["version"] = str(version)
    check_timing(advert_int, version=timing_from_verbatim(wanted, {})[1])
    if wanted == current:
        report(progress, f"Service {namespace}/{service} already runs its VRRP instance with {_lines(wanted)}")
        return current
    _write(cluster, namespace, service, wanted)
    report(progress, f"annotated Service {namespace}/{service}: {_lines(wanted)}")
    return wanted


def restore_vrrp(
    cluster: Cluster,
    original: Mapping[str, str],
    namespace: str = "demo",
    service: str = "demo",
    progress: Progress = None,
) -> bool:
    """Put the verbatim lines back as they were (`original` from vrrp_tuning); True if anything changed."""
    if vrrp_tuning(cluster, namespace, service) == dict(original):
        report(progress, f"Service {namespace}/{service} already has its original VRRP lines")
        return False
    _write(cluster, namespace, service, original)
    report(progress, f"restored Service {namespace}/{service}: {_lines(original) if original else 'no verbatim lines'}")
    return True


def _lines(verbatim: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(verbatim.items())) or "keepalived's defaults"


def _near(rate: float, wanted: float) -> bool:
    return abs(rate - wanted) <= 0.25 * wanted


def _settled(rates: pd.DataFrame, wanted: float) -> bool:
    """One MASTER sending at `wanted`/s and every other node a BACKUP hearing it: all run the same config."""
    masters = rates[rates["state"] == "MASTER"]
    backups = rates[rates["state"] != "MASTER"]
    return (
        len(masters) == 1
        and _near(float(masters["adverts_per_s"].iloc[0]), wanted)
        and all(_near(float(r), wanted) for r in backups["received_per_s"])
        and bool((backups["state"] == "BACKUP").all())
    )


def wait_for_advert_interval(
    cluster: Cluster,
    advert_int: float,
    instance: str = "demo/demo",
    timeout: float = 90.0,
    window: float = 2.0,
    namespace: str = DEFAULT_NAMESPACE,
    group: str = DEFAULT_GROUP,
) -> pd.DataFrame:
    """Wait until the MASTER really advertises every `advert_int` s and every BACKUP hears it (exporter counters).

    The config travels operator → ConfigMap → each pod's volume → its reloader → SIGHUP, node by node, so for a
    few seconds the nodes may run different settings. Changing the VRRP version makes that window a split brain:
    a v2 BACKUP ignores v3 adverts and promotes itself. Only when the BACKUPs hear the new adverts do all nodes run
    the same config. Returns the last measurement (node, state, adverts_per_s, received_per_s, seconds).
    """
    wanted = 1.0 / advert_int
    deadline = time.monotonic() + timeout
    rates = pd.DataFrame()
    while time.monotonic() < deadline:
        rates = advert_rates(sample(cluster, window, window, namespace, group), instance)
        if _settled(rates, wanted):
            return rates
    seen = ", ".join(
        f"{r.node} {r.state} sends {r.adverts_per_s:.1f}/s, hears {r.received_per_s:.1f}/s" for r in rates.itertuples()
    )
    raise KalabError(
        f"keepalived did not settle on one MASTER advertising every {advert_int:g} s, heard by every BACKUP, within "
        f"{timeout:g} s ({seen or 'no adverts'}); check the operator's ConfigMap and the reloaders' logs."
    )
