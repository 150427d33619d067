"""The doctor's checks of each KeepalivedGroup and of the services' references to one: is the annotation a
<namespace>/<name> of a group that exists, and does the group get its keepalived pods (selected nodes, the SCC,
pulled images, the interface, free host ports, router IDs left, Ready nodes)."""

from __future__ import annotations

import re
from typing import Any

from kubernetes.client.exceptions import ApiException

from kalab.cluster import keepalived, nodes
from kalab.cluster._common import api_message
from kalab.cluster.diagnose._reads import _as_dict, _joined, _read_group
from kalab.cluster.diagnose.doctor_evidence import Evidence, GroupReads
from kalab.cluster.diagnose.keepalived_pods import (
    _ready,
    _scc_finding,
    _selector_finding,
    failed_create_finding,
    matching_nodes,
)
from kalab.cluster.diagnose.verdicts import Verdict, bad_verdict, from_findings, ok_verdict
from kalab.cluster.diagnose.vip import interface_finding
from kalab.model import objects, operator
from kalab.model.errors import KalabError

_REF = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
_INTERFACE_LOG = ("doesn't exist", "Non-existent interface")
_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")

# -- the services' group references ---------------------------------------------------------------------------


def group_ref(svc: dict[str, Any]) -> str:
    """The <namespace>/<name> a service's group annotation gives (not checked)."""
    return str(objects.annotations_of(svc).get(operator.GROUP_ANNOTATION, "")).strip()


def _service_fix(where: str) -> dict[str, str]:
    ns, name = where.split("/", 1)
    return {"service": name, "namespace": ns}


def annotation(svc: dict[str, Any]) -> Verdict:
    where, value = operator.namespaced_name(svc), group_ref(svc)
    fix = _service_fix(where)
    if not value:
        return bad_verdict("annotation-malformed", where, f"{where} has no {operator.GROUP_ANNOTATION} value", **fix)
    if not _REF.match(value):
        seen = f'{where} has {operator.GROUP_ANNOTATION}: "{value}", not <namespace>/<name>'
        return bad_verdict("annotation-malformed", where, seen, **fix)
    return ok_verdict("annotation-malformed", where, f"{operator.GROUP_ANNOTATION}: {value}")


def group_exists(ev: Evidence, svc: dict[str, Any]) -> Verdict:
    """group-missing for one service; registers the group it names, for the group checks."""
    where, value = operator.namespaced_name(svc), group_ref(svc)
    gns, gname = value.split("/", 1)
    obj = _read_group(ev.cluster, gname, gns)
    if obj is None:
        seen = f"{where} names KeepalivedGroup {value}, which does not exist"
        return bad_verdict("group-missing", where, seen, **_service_fix(where))
    ev.groups.setdefault(value, GroupReads(gns, gname, obj))
    return ok_verdict("group-missing", where, f"KeepalivedGroup {value} exists")


# -- each group -----------------------------------------------------------------------------------------------


def selector(ev: Evidence, group: GroupReads) -> Verdict:
    """no-loadbalancer-nodes; reads the group's nodes and pods for the checks after it."""
    wanted = {str(k): str(v) for k, v in (group.spec.get("nodeSelector") or {}).items()}
    table = nodes.nodes(ev.cluster)
    group.matching = matching_nodes(table, wanted)
    group.not_ready = sorted(str(n) for n in table[~table["ready"].astype(bool)]["name"] if n in group.matching)
    try:
        items = ev.cluster.core.list_namespaced_pod(
            group.namespace, label_selector=f"{operator.POD_GROUP_LABEL}={group.name}"
        ).items
    except ApiException as err:
        raise KalabError(f"Listing the keepalived pods failed ({api_message(err).rstrip('.')})") from None
    group.raw_pods = [_as_dict(ev.cluster, p) for p in items]
    group.pods = keepalived.keepalived_pods(ev.cluster, group.namespace, group.name)
    return from_findings("no-loadbalancer-nodes", group.ref, [_selector_finding(wanted, group.matching)])


def scc(ev: Evidence, group: GroupReads) -> Verdict:
    findings = [_scc_finding(ev.cluster, group.namespace)]
    short = len(group.pods) < len(group.matching)
    events = keepalived.daemonset_events(ev.cluster, group.namespace)
    findings.append(failed_create_finding(events, group.name, short))
    return from_findings("scc-missing", group.ref, findings, group_namespace=group.namespace)


def image_pull(group: GroupReads) -> Verdict:
    stuck = []
    for pod, status, spec in group.containers():
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _PULL_REASONS:
            stuck.append(f"{pod}/{status.get('name')} {waiting['reason']} ({spec.get('image') or status.get('image')})")
    fix = {"group": group.name, "group_namespace": group.namespace}
    if stuck:
        return bad_verdict("image-pull", group.ref, _joined(stuck), **fix)
    return ok_verdict("image-pull", group.ref, f"every image of {len(group.raw_pods)} keepalived pod(s) pulled")


def interface(ev: Evidence, group: GroupReads) -> Verdict:
    """The keepalived container's own words (its log) first, then `ip addr` on the nodes it runs on."""
    fix = {"group": group.name, "group_namespace": group.namespace}
    for pod, status, _ in group.containers():
        if status.get("name") != "keepalived" or status.get("ready"):
            continue
        for previous in (False, True):
            try:
                text = ev.cluster.core.read_namespaced_pod_log(
                    pod, group.namespace, container="keepalived", tail_lines=40, previous=previous
                )
            except ApiException:
                continue
            lines = [ln for ln in str(text).splitlines() if any(m in ln for m in _INTERFACE_LOG)]
            if lines:
                return bad_verdict("wrong-interface", group.ref, f"{pod} keepalived log: {lines[0].strip()}", **fix)
    ready = sorted(_ready(group.pods)["node"])
    addresses = {node: nodes.node_interfaces(ev.cluster, node, group.namespace) for node in ready}
    ev.addresses[group.ref] = addresses
    if not ready:
        return ok_verdict("wrong-interface", group.ref, "no keepalived container logs a missing interface")
    return from_findings("wrong-interface", group.ref, [interface_finding(group.spec, addresses)], **fix)


def ports(group: GroupReads) -> Verdict:
    pending = []
    for pod in group.raw_pods:
        for cond in objects.conditions_of(pod):
            message = str(cond.get("message") or "")
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and "free ports" in message:
                pending.append(f"{objects.name_of(pod)}: {message}")
    if pending:
        return bad_verdict("port-conflict", group.ref, _joined(pending))
    return ok_verdict("port-conflict", group.ref, "no keepalived pod waits for a free host port")


def router_ids(group: GroupReads) -> Verdict:
    bad = [
        f"{c.get('type')}: {c.get('message')}"
        for c in objects.conditions_of(group.obj)
        if c.get("type") == "ReconcileError" and re.search(r"allocate|router ID", str(c.get("message") or ""))
    ]
    if bad:
        return bad_verdict("router-ids-exhausted", group.ref, bad[0])
    held = len(objects.status(group.obj).get("routerIDs") or {})
    return ok_verdict("router-ids-exhausted", group.ref, f"{held} of 255 router IDs in use")


def node_down(group: GroupReads) -> Verdict:
    if group.not_ready:
        seen = f"loadbalancer node(s) {_joined(group.not_ready)} not Ready; endpoints there may still get traffic"
        return bad_verdict("node-down", group.ref, seen)
    return ok_verdict("node-down", group.ref, f"every node of the group is Ready ({_joined(group.matching, 'none')})")
