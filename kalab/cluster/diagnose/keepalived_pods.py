"""No keepalived pods: no node carries the group's nodeSelector, the SCC refuses the DaemonSet, or the group or the
operator is missing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from kubernetes.client.exceptions import ApiException

from kalab.cluster import keepalived, nodes, scc
from kalab.cluster._common import as_dict, fail
from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose._reads import GROUP_API, _joined, _read_group
from kalab.cluster.diagnose.findings import NO_PODS, Finding, _ok, _problem
from kalab.cluster.olm import OLM_GROUP, OLM_VERSION
from kalab.model import manifests, objects


def _csvs(cluster: Cluster, namespace: str) -> dict[str, str]:
    """The keepalived operator's ClusterServiceVersions in `namespace` → their phase (with OLM's reason and message
    when it is not Succeeded, e.g. `Failed (UnsupportedOperatorGroup: OwnNamespace InstallModeType not supported…)`)."""
    try:
        found = as_dict(
            cluster.custom.list_namespaced_custom_object(OLM_GROUP, OLM_VERSION, namespace, "clusterserviceversions")
        )
    except ApiException as err:
        raise fail(f"Listing ClusterServiceVersions in {namespace}", err, "check your access") from None
    return {
        str(objects.name_of(c)): _phase_text(objects.status(c))
        for c in found.get("items") or []
        if str(objects.name_of(c)).startswith("keepalived-operator")
    }


def _phase_text(status: Mapping[str, Any]) -> str:
    phase = str(status.get("phase") or "without a phase")
    if phase == "Succeeded" or not status.get("reason"):
        return phase
    return f"{phase} ({status['reason']}: {status.get('message') or ''})"


def _operator_findings(cluster: Cluster, namespace: str) -> list[Finding]:
    groups, check = cluster.api_groups(), "operator installed"
    if GROUP_API not in groups:
        seen = f"the cluster does not serve {GROUP_API}, so there is no KeepalivedGroup API"
        return [_problem(NO_PODS, check, seen, "install the keepalived operator (notebook 01)")]
    served = _ok(NO_PODS, "KeepalivedGroup API", f"the cluster serves {GROUP_API}/{keepalived.VERSION}")
    if OLM_GROUP not in groups:
        return [served, _ok(NO_PODS, check, "the cluster has no OLM to ask; the operator's API is served")]
    phases = _csvs(cluster, namespace)
    done = [name for name, phase in phases.items() if phase == "Succeeded"]
    if done:
        return [served, _ok(NO_PODS, check, f"CSV {done[0]} Succeeded")]
    seen = _joined((f"CSV {n} {p}" for n, p in phases.items()), "no keepalived-operator CSV") + f" in {namespace}"
    return [served, _problem(NO_PODS, check, seen, f"install the operator (notebook 01); `oc get csv -n {namespace}`")]


def matching_nodes(node_table: pd.DataFrame, selector: Mapping[str, str]) -> list[str]:
    """Nodes whose labels satisfy the group's nodeSelector (every key with its value)."""
    pairs = zip(node_table["name"], node_table["labels"], strict=True)
    return sorted(str(name) for name, labels in pairs if all(labels.get(k) == v for k, v in selector.items()))


def _selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items()) or "(empty: every node)"


def _selector_finding(selector: Mapping[str, str], matching: Sequence[str]) -> Finding:
    check, wanted = "nodes match the nodeSelector", _selector_text(selector)
    if matching:
        return _ok(NO_PODS, check, f"{_joined(matching)} carry {wanted}")
    seen = f"no node carries {wanted}, so the DaemonSet schedules no pod"
    return _problem(NO_PODS, check, seen, f"label the loadbalancer nodes: oc label node <node> {wanted} (notebook 01)")


def _daemonset_finding(cluster: Cluster, name: str, namespace: str) -> Finding:
    check = "DaemonSet exists"
    try:
        status = cluster.apps.read_namespaced_daemon_set(name, namespace).status
    except ApiException as err:
        if err.status != 404:
            raise fail(f"Reading DaemonSet {namespace}/{name}", err, "check your access") from None
        seen, todo = f"the operator has made no DaemonSet {namespace}/{name}", "read the operator's log and events"
        return _problem(NO_PODS, check, seen, todo)
    desired, ready = (status.desired_number_scheduled, status.number_ready) if status else (0, 0)
    return _ok(NO_PODS, check, f"DaemonSet {name}: desired {desired or 0}, ready {ready or 0}")


