"""Where a VIP's packets go on a node: `iptables-save -t nat` read in a hostNetwork pod there, then traced."""

from __future__ import annotations

from kalab.cluster.connect import Cluster
from kalab.cluster.nodes import KEEPALIVED_NAMESPACE, host_network_pod
from kalab.cluster.pods import exec_in_pod
from kalab.model.errors import KalabError
from kalab.model.iptables import IptablesSave, Trace, parse_save, trace


def node_nat_table(cluster: Cluster, node: str, namespace: str = KEEPALIVED_NAMESPACE) -> IptablesSave:
    """The node's nat table, from `iptables-save -t nat` in its keepalived pod (privileged, hostNetwork)."""
    ns, pod = host_network_pod(cluster, node, namespace)
    result = exec_in_pod(cluster, ns, pod, ["iptables-save", "-t", "nat"], container="keepalived")
    if not result.ok:
        raise KalabError(
            f"`iptables-save -t nat` failed in {ns}/{pod} on {node} ({result.stderr.strip() or result.code}); "
            "the pod must be privileged with iptables in its image."
        )
    return parse_save(result.stdout)


def trace_vip(
    cluster: Cluster,
    node: str,
    vip: str,
    port: int = 80,
    protocol: str = "tcp",
    namespace: str = KEEPALIVED_NAMESPACE,
    start: str | None = None,
) -> Trace:
    """Follow a client's packet to vip:port through `node`'s nat table (KUBE-SERVICES → KUBE-SVC/FW → KUBE-SEP).

    `start` begins at another chain, e.g. the service's KUBE-FW-… chain that the seed shows.
    """
    return trace(node_nat_table(cluster, node, namespace), vip, port, protocol, start=start)
