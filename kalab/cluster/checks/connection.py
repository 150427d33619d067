"""Notebook 00: the cluster answers, its nodes are Ready, and it is OpenShift-like."""

from __future__ import annotations

import pandas as pd

from kalab.model.check import Check, failed, passed


def nodes_ready(node_table: pd.DataFrame) -> Check:
    name = "nodes Ready"
    if node_table.empty:
        return failed(name, "The cluster has no nodes", "the kubeconfig's user may not list nodes", "oc get nodes")
    not_ready = sorted(node_table[~node_table["ready"].astype(bool)]["name"])
    if not_ready:
        return failed(
            name,
            f"Not Ready: {', '.join(not_ready)}",
            "a node's kubelet stopped or lost its network",
            f"oc describe node {not_ready[0]}",
            "node-down",
        )
    return passed(name, f"{len(node_table)} nodes Ready: {', '.join(node_table['name'])}")


def openshift_like(serves_config: bool) -> Check:
    name = "OpenShift-like"
    if not serves_config:
        return failed(
            name,
            "The server does not serve config.openshift.io; this runbook needs OpenShift 4",
            "the kubeconfig points at a plain Kubernetes cluster",
            "oc api-versions | grep openshift",
        )
    return passed(name, "the server serves config.openshift.io")