def _scc_finding(cluster: Cluster, namespace: str) -> Finding:
    check, user = "privileged SCC", manifests.scc_user(namespace)
    if "security.openshift.io" not in cluster.api_groups():
        return _ok(NO_PODS, check, "the cluster has no SCCs, so none is needed")
    if scc.has_privileged(cluster, namespace):
        return _ok(NO_PODS, check, f"{user} may use SCC privileged")
    seen = f"{user} may not use SCC privileged, so the keepalived pods (hostNetwork, privileged) are refused"
    return _problem(NO_PODS, check, seen, f"oc adm policy add-scc-to-user privileged -z default -n {namespace}")


def failed_create_finding(events: pd.DataFrame, group: str, short: bool) -> Finding:
    """FailedCreate events of the group's DaemonSet matter while it is short of pods; older ones are history."""
    mine, check = events[events["object"] == f"DaemonSet/{group}"], "no FailedCreate events"
    if mine.empty:
        return _ok(NO_PODS, check, f"DaemonSet {group} has no FailedCreate events")
    if not short:
        return _ok(NO_PODS, check, f"{len(mine)} earlier FailedCreate event(s), but every pod exists now")
    seen = f"{len(mine)} FailedCreate event(s), the last: {str(mine['message'].iloc[-1]).rstrip('.')}"
    todo = "grant the privileged SCC (notebook 01) when the message names a security context constraint"
    return _problem(NO_PODS, check, seen, todo)


def _ready(pods: pd.DataFrame) -> pd.DataFrame:
    return pods[(pods["phase"] == "Running") & pods["ready"].astype(bool)]


def pods_finding(pods: pd.DataFrame, matching: Sequence[str]) -> Finding:
    """One Running and Ready keepalived pod on every node that matches the group's nodeSelector?"""
    check, ready = "keepalived pods Ready", _ready(pods)
    if pods.empty:
        todo = "fix the problems above (node labels, SCC, operator), then look at `oc get ds,pods` there"
        return _problem(NO_PODS, check, "the group has no keepalived pods", todo)
    waiting = pods[~pods["pod"].isin(ready["pod"])]
    not_ready = [
        f"{p} on {n} ({ph})" for p, n, ph in zip(waiting["pod"], waiting["node"], waiting["phase"], strict=True)
    ]
    missing = sorted(set(matching) - set(pods["node"]))
    if not not_ready and not missing:
        return _ok(NO_PODS, check, f"{len(ready)} Running and Ready on {_joined(sorted(ready['node']))}")
    parts = [f"not Ready: {_joined(not_ready)}"] if not_ready else []
    parts += [f"no pod on {_joined(missing)}"] if missing else []
    return _problem(NO_PODS, check, "; ".join(parts), "read `oc describe pod` and the keepalived container's log")


def failover_finding(pods: pd.DataFrame, selector: Mapping[str, str]) -> Finding:
    """A VIP can only fail over when keepalived runs on at least two nodes."""
    ready, check = sorted(_ready(pods)["node"]), "a second node for failover"
    if len(ready) >= 2:
        return _ok(NO_PODS, check, f"{len(ready)} nodes can carry the VIPs: {_joined(ready)}")
    seen = f"keepalived runs {'only on ' + _joined(ready) if ready else 'on no node'}, so a VIP cannot fail over"
    return _problem(NO_PODS, check, seen, f"label a second node with {_selector_text(selector)} (notebook 01)")


def diagnose_keepalived(
    cluster: Cluster, group: str = keepalived.DEFAULT_GROUP, namespace: str = keepalived.DEFAULT_NAMESPACE
) -> list[Finding]:
    """Why the group has (or lacks) keepalived pods: operator, group, node labels, DaemonSet, SCC, events, pods."""
    findings = _operator_findings(cluster, namespace)
    if not findings[0].ok:
        return findings
    obj = _read_group(cluster, group, namespace)
    if obj is None:
        seen = f"there is no KeepalivedGroup {namespace}/{group}"
        return [*findings, _problem(NO_PODS, "KeepalivedGroup exists", seen, "create it (notebook 01)")]
    spec = objects.spec(obj)
    selector = {str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()}
    from_ip = spec.get("interfaceFromIP")
    iface = f"interfaceFromIP {from_ip}" if from_ip else f"interface {spec.get('interface')}"
    seen = f"{namespace}/{group}: {iface}, nodeSelector {_selector_text(selector)}"
    matching = matching_nodes(nodes.nodes(cluster), selector)
    pods = keepalived.keepalived_pods(cluster, namespace, group)
    return [
        *findings,
        _ok(NO_PODS, "KeepalivedGroup exists", seen),
        _selector_finding(selector, matching),
        _daemonset_finding(cluster, group, namespace),
        _scc_finding(cluster, namespace),
        failed_create_finding(keepalived.daemonset_events(cluster, namespace), group, len(pods) < len(matching)),
        pods_finding(pods, matching),
        failover_finding(pods, selector),
    ]
