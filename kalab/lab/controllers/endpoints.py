"""Endpoints for every Service with a selector: which pods back it, and on which port, as kube-controller-manager
keeps them.

A matching pod that is Running and Ready is an address; one that has an IP but is not ready (yet) is a
notReadyAddress (unless the service publishes not-ready addresses); finished or terminating pods are left out.
Each address carries the pod's node, which kube-proxy needs for externalTrafficPolicy Local. A named targetPort
(`targetPort: http`) is resolved per pod from its container ports, so pods that name the port differently end up
in different subsets, as in Kubernetes. Services without a selector keep whatever Endpoints their user wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.selectors import selector_from_match_labels
from kalab.lab.apiserver.store import Event, Obj
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller, object_key, split_key
from kalab.model import objects

PortTuple = tuple[tuple[str, int, str], ...]  # (name, port, protocol) per service port


def is_ready(pod: Mapping[str, Any]) -> bool:
    return objects.phase_of(pod) == "Running" and objects.pod_ready(pod)


def resolve_port(pod: Mapping[str, Any], target: Any, protocol: str) -> int | None:
    """A service port's targetPort on `pod`: a number as it is, a name looked up in the pod's container ports."""
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in objects.spec(pod).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def _pod_ports(pod: Mapping[str, Any], service_ports: list[Mapping[str, Any]]) -> PortTuple:
    found = []
    for port in service_ports:
        protocol = str(port.get("protocol") or "TCP")
        number = resolve_port(pod, port.get("targetPort", port.get("port")), protocol)
        if number is not None:
            found.append((str(port.get("name") or ""), number, protocol))
    return tuple(found)


def _address(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = objects.meta(pod)
    address: dict[str, Any] = {
        "ip": objects.status(pod).get("podIP"),
        "targetRef": {
            "kind": "Pod",
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
        },
    }
    node = objects.spec(pod).get("nodeName")
    if node:
        address["nodeName"] = node
    return address


def subsets(service: Mapping[str, Any], pods: list[Obj]) -> list[dict[str, Any]]:
    """The Endpoints subsets for `service` given the pods of its namespace (already filtered by selector)."""
    spec = objects.spec(service)
    service_ports = list(spec.get("ports") or [])
    publish_all = bool(spec.get("publishNotReadyAddresses"))
    grouped: dict[PortTuple, dict[str, list[dict[str, Any]]]] = {}
    for pod in pods:
        status = objects.status(pod)
        if not status.get("podIP") or pod["metadata"].get("deletionTimestamp"):
            continue
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        ports = _pod_ports(pod, service_ports)
        if service_ports and not ports:
            continue  # none of the service's ports exist on this pod
        bucket = grouped.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
        bucket["addresses" if publish_all or is_ready(pod) else "notReadyAddresses"].append(_address(pod))
    result = []
    for ports, bucket in sorted(grouped.items()):
        subset: dict[str, Any] = {}
        for field in ("addresses", "notReadyAddresses"):
            if bucket[field]:
                subset[field] = sorted(bucket[field], key=lambda a: tuple(int(p) for p in str(a["ip"]).split(".")))
        subset["ports"] = [
            {**({"name": name} if name else {}), "port": number, "protocol": protocol}
            for name, number, protocol in ports
        ]
        result.append(subset)
    return result


class EndpointsController(Controller):
    name = "endpoints"

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.watches["/services"] = object_key
        self.watches["/pods"] = self._pod_keys
        self.watches["/endpoints"] = self._endpoints_keys

    def _pod_keys(self, event: Event) -> list[str]:
        # A pod's labels may have changed, so it may have joined or left any service of its namespace.
        ns = objects.meta(event.object).get("namespace")
        if not ns:
            return []
        services, _ = self.ctx.store.list(self.ctx.rt("/services"), ns)
        return [f"{ns}/{s['metadata']['name']}" for s in services if objects.spec(s).get("selector")]

    @staticmethod
    def _endpoints_keys(event: Event) -> list[str]:
        # Someone else changed or removed a managed Endpoints object: put ours back.
        return object_key(event) if event.type != "ADDED" else []

    def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        store = self.ctx.store
        endpoints_rt = self.ctx.rt("/endpoints")
        service = store.try_get(self.ctx.rt("/services"), ns, name)
        current = store.try_get(endpoints_rt, ns, name)
        try:
            if service is None:
                if current is not None:
                    store.delete(endpoints_rt, ns, name)
                return None
            selector = objects.spec(service).get("selector")
            if not selector:
                return None  # user-managed Endpoints
            match = selector_from_match_labels(selector)
            pods = [p for p in store.list(self.ctx.rt("/pods"), ns)[0] if match(p)]
            wanted: Obj = {"metadata": {"name": name, "namespace": ns}}
            labels = service["metadata"].get("labels")
            if labels:
                wanted["metadata"]["labels"] = dict(labels)
            found = subsets(service, pods)
            if found:
                wanted["subsets"] = found
            if current is None:
                store.create(endpoints_rt, wanted, ns)
            elif current.get("subsets") != wanted.get("subsets") or current["metadata"].get("labels") != labels:
                current["metadata"]["labels"] = labels
                if not current["metadata"]["labels"]:
                    current["metadata"].pop("labels")
                current.pop("subsets", None)
                current.update({k: v for k, v in wanted.items() if k == "subsets"})
                store.update(endpoints_rt, current, ns)
        except ApiError as err:
            if err.code == 409:
                return 0.01  # raced with another writer (or the service's deletion): look again
            if err.code != 404:
                raise
        return None
