"""The runbook's verbs against any Kubernetes API: the lab's or a real OpenShift cluster's, through one code path."""

from kalab.cluster.connect import Cluster, connect

__all__ = ["Cluster", "connect"]
