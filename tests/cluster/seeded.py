"""A lab brought to the seed's end state through kalab.cluster's verbs: operator, labels, SCC, CIDRs, demo, VIP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labs import running_lab

from kalab.cluster import demo, exporter, keepalived, network, nodes, olm, scc
from kalab.cluster.connect import Cluster, connect
from kalab.lab import control
from kalab.lab.dataplane.naming import POD_INTERFACE

KEEPALIVED_NS = "keepalived-operator"


@dataclass(frozen=True)
class SeededLab:
    info: control.LabInfo
    cluster: Cluster
    vip: str
    state_dir: Path


def seeded_lab(tag: str) -> Iterator[SeededLab]:
    """Start the lab t-seeded-`tag`, walk the seed through the verbs, yield it, and take it down."""
    with running_lab(f"t-seeded-{tag}") as info:
        state_dir = info.state_dir
        cluster = connect(str(info.kubeconfig))
        olm.install_operator(cluster, timeout=60)
        nodes.label_nodes(cluster, ["master-1", "master-2"])
        keepalived.apply_keepalived_group(cluster, interface=POD_INTERFACE)
        scc.grant_privileged(cluster, KEEPALIVED_NS)
        keepalived.wait_keepalived_pods(cluster, 2, timeout=30)
        network.patch_external_ip(cluster, "172.21.6.32/27", "172.21.6.32/27", journal=state_dir / "undo.json")
        demo.deploy_demo(cluster, timeout=60)
        vip = demo.service_vip(cluster, timeout=30)
        exporter.wait_for_master(cluster, timeout=30)  # keepalived carries the VIP: clients can reach it
        yield SeededLab(info, cluster, vip, state_dir)
