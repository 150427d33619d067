"""What the doctor reads once and its checks share: the annotated LoadBalancer services, the KeepalivedGroups
(what each group's checks read of its nodes and pods), and each group's VRRP states, node addresses and exporter
error counters, which several checks of its services look at."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from kalab.cluster import keepalived, network
from kalab.cluster._common import api_message, as_dict
from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose._reads import _as_dict, _read_service
from kalab.cluster.diagnose.catalog import CATALOG
from kalab.cluster.diagnose.verdicts import Verdict
from kalab.model import objects, operator


@dataclass
class GroupReads:
    """What the group checks read once: the group, its nodes, pods (raw and as a frame), VRRP states, addresses."""

    namespace: str
    name: str
    obj: dict[str, Any] | None = None
    matching: list[str] = field(default_factory=list)
    raw_pods: list[dict[str, Any]] = field(default_factory=list)
    pods: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=keepalived.POD_COLUMNS))
    not_ready: list[str] = field(default_factory=list)  # nodes of the group that are not Ready

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def spec(self) -> dict[str, Any]:
        return dict(objects.spec(self.obj))

    def containers(self) -> Iterable[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(pod, container status, its spec) for every container of the group's pods."""
        for pod in self.raw_pods:
            name = objects.name_of(pod)
            specs = {c.get("name"): c for c in objects.spec(pod).get("containers") or []}
            for status in objects.status(pod).get("containerStatuses") or []:
                yield name, status, specs.get(status.get("name")) or {}


class Evidence:
    """The reads of one doctor run; each check takes what it needs, and reads what is missing only once."""

    def __init__(self, cluster: Cluster, timeout: float) -> None:
        self.cluster, self.timeout = cluster, timeout
        self.services: list[dict[str, Any]] = []
        self.groups: dict[str, GroupReads] = {}
        # A group's VRRP states and node addresses, read once and shared by its services' checks.
        self.states: dict[str, pd.DataFrame] = {}
        self.addresses: dict[str, dict[str, pd.DataFrame]] = {}
        self.errors: dict[str, dict[tuple[str, str], tuple[float, float]]] = {}
        self._external_ip: dict[str, Any] | None = None

    def read_services(self, namespace: str | None, service: str | None) -> list[Verdict]:
        """The annotated LoadBalancer services to check (the one named, or all of `namespace` or the cluster).

        When they cannot be listed, returns a warn for each service check saying why; the cluster and group checks
        run all the same."""
        if service:
            self.services = [_read_service(self.cluster, namespace or "demo", service)]
            return []
        try:
            items = self.cluster.core.list_service_for_all_namespaces(_request_timeout=self.timeout).items
        except (ApiException, HTTPError, OSError) as err:
            why = api_message(err).rstrip(".") if isinstance(err, ApiException) else type(err).__name__
            seen = f"could not check: listing services failed ({why})"
            return [
                Verdict(fault.id, "warn", seen, seen, "", "services") for fault in CATALOG if fault.scope == "service"
            ]
        found = [_as_dict(self.cluster, item) for item in items]
        self.services = sorted(
            (
                s
                for s in found
                if objects.spec(s).get("type") == "LoadBalancer"
                and operator.GROUP_ANNOTATION in objects.annotations_of(s)
                and (namespace is None or objects.meta(s).get("namespace") == namespace)
            ),
            key=operator.namespaced_name,
        )
        return []

    def read_all_groups(self) -> None:
        """Every KeepalivedGroup, also those no service names yet (a second group can still take a node's ports)."""
        try:
            found = self.cluster.custom.list_cluster_custom_object(
                keepalived.GROUP, keepalived.VERSION, keepalived.PLURAL, _request_timeout=self.timeout
            )
        except (ApiException, HTTPError, OSError):
            return  # the groups the services name are checked all the same
        for obj in as_dict(found).get("items") or []:
            meta = objects.meta(obj)
            ref = f"{meta.get('namespace')}/{meta.get('name')}"
            self.groups.setdefault(ref, GroupReads(str(meta.get("namespace")), str(meta.get("name")), dict(obj)))

    def external(self) -> dict[str, Any] | None:
        """The network config's spec.externalIP (empty when it has none)."""
        if self._external_ip is None:
            self._external_ip = network.read_external_ip(self.cluster) or {}
        return self._external_ip
