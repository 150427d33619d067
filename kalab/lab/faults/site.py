"""Where a fault is made: a running lab's API (as a user with kubectl) and its nodes (through the lab's entry)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kubernetes.client.exceptions import ApiException

from kalab.cluster import keepalived
from kalab.cluster._common import api_message
from kalab.cluster.connect import Cluster, connect
from kalab.lab.control import LabInfo
from kalab.lab.dataplane.topology import Topology, TopologySpec
from kalab.model.errors import KalabError
from kalab.model.operator import GROUP_ANNOTATION

GROUP_NAMESPACE = keepalived.DEFAULT_NAMESPACE
GROUP = keepalived.DEFAULT_GROUP
SERVICE_NAMESPACE, SERVICE = "demo", "demo"  # the seed's service, what the faults act on
NODE_TIMEOUT = 30.0


@dataclass
class FaultSite:
    """One running lab, reached as its users reach it."""

    info: LabInfo

    @cached_property
    def cluster(self) -> Cluster:
        if not self.info.ready or self.info.kubeconfig is None:
            raise KalabError(f"The lab {self.info.name} is not running; start it with `kalab lab up`.")
        return connect(str(self.info.kubeconfig))

    def node(self, node: str, argv: Sequence[str], check: bool = True) -> str:
        """Run `argv` on a lab node, as `kalab lab exec` (or `oc debug node/…`) would; its stdout."""
        topology = Topology(TopologySpec.seed())
        if node not in topology.node_names:
            raise KalabError(f'The lab has no node "{node}".')
        entry = self.info.entry()
        done = subprocess.run(
            entry.command(topology.node_ns(node), list(argv)),
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            check=False,
            env=entry.env(),
        )
        if check and done.returncode != 0:
            raise KalabError(f"`{' '.join(argv)}` failed on {node}: {done.stderr.strip() or done.returncode}.")
        return done.stdout

    def keepalived_nodes(self) -> list[str]:
        """The nodes that run the group's keepalived pods now."""
        found = sorted(str(n) for n in keepalived.keepalived_pods(self.cluster, GROUP_NAMESPACE, GROUP)["node"] if n)
        if not found:
            raise KalabError(
                f"No keepalived pod of {GROUP_NAMESPACE}/{GROUP} runs; bring the lab to the seed's end first "
                "(notebooks 01–03)."
            )
        return found

    def group(self) -> dict[str, Any]:
        try:
            found = self.cluster.custom.get_namespaced_custom_object(
                keepalived.GROUP, keepalived.VERSION, GROUP_NAMESPACE, keepalived.PLURAL, GROUP
            )
        except ApiException as err:
            raise KalabError(
                f"Reading KeepalivedGroup {GROUP_NAMESPACE}/{GROUP} failed ({api_message(err).rstrip('.')}); "
                "create it first (notebook 01)."
            ) from None
        return dict(json.loads(json.dumps(found)))

    def patch_group(self, body: dict[str, Any]) -> None:
        self.cluster.custom.patch_namespaced_custom_object(
            keepalived.GROUP, keepalived.VERSION, GROUP_NAMESPACE, keepalived.PLURAL, GROUP, body
        )

    def patch_network(self, external_ip: dict[str, Any]) -> None:
        """A JSON merge patch of network.config/cluster's spec.externalIP (None values remove keys)."""
        self.cluster.custom.patch_cluster_custom_object(
            "config.openshift.io", "v1", "networks", "cluster", {"spec": {"externalIP": external_ip}}
        )

    def annotation(self) -> str | None:
        """The seed service's group annotation."""
        try:
            svc = self.cluster.core.read_namespaced_service(SERVICE, SERVICE_NAMESPACE)
        except ApiException as err:
            raise KalabError(
                f"Reading service {SERVICE_NAMESPACE}/{SERVICE} failed ({api_message(err).rstrip('.')}); "
                "deploy the demo first (notebook 03)."
            ) from None
        value = ((svc.metadata.annotations if svc.metadata else None) or {}).get(GROUP_ANNOTATION)
        return None if value is None else str(value)

    def annotate(self, value: str | None) -> None:
        body = {"metadata": {"annotations": {GROUP_ANNOTATION: value}}}
        self.cluster.core.patch_namespaced_service(SERVICE, SERVICE_NAMESPACE, body)
