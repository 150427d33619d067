"""Reading what the diagnoses look at: services, KeepalivedGroups, policy networks."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from kalab.cluster import keepalived
from kalab.cluster._common import as_dict, fail
from kalab.cluster.connect import Cluster
from kalab.model.errors import KalabError

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
GROUP_API = keepalived.GROUP  # redhatcop.redhat.io


def _joined(items: Iterable[Any], empty: str = "none") -> str:
    listed = [str(i) for i in items]
    return ", ".join(listed) if listed else empty


def _networks(texts: Iterable[Any]) -> list[Net]:
    nets: list[Net] = []
    for text in texts:
        try:
            nets.append(ipaddress.ip_network(str(text), strict=False))
        except ValueError:
            continue
    return nets


def _policy_nets(external_ip: Mapping[str, Any] | None, key: str) -> list[Net]:
    policy = (external_ip or {}).get("policy")
    return _networks((policy if isinstance(policy, Mapping) else {}).get(key) or [])


def _as_dict(cluster: Cluster, obj: Any) -> dict[str, Any]:
    return as_dict(cluster.api.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]


def _read_service(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    try:
        return _as_dict(cluster, cluster.core.read_namespaced_service(name, namespace))
    except ApiException as err:
        if err.status == 404:
            raise KalabError(
                f"There is no service {namespace}/{name} to diagnose; check the name with `oc get svc -n {namespace}`."
            ) from None
        raise fail(f"Reading service {namespace}/{name}", err, "check your access") from None


def _read_group(cluster: Cluster, name: str, namespace: str) -> dict[str, Any] | None:
    """The KeepalivedGroup as a dict; None when there is none (or the cluster does not serve the API)."""
    try:
        found = cluster.custom.get_namespaced_custom_object(
            GROUP_API, keepalived.VERSION, namespace, keepalived.PLURAL, name
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise fail(f"Reading KeepalivedGroup {namespace}/{name}", err, "check your access") from None
    return as_dict(found)
