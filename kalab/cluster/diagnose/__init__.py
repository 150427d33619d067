"""Troubleshooting: the four symptoms users of the keepalived operator meet, each checked against the cluster.

- EXTERNAL-IP pending: the service has no address (no autoAssignCIDRs, a requested externalIP the policy refuses,
  or the block is exhausted).
- no keepalived pods: no node carries the group's nodeSelector, the DaemonSet is refused for want of the privileged
  SCC (FailedCreate), or the group or the operator is missing.
- VIP on two nodes: two keepalived instances are MASTER for one service (split brain: the VRRP adverts do not reach
  the peer), or a keepalived that died left its address behind.
- VIP nowhere: no MASTER, because the service lacks the group annotation, the pods are not Ready or the group's
  interface does not exist on the nodes.

The troubleshooting catalog (catalog.py: the failures users really hit, by stable id) is what `doctor()` checks:
one `Verdict` (ok, warn or fail, evidence, the fix as a command) per id for the cluster, each KeepalivedGroup and
each annotated LoadBalancer service, built from the findings below.

Every diagnosis returns `Finding`s (symptom, check, ok/problem, the evidence seen, what to do); `table` makes them a
DataFrame. The scratch helpers reproduce symptoms safely in a namespace of their own and delete it again.
"""

from __future__ import annotations

from kalab.cluster import keepalived
from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose.catalog import CATALOG, FAULTS, Fault
from kalab.cluster.diagnose.doctor import doctor
from kalab.cluster.diagnose.external_ip import (
    ServiceAttempt,
    assigned_finding,
    auto_block,
    block_finding,
    diagnose_external_ip,
    policy_finding,
    policy_refusal,
    usable_count,
    usage_finding,
)
from kalab.cluster.diagnose.findings import (
    COLUMNS,
    NO_PODS,
    NOWHERE,
    PENDING,
    SYMPTOMS,
    TWO_NODES,
    Finding,
    Status,
    all_ok,
    expect_problem,
    problems,
    table,
)
from kalab.cluster.diagnose.keepalived_pods import (
    diagnose_keepalived,
    failed_create_finding,
    failover_finding,
    matching_nodes,
    pods_finding,
)
from kalab.cluster.diagnose.scratch import (
    SCRATCH_LABEL,
    SCRATCH_NAMESPACE,
    SCRATCH_VALUE,
    create_scratch_namespace,
    create_scratch_service,
    delete_scratch_namespace,
    namespace_phase,
    scratch_service,
)
from kalab.cluster.diagnose.verdicts import Verdict, failing
from kalab.cluster.diagnose.vip import (
    SETTLING,
    SPLIT_BRAIN_TODO,
    annotation_finding,
    diagnose_vip,
    interface_finding,
    placement_findings,
    router_id_finding,
)

__all__ = [
    "CATALOG",
    "COLUMNS",
    "FAULTS",
    "NOWHERE",
    "NO_PODS",
    "PENDING",
    "SCRATCH_LABEL",
    "SCRATCH_NAMESPACE",
    "SCRATCH_VALUE",
    "SETTLING",
    "SPLIT_BRAIN_TODO",
    "SYMPTOMS",
    "TWO_NODES",
    "Fault",
    "Finding",
    "ServiceAttempt",
    "Status",
    "Verdict",
    "all_ok",
    "annotation_finding",
    "assigned_finding",
    "auto_block",
    "block_finding",
    "create_scratch_namespace",
    "create_scratch_service",
    "delete_scratch_namespace",
    "diagnose",
    "diagnose_external_ip",
    "diagnose_keepalived",
    "diagnose_vip",
    "doctor",
    "expect_problem",
    "failed_create_finding",
    "failing",
    "failover_finding",
    "interface_finding",
    "matching_nodes",
    "namespace_phase",
    "placement_findings",
    "pods_finding",
    "policy_finding",
    "policy_refusal",
    "problems",
    "router_id_finding",
    "scratch_service",
    "table",
    "usable_count",
    "usage_finding",
]


def diagnose(
    cluster: Cluster,
    namespace: str = "demo",
    name: str = "demo",
    group: str = keepalived.DEFAULT_GROUP,
    group_namespace: str = keepalived.DEFAULT_NAMESPACE,
    settle: float = 15,
) -> list[Finding]:
    """All three diagnoses for one service: its EXTERNAL-IP, the group's keepalived pods, where the VIP is."""
    return [
        *diagnose_external_ip(cluster, namespace, name),
        *diagnose_keepalived(cluster, group, group_namespace),
        *diagnose_vip(cluster, namespace, name, group, group_namespace, settle),
    ]
