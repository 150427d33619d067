"""kube-proxy for the lab: every node's nat table follows the Services and Endpoints in the store.

Like kube-proxy it works on the whole picture, not per object: any change to a service or an endpoints object
schedules one sync a moment later (DEBOUNCE), so a burst of writes — a deployment creating a service, its
endpoints filling in, an external IP being assigned — becomes one `iptables-restore` per node. A sync with the
same services as the last successful one is skipped. Without a data plane (ctx.topology None) it does nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from kalab.lab.apiserver.store import Event, Obj
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller
from kalab.lab.dataplane.kubeproxy import program_all
from kalab.model import objects
from kalab.model.errors import KalabError
from kalab.model.kubeproxy import Endpoint, ServicePort

_log = logging.getLogger(__name__)
DEBOUNCE = 0.05
SYNC_KEY = "sync"


def _endpoints_for(port: Mapping[str, Any], endpoints: Obj | None) -> list[Endpoint]:
    """Ready addresses of the endpoints subsets that carry this service port (matched by name and protocol)."""
    name, protocol = port.get("name") or "", port.get("protocol") or "TCP"
    found: list[Endpoint] = []
    for subset in (endpoints or {}).get("subsets") or []:
        for ep_port in subset.get("ports") or []:
            if (ep_port.get("name") or "") != name or (ep_port.get("protocol") or "TCP") != protocol:
                continue
            for address in subset.get("addresses") or []:
                if address.get("ip"):
                    found.append(Endpoint(str(address["ip"]), int(ep_port["port"]), address.get("nodeName")))
    return found


def service_ports(service: Mapping[str, Any], endpoints: Obj | None) -> list[ServicePort]:
    """What kube-proxy programs for one service; ports the model refuses (e.g. IPv6) are logged and skipped."""
    meta, spec = objects.meta(service), objects.spec(service)
    cluster_ip = spec.get("clusterIP")
    if spec.get("type") == "ExternalName" or not cluster_ip or cluster_ip == "None":
        return []  # no virtual IP, nothing to program (headless services are plain DNS)
    ingress = (objects.status(service).get("loadBalancer") or {}).get("ingress") or []
    found: list[ServicePort] = []
    for port in spec.get("ports") or []:
        target = port.get("targetPort")
        try:
            found.append(
                ServicePort(
                    namespace=str(meta.get("namespace")),
                    name=str(meta.get("name")),
                    port_name=str(port.get("name") or ""),
                    port=int(port["port"]),
                    protocol=str(port.get("protocol") or "TCP"),
                    cluster_ip=str(cluster_ip),
                    target_port=target if isinstance(target, int) else None,
                    node_port=port.get("nodePort") or None,
                    external_ips=tuple(str(ip) for ip in spec.get("externalIPs") or []),
                    load_balancer_ips=tuple(str(i["ip"]) for i in ingress if i.get("ip")),
                    endpoints=_endpoints_for(port, endpoints),
                    external_traffic_policy=str(spec.get("externalTrafficPolicy") or "Cluster"),
                )
            )
        except (KalabError, KeyError, TypeError, ValueError) as err:
            _log.warning("kube-proxy skips %s/%s port %s: %s", meta.get("namespace"), meta.get("name"), port, err)
    return found


def all_service_ports(services: Iterable[Obj], endpoints: Iterable[Obj]) -> list[ServicePort]:
    """Every service port of the cluster; a port listed twice (same name and protocol) counts once, because
    kube-proxy would refuse the whole table otherwise."""
    by_name = {(e["metadata"].get("namespace"), objects.name_of(e)): e for e in endpoints}
    ports: dict[tuple[str, str], ServicePort] = {}
    for service in services:
        meta = service["metadata"]
        for port in service_ports(service, by_name.get((meta.get("namespace"), meta["name"]))):
            ports.setdefault((port.service_port_name, port.proto), port)
    return list(ports.values())


class KubeProxyController(Controller):
    name = "kube-proxy"

    def __init__(self, ctx: LabContext, debounce: float = DEBOUNCE) -> None:
        super().__init__(ctx)
        self.debounce = debounce
        self.syncs = 0  # how many times the nodes were programmed (for tests and status)
        self._lock = threading.Lock()
        self._scheduled = False
        self._last: list[ServicePort] | None = None
        self.watches["/services"] = self._schedule
        self.watches["/endpoints"] = self._schedule

    def _schedule(self, event: Event) -> list[str]:
        # Returns no key: the sync is queued here, once per burst, DEBOUNCE seconds after its first event.
        with self._lock:
            if not self._scheduled:
                self._scheduled = True
                self.enqueue(SYNC_KEY, after=self.debounce)
        return []

    def initial_keys(self) -> Iterable[str]:
        return [SYNC_KEY]  # one sync of whatever is there (an empty table when nothing is)

    def reconcile(self, key: str) -> float | None:
        with self._lock:
            # Cleared before reading the store: a change from now on schedules another sync.
            self._scheduled = False
        topology = self.ctx.topology
        if topology is None:
            return None
        store = self.ctx.store
        # Every service and endpoint on every pass: read shared, not copied (all_service_ports only reads them).
        services, endpoints = store.shared_list(self.ctx.rt("/services")), store.shared_list(self.ctx.rt("/endpoints"))
        ports = all_service_ports(services, endpoints)
        if ports == self._last:
            return None
        program_all(topology, ports)  # a failure raises, and the base controller retries with backoff
        self._last = ports
        self.syncs += 1
        return None
