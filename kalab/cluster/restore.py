"""Leave the cluster as the runbook found it: the seed's "to restore", then the externalIP patch undone."""

from __future__ import annotations

from pathlib import Path

from kalab.cluster import demo, network
from kalab.cluster._common import Progress, report
from kalab.cluster.connect import Cluster


def restore(cluster: Cluster, journal: Path, namespace: str = "demo", progress: Progress = None) -> None:
    """Delete the demo (`oc delete -n demo -f demo.yaml`) and restore spec.externalIP from the undo journal.

    The operator, its KeepalivedGroup, the node labels and the SCC grant stay: the seed keeps them too, and other
    services may depend on them. Safe to repeat: with the journal already used, the network is left alone.
    """
    demo.cleanup_demo(cluster, namespace=namespace, progress=progress)
    if Path(journal).exists():
        network.undo_external_ip(cluster, journal, progress=progress)
    else:
        report(progress, f"no undo journal at {journal}: spec.externalIP was already restored, or never patched here")
