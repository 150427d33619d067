"""Does a pod fit a node? nodeSelector, required node affinity, taints and tolerations, host ports: what the
scheduler checks and the DaemonSet controller uses to pick its nodes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from kalab.model import objects

UNSCHEDULABLE_TAINT: Final = "node.kubernetes.io/unschedulable"


def _requirement(values: Mapping[str, str], expr: Mapping[str, Any]) -> bool:
    key, op, wanted = str(expr.get("key") or ""), expr.get("operator"), [str(v) for v in expr.get("values") or []]
    present = key in values
    value = values.get(key, "")
    if op == "In":
        return present and value in wanted
    if op == "NotIn":
        return not present or value not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and wanted:
        try:
            left, right = int(value), int(wanted[0])
        except ValueError:
            return False
        return left > right if op == "Gt" else left < right
    return False


def _term_matches(node: Mapping[str, Any], term: Mapping[str, Any]) -> bool:
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term selects nothing, as in Kubernetes
    labels = objects.meta(node).get("labels") or {}
    node_fields = {"metadata.name": objects.name_of(node)}
    return all(_requirement(labels, e) for e in expressions) and all(_requirement(node_fields, f) for f in fields)


def affinity_terms(pod_spec: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return None
    return list(required.get("nodeSelectorTerms") or [])


def matches_node_selection(node: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> bool:
    """nodeSelector and required node affinity (any term matching) both hold for `node`."""
    labels = objects.meta(node).get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != str(value):
            return False
    terms = affinity_terms(pod_spec)
    return terms is None or any(_term_matches(node, term) for term in terms)


def node_taints(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The node's taints, plus the one a cordon (`spec.unschedulable`) implies."""
    taints = [dict(t) for t in objects.spec(node).get("taints") or []]
    if objects.spec(node).get("unschedulable") and not any(t.get("key") == UNSCHEDULABLE_TAINT for t in taints):
        taints.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"})
    return taints


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for toleration in tolerations:
        effect = toleration.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.get("key")
        if toleration.get("operator") == "Exists":
            if not key or key == taint.get("key"):
                return True
        elif key == taint.get("key") and str(toleration.get("value") or "") == str(taint.get("value") or ""):
            return True
    return False


def untolerated_taint(node: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> dict[str, Any] | None:
    tolerations = pod_spec.get("tolerations") or []
    for taint in node_taints(node):
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return taint
    return None


def fits(node: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> bool:
    return matches_node_selection(node, pod_spec) and untolerated_taint(node, pod_spec) is None


def host_ports(pod_spec: Mapping[str, Any]) -> set[tuple[int, str]]:
    """(port, protocol) the pod opens on its node: hostPorts, and every containerPort of a hostNetwork pod."""
    found = set()
    for container in pod_spec.get("containers") or []:
        for port in container.get("ports") or []:
            number = port.get("hostPort") or (port.get("containerPort") if pod_spec.get("hostNetwork") else None)
            if number:
                found.add((int(number), str(port.get("protocol") or "TCP")))
    return found
