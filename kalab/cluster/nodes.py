"""Nodes: roles, addresses, readiness and labels; the loadbalancer role label; a node's real interfaces."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import fail
from kalab.cluster.connect import Cluster
from kalab.cluster.pods import exec_in_pod
from kalab.model.errors import KalabError

LOADBALANCER_LABEL = "node-role.kubernetes.io/loadbalancer"
ROLE_PREFIX = "node-role.kubernetes.io/"
KEEPALIVED_NAMESPACE = "keepalived-operator"


def nodes(cluster: Cluster) -> pd.DataFrame:
    """One row per node: name, roles, internal_ip, ready, labels (dict)."""
    try:
        items = cluster.core.list_node().items
    except ApiException as err:
        raise fail("Listing nodes", err, "use a kubeconfig whose user may list nodes (cluster-admin)") from None
    rows = []
    for node in items:
        labels = dict(node.metadata.labels or {}) if node.metadata else {}
        roles = sorted(k.removeprefix(ROLE_PREFIX) for k in labels if k.startswith(ROLE_PREFIX))
        addresses = (node.status.addresses if node.status else None) or []
        internal = next((a.address for a in addresses if a.type == "InternalIP"), None)
        conditions = (node.status.conditions if node.status else None) or []
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
        rows.append(
            {
                "name": node.metadata.name if node.metadata else None,
                "roles": ",".join(roles),
                "internal_ip": internal,
                "ready": ready,
                "labels": labels,
            }
        )
    return pd.DataFrame(rows, columns=["name", "roles", "internal_ip", "ready", "labels"])


def _check_nodes(cluster: Cluster, names: Iterable[str]) -> list[str]:
    wanted = list(names)
    known = set(nodes(cluster)["name"])
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise KalabError(
            f"Unknown node {', '.join(unknown)}; pick from {', '.join(sorted(known)) or 'no nodes'} (`oc get nodes`)."
        )
    return wanted


def label_nodes(cluster: Cluster, names: Iterable[str], label: str = LOADBALANCER_LABEL, value: str = "") -> list[str]:
    """`oc label node <n> <label>=<value>` for each node (idempotent); returns the nodes labelled."""
    return _patch_label(cluster, names, label, value)


def unlabel_nodes(cluster: Cluster, names: Iterable[str], label: str = LOADBALANCER_LABEL) -> list[str]:
    """`oc label node <n> <label>-` for each node (idempotent)."""
    return _patch_label(cluster, names, label, None)


def _patch_label(cluster: Cluster, names: Iterable[str], label: str, value: str | None) -> list[str]:
    done = []
    for name in _check_nodes(cluster, names):
        try:
            cluster.core.patch_node(name, {"metadata": {"labels": {label: value}}})
        except ApiException as err:
            raise fail(f"Labelling node {name}", err, "check the label is valid and you may patch nodes") from None
        done.append(name)
    return done


@dataclass(frozen=True)
class LabelChange:
    """What set_label_on did: nodes that got the label, nodes that lost it, and nodes that already had it."""

    added: list[str]
    removed: list[str]
    kept: list[str]

    def sentence(self, label: str = LOADBALANCER_LABEL) -> str:
        parts = [
            f"labelled {', '.join(self.added)}" if self.added else "",
            f"removed the label from {', '.join(self.removed)}" if self.removed else "",
            f"{', '.join(self.kept)} already labelled" if self.kept else "",
        ]
        return f"{label}: " + "; ".join(p for p in parts if p) if any(parts) else f"{label}: nothing to change"


def set_label_on(cluster: Cluster, names: Iterable[str], label: str = LOADBALANCER_LABEL) -> LabelChange:
    """Make exactly `names` carry `label`: label them, and unlabel every other node that has it.

    This is what a node picker means: deselecting a node takes the role away. At least one node must be chosen,
    since a KeepalivedGroup selecting no node runs no keepalived at all.
    """
    chosen = sorted(set(names))
    if not chosen:
        raise KalabError(f"Pick at least one node for {label}: with none, no keepalived runs and no VIP is carried.")
    table = nodes(cluster)
    have = sorted(str(n) for n, labels in zip(table["name"], table["labels"], strict=True) if label in (labels or {}))
    _check_nodes(cluster, chosen)
    added = label_nodes(cluster, [n for n in chosen if n not in have], label)
    removed = unlabel_nodes(cluster, [n for n in have if n not in chosen], label)
    return LabelChange(added, removed, [n for n in chosen if n in have])


def host_network_pod(cluster: Cluster, node: str, namespace: str = KEEPALIVED_NAMESPACE) -> tuple[str, str]:
    """(namespace, pod) of a Running hostNetwork pod on `node`, preferring the keepalived pods."""
    _check_nodes(cluster, [node])
    selector = f"spec.nodeName={node},status.phase=Running"
    try:
        pods = cluster.core.list_namespaced_pod(namespace, field_selector=selector).items
    except ApiException as err:
        raise fail(f"Listing pods on {node}", err, "check you may list pods") from None
    for pod in pods:
        if pod.spec and pod.spec.host_network and pod.metadata and pod.metadata.name:
            return namespace, pod.metadata.name
    raise KalabError(
        f"No running hostNetwork pod on {node} in {namespace} to look through; label the node "
        f"({LOADBALANCER_LABEL}) so a keepalived pod runs there (notebook 01)."
    )


def parse_ip_addr(text: str) -> pd.DataFrame:
    """`ip -j addr` output → one row per address: interface, state, mac, family, address, prefixlen."""
    try:
        links: list[dict[str, Any]] = json.loads(text or "[]")
    except ValueError:
        raise KalabError("The output of `ip -j addr` is not JSON; the node's iproute2 may be too old.") from None
    rows = []
    for link in links:
        base = {"interface": link.get("ifname"), "state": link.get("operstate"), "mac": link.get("address")}
        infos = link.get("addr_info") or []
        if not infos:
            rows.append({**base, "family": None, "address": None, "prefixlen": None})
        for info in infos:
            rows.append(
                {**base, "family": info.get("family"), "address": info.get("local"), "prefixlen": info.get("prefixlen")}
            )
    return pd.DataFrame(rows, columns=["interface", "state", "mac", "family", "address", "prefixlen"])


def node_interfaces(cluster: Cluster, node: str, namespace: str = KEEPALIVED_NAMESPACE) -> pd.DataFrame:
    """The node's interfaces and addresses, read with `ip -j addr` in a hostNetwork pod there (a keepalived pod)."""
    ns, pod = host_network_pod(cluster, node, namespace)
    result = exec_in_pod(cluster, ns, pod, ["ip", "-j", "addr"], container=_first_container(cluster, ns, pod))
    if not result.ok:
        raise KalabError(
            f"`ip -j addr` failed in {ns}/{pod} ({result.stderr.strip()}); check the pod's image has iproute2."
        )
    return parse_ip_addr(result.stdout)


def _first_container(cluster: Cluster, namespace: str, pod: str) -> str | None:
    found = cluster.core.read_namespaced_pod(pod, namespace)
    names = [c.name for c in (found.spec.containers if found.spec else [])]
    return "keepalived" if "keepalived" in names else (names[0] if names else None)
