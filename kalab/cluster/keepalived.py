"""The KeepalivedGroup: create or update it, read its status, and look at the DaemonSet's pods and events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import Progress, as_dict, fail, poll, report
from kalab.cluster.connect import Cluster
from kalab.model import manifests, objects
from kalab.model.errors import KalabError

GROUP, VERSION = manifests.KEEPALIVED_API.split("/")
PLURAL = "keepalivedgroups"
DEFAULT_GROUP = "keepalivedgroup-workers"
DEFAULT_NAMESPACE = "keepalived-operator"
POD_COLUMNS = ["pod", "node", "host_ip", "phase", "ready"]


def apply_keepalived_group(cluster: Cluster, progress: Progress = None, **kwargs: Any) -> dict[str, Any]:
    """Create the KeepalivedGroup that manifests.keepalived_group(**kwargs) renders, or update the existing spec."""
    obj = manifests.keepalived_group(**kwargs)
    name, namespace = objects.name_of(obj), objects.namespace_of(obj)
    try:
        created = as_dict(cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj))
        report(progress, f"created KeepalivedGroup {namespace}/{name}")
        return created
    except ApiException as err:
        if err.status == 404:
            raise KalabError(
                "The cluster does not serve KeepalivedGroups; install the operator first (notebook 01)."
            ) from None
        if err.status != 409:
            raise fail(f"Creating KeepalivedGroup {namespace}/{name}", err, "check the group's settings") from None
    try:
        existing = as_dict(cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
        if existing.get("spec") == obj["spec"]:
            report(progress, f"KeepalivedGroup {namespace}/{name} is already up to date")
            return existing
        existing["spec"] = obj["spec"]
        updated = as_dict(
            cluster.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, existing)
        )
    except ApiException as err:
        raise fail(f"Updating KeepalivedGroup {namespace}/{name}", err, "run it again") from None
    report(progress, f"updated KeepalivedGroup {namespace}/{name}")
    return updated


def group_status(cluster: Cluster, name: str = DEFAULT_GROUP, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
    """{"routerIDs": {instance: id}, "conditions": [...]} from the group's status."""
    try:
        obj = as_dict(cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
    except ApiException as err:
        if err.status == 404:
            raise KalabError(
                f"There is no KeepalivedGroup {namespace}/{name}; create it with apply_keepalived_group (notebook 01)."
            ) from None
        raise fail(f"Reading KeepalivedGroup {namespace}/{name}", err, "check your access") from None
    status = objects.status(obj)
    return {"routerIDs": dict(status.get("routerIDs") or {}), "conditions": list(status.get("conditions") or [])}


def keepalived_pods(cluster: Cluster, namespace: str = DEFAULT_NAMESPACE, group: str = DEFAULT_GROUP) -> pd.DataFrame:
    """The group's keepalived pods: pod, node, host_ip, phase, ready (sorted by node)."""
    try:
        items = cluster.core.list_namespaced_pod(namespace, label_selector=f"keepalivedGroup={group}").items
    except ApiException as err:
        raise fail(f"Listing keepalived pods in {namespace}", err, "check the namespace exists") from None
    rows = []
    for pod in items:
        status, spec = pod.status, pod.spec
        conditions = (status.conditions if status else None) or []
        rows.append(
            {
                "pod": pod.metadata.name if pod.metadata else None,
                "node": spec.node_name if spec else None,
                "host_ip": status.host_ip if status else None,
                "phase": status.phase if status else None,
                "ready": any(c.type == "Ready" and c.status == "True" for c in conditions),
            }
        )
    frame = pd.DataFrame(rows, columns=POD_COLUMNS)
    return frame.sort_values(["node", "pod"], ignore_index=True) if len(frame) else frame


def wait_keepalived_pods(
    cluster: Cluster,
    count: int,
    namespace: str = DEFAULT_NAMESPACE,
    group: str = DEFAULT_GROUP,
    timeout: float = 120,
    progress: Progress = None,
    on: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Wait until `count` keepalived pods are Running; their frame.

    With `on`, wait until they run on exactly those nodes and no other pod is left (a node that lost its label
    keeps its pod until the DaemonSet deletes it).
    """
    last: list[int] = [-1]

    def check() -> pd.DataFrame | None:
        pods = keepalived_pods(cluster, namespace, group)
        running = int((pods["phase"] == "Running").sum())
        if running != last[0]:
            last[0] = running
            report(progress, f"{running}/{count} keepalived pods Running")
        if on is not None:
            placed = sorted(str(n) for n in pods["node"]) == sorted(on)
            return pods if placed and running == len(pods) else None
        return pods if running >= count else None

    def timed_out() -> KalabError:
        events = daemonset_events(cluster, namespace)
        hint = (
            f" (FailedCreate: {events['message'].iloc[-1]}); grant the privileged SCC (grant_privileged)"
            if len(events)
            else "; label the nodes and check `oc get ds,pods -n " + namespace + "`"
        )
        return KalabError(f"Only {last[0]} of {count} keepalived pods are Running after {timeout:g} s{hint}.")

    result: pd.DataFrame = poll(check, timeout, timed_out)
    return result


def daemonset_events(
    cluster: Cluster, namespace: str = DEFAULT_NAMESPACE, reason: str = "FailedCreate"
) -> pd.DataFrame:
    """Events with `reason` (FailedCreate: the DaemonSet could not create pods) in the namespace: object, message…"""
    try:
        items = cluster.core.list_namespaced_event(namespace).items
    except ApiException as err:
        raise fail(f"Listing events in {namespace}", err, "check the namespace exists") from None
    rows = [
        {
            "object": f"{e.involved_object.kind}/{e.involved_object.name}",
            "reason": e.reason,
            "message": e.message,
            "count": e.count,
            "last_seen": e.last_timestamp or e.event_time,
        }
        for e in items
        if e.reason == reason
    ]
    return pd.DataFrame(rows, columns=["object", "reason", "message", "count", "last_seen"])


def wait_failed_create(cluster: Cluster, namespace: str = DEFAULT_NAMESPACE, timeout: float = 30.0) -> pd.DataFrame:
    """Wait until the DaemonSet records FailedCreate events (pods refused, e.g. by SCC admission) and return them."""

    def timed_out() -> KalabError:
        return KalabError(f"No FailedCreate events within {timeout:g} s; see `oc get events -n {namespace}`.")

    def check() -> pd.DataFrame | None:
        events = daemonset_events(cluster, namespace)
        return None if events.empty else events

    result: pd.DataFrame = poll(check, timeout, timed_out)
    return result
