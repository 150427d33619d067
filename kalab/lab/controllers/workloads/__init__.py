"""Workloads → pods: the DaemonSet, Deployment and ReplicaSet controllers and a tiny scheduler.

They behave as kube-controller-manager and kube-scheduler do where the seed can see it:
- A DaemonSet gets one pod per node that matches its template (nodeSelector, node affinity, taints vs tolerations),
  named `<ds>-xxxxx`, labelled with `controller-revision-hash` and `pod-template-generation`, owned by the DaemonSet,
  carrying the DaemonSet's default tolerations and pinned to its node by node affinity (`matchFields metadata.name`),
  exactly like the seed's keepalived pod. When admission rejects a pod (no SCC grant), a FailedCreate Warning event
  carries the API's message and creation is retried with backoff, so pods appear once the grant is made. A changed
  template rolls out node by node within `maxUnavailable` (delete, then create).
- A Deployment owns one ReplicaSet per template (`<deploy>-<pod-template-hash>`), which owns the pods
  (`<rs>-xxxxx`), as `oc get rs,pods` shows on a cluster; older ReplicaSets scale to zero once the new one is
  available (RollingUpdate) or at once (Recreate).
- The scheduler binds pods without `spec.nodeName` to a node that fits (selector, affinity, taints, cordon, free host
  ports), spreading a workload's pods over nodes deterministically, and says why when none fits.
"""

from kalab.lab.controllers.workloads.daemonsets import DaemonSetController, daemon_pod_spec, pinned_node
from kalab.lab.controllers.workloads.deployments import DeploymentController, ReplicaSetController
from kalab.lab.controllers.workloads.scheduler import Scheduler

__all__ = [
    "DaemonSetController",
    "DeploymentController",
    "ReplicaSetController",
    "Scheduler",
    "daemon_pod_spec",
    "pinned_node",
]
