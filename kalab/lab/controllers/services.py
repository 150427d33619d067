"""Services as kube-apiserver and OpenShift shape them: defaults, cluster IPs, node ports and external IPs.

Admission (`install_service_admission`) does what the API server does when a Service is written, after the
built-in defaults (type, protocols, target ports, traffic policies: kalab.lab.apiserver.defaults): check the ports,
allocate `spec.clusterIP` from the network config's service network (172.30.0.0/16)
and node ports from 30000–32767, keeping what an update leaves out; refuse addresses and ports already taken; and
enforce `spec.externalIP.policy` of `networks.config.openshift.io/cluster` on external IPs a user asks for.

`ExternalIPController` is OpenShift's auto-assignment: every LoadBalancer service gets the first free address of
`spec.externalIP.autoAssignCIDRs`, written to `spec.externalIPs` and to `status.loadBalancer.ingress` (hence
`oc get svc` showing `172.21.6.33,172.21.6.33`). The seed's service got .50 because of that cluster's history; a
fresh lab hands out .33 first (172.21.6.33/27 names the block 172.21.6.32/27, whose first usable address is .33).
Changing the block in the network config moves services whose address left it; without a block they stay pending.

The ranges both draw from, and how a free address or port is picked, are pure functions in service_ranges.py.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kalab.lab.apiserver.errors import ApiError, invalid
from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.store import Event, Obj, Operation, Store
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller, object_key, split_key
from kalab.lab.controllers.service_ranges import (
    NODE_PORT_MAX,
    NODE_PORT_MIN,
    ExternalIPPolicy,
    auto_assign_block,
    first_free,
    pick_cluster_ip,
    pick_node_port,
    service_network,
)
from kalab.model import objects

TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
POLICIES = ("Cluster", "Local")
NETWORKS_KEY = "config.openshift.io/networks"
RESERVATION_SECONDS = 30.0  # an allocation whose create never lands is released after this


# ---------------------------------------------------------------------------------------- reading the objects


def network_config(store: Store) -> Obj | None:
    return store.try_get(store.registry.by_key(NETWORKS_KEY), None, "cluster")


def _ingress_ips(svc: Mapping[str, Any]) -> list[str]:
    ingress = ((objects.status(svc).get("loadBalancer") or {}).get("ingress")) or []
    return [str(i["ip"]) for i in ingress if isinstance(i, Mapping) and i.get("ip")]


def _inside(ip: str, block: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.ip_address(ip) in block
    except ValueError:
        return False  # not an address at all: never one of ours


def _holds(svc: Mapping[str, Any]) -> set[str]:
    """Every external address a service uses: requested ones and load-balancer ingress."""
    return {str(ip) for ip in objects.spec(svc).get("externalIPs") or []} | set(_ingress_ips(svc))


def _type(svc: Mapping[str, Any]) -> str:
    return str(objects.spec(svc).get("type") or "ClusterIP")


def _ident(svc: Mapping[str, Any]) -> tuple[str, str]:
    meta = objects.meta(svc)
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


# ---------------------------------------------------------------------------------------- admission


@dataclass(frozen=True)
class Allocated:
    """What a service holds of the shared ranges: its cluster IP and its node ports (health check port included)."""

    cluster_ip: str
    node_ports: frozenset[int]


def _allocated(svc: Mapping[str, Any]) -> Allocated:
    spec = objects.spec(svc)
    ports = {int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort")}
    if spec.get("healthCheckNodePort"):
        ports.add(int(spec["healthCheckNodePort"]))
    return Allocated(str(spec.get("clusterIP")), frozenset(ports))


class ServiceAdmission:
    """The admission hook; holds short-lived reservations so two creates at once never get the same address."""

    def __init__(self, ctx: LabContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        # address or port → (until when, which service): recent allocations whose create may still be on its way
        self._ips: dict[str, tuple[float, str]] = {}
        self._ports: dict[int, tuple[float, str]] = {}

    def __call__(self, op: Operation, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        # DELETE hooks run under the store's lock, so nothing here may touch the store for them.
        if op == "DELETE" or rt.key != "/services":
            return
        with self._lock:
            self._admit(obj, old)

    @staticmethod
    def _reserved(table: dict[Any, tuple[float, str]], owner: str) -> set[Any]:
        """What other services were given moments ago; expired reservations are dropped."""
        now = time.monotonic()
        for key in [k for k, (until, _) in table.items() if until < now]:
            del table[key]
        return {k for k, (_, holder) in table.items() if holder != owner}

    @staticmethod
    def _reserve(table: dict[Any, tuple[float, str]], key: Any, owner: str) -> None:
        table[key] = (time.monotonic() + RESERVATION_SECONDS, owner)

    def _admit(self, svc: Obj, old: Obj | None) -> None:
        config = network_config(self.ctx.store)
        spec = svc.setdefault("spec", {})
        ns, name = _ident(svc)
        owner = f"{ns}/{name}"
        kind = spec.get("type") or "ClusterIP"
        if kind not in TYPES:
            supported = ", ".join(f'"{t}"' for t in TYPES)
            raise invalid("Service", name, f'spec.type: Unsupported value: "{kind}": supported values: {supported}')
        me = _ident(svc)
        others = self.ctx.store.collect(self.ctx.rt("/services"), lambda s: None if _ident(s) == me else _allocated(s))
        self._check_ports(name, spec, kind)
        self._cluster_ip(owner, name, spec, old, config, others)
        self._node_ports(owner, name, spec, old, others)
        self._external_ips(name, svc, old, config)
        if old is None and kind == "LoadBalancer":
            svc.setdefault("status", {}).setdefault("loadBalancer", {})

    @staticmethod
    def _check_ports(name: str, spec: dict[str, Any], kind: str) -> None:
        ports = spec.get("ports") or []
        if kind != "ExternalName" and not ports:
            raise invalid("Service", name, "spec.ports: Required value")
        for index, port in enumerate(ports):
            number = port.get("port")
            if not isinstance(number, int) or not 0 < number < 65536:
                raise invalid(
                    "Service",
                    name,
                    f"spec.ports[{index}].port: Invalid value: {number}: must be between 1 and 65535, inclusive",
                )
            if len(ports) > 1 and not port.get("name"):
                raise invalid("Service", name, f"spec.ports[{index}].name: Required value")
        if kind in ("NodePort", "LoadBalancer"):
            policy = spec.get("externalTrafficPolicy", "Cluster")
            if policy not in POLICIES:
                raise invalid(
                    "Service",
                    name,
                    f'spec.externalTrafficPolicy: Unsupported value: "{policy}": supported values: "Cluster", "Local"',
                )

    def _cluster_ip(
        self,
        owner: str,
        name: str,
        spec: dict[str, Any],
        old: Obj | None,
        config: Obj | None,
        others: Sequence[Allocated],
    ) -> None:
        if spec["type"] == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return
        previous = objects.spec(old).get("clusterIP")
        wanted = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
        if previous:
            # Updates keep the address (an update that leaves it out keeps it too); it can never change.
            if wanted and wanted != previous:
                raise invalid(
                    "Service", name, f'spec.clusterIPs[0]: Invalid value: "{wanted}": may not change once set'
                )
            spec["clusterIP"], spec["clusterIPs"] = previous, [previous]
            return
        if wanted == "None":  # headless
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            return
        network = service_network(config)
        used = {a.cluster_ip for a in others} | self._reserved(self._ips, owner)
        if wanted:
            problem = None
            try:
                in_range = ipaddress.ip_address(wanted) in network
            except ValueError:
                in_range = False
            if not in_range:
                problem = f"the provided IP ({wanted}) is not in the valid range. The range of valid IPs is {network}"
            elif wanted in used:
                problem = "provided IP is already allocated"
            if problem:
                value = f'[]string{{"{wanted}"}}'
                message = f"spec.clusterIPs: Invalid value: {value}: failed to allocate IP {wanted}: {problem}"
                raise invalid("Service", name, message)
            chosen = str(wanted)
        else:
            picked = pick_cluster_ip(network, used, owner)
            if picked is None:
                raise invalid("Service", name, f"spec.clusterIPs: Internal error: range is full ({network})")
            chosen = picked
        self._reserve(self._ips, chosen, owner)
        spec["clusterIP"], spec["clusterIPs"] = chosen, [chosen]

    def _node_ports(
        self, owner: str, name: str, spec: dict[str, Any], old: Obj | None, others: Sequence[Allocated]
    ) -> None:
        kind = spec["type"]
        ports: list[dict[str, Any]] = spec.get("ports") or []
        if kind not in ("NodePort", "LoadBalancer"):
            for port in ports:
                port.pop("nodePort", None)
            spec.pop("healthCheckNodePort", None)
            return
        used: set[int] = set(self._reserved(self._ports, owner))
        for other in others:
            used |= other.node_ports
        old_spec = objects.spec(old)
        old_ports = old_spec.get("ports") or []
        taken: dict[tuple[int, str], int] = {}
        for index, port in enumerate(ports):
            if not port.get("nodePort"):
                port["nodePort"] = self._previous_node_port(port, old_ports)
            number = port.get("nodePort")
            field = f"spec.ports[{index}].nodePort"
            if number:
                if not isinstance(number, int) or not NODE_PORT_MIN <= number <= NODE_PORT_MAX:
                    raise invalid(
                        "Service",
                        name,
                        f"{field}: Invalid value: {number}: provided port is not in the valid range. "
                        f"The range of valid ports is {NODE_PORT_MIN}-{NODE_PORT_MAX}",
                    )
                if (number, port["protocol"]) in taken:
                    raise invalid("Service", name, f"{field}: Duplicate value: {number}")
                if number in used and number not in {p for p, _ in taken}:
                    raise invalid(
                        "Service", name, f"{field}: Invalid value: {number}: provided port is already allocated"
                    )
            else:
                number = pick_node_port(used | {p for p, _ in taken}, f"{owner}:{port.get('name')}/{port['port']}")
                if number is None:
                    raise invalid("Service", name, f"{field}: Internal error: range is full")
                port["nodePort"] = number
                self._reserve(self._ports, number, owner)
            taken[(number, port["protocol"])] = index
        if kind == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local":
            # A Local load balancer's health check (what keepalived's vrrp_script curls) needs its own node port.
            number = spec.get("healthCheckNodePort") or old_spec.get("healthCheckNodePort")
            if not number:
                number = pick_node_port(used | {p for p, _ in taken}, f"{owner}:health")
                if number is None:
                    raise invalid("Service", name, "spec.healthCheckNodePort: Internal error: range is full")
                self._reserve(self._ports, number, owner)
            elif number != old_spec.get("healthCheckNodePort") and (number in used or number in {p for p, _ in taken}):
                raise invalid(
                    "Service",
                    name,
                    f"spec.healthCheckNodePort: Invalid value: {number}: provided port is already allocated",
                )
            spec["healthCheckNodePort"] = number
        else:
            spec.pop("healthCheckNodePort", None)

    @staticmethod
    def _previous_node_port(port: Mapping[str, Any], old_ports: Iterable[Mapping[str, Any]]) -> int | None:
        """The node port the same port (by name, else by number; same protocol) had before the update."""
        olds = [o for o in old_ports if o.get("nodePort") and o.get("protocol", "TCP") == port.get("protocol")]
        for field in ("name", "port"):
            for candidate in olds:
                if candidate.get(field) == port.get(field):
                    return int(candidate["nodePort"])
        return None

    @staticmethod
    def _external_ips(name: str, svc: Obj, old: Obj | None, config: Obj | None) -> None:
        spec = svc["spec"]
        requested = spec.get("externalIPs") or []
        before = set(objects.spec(old).get("externalIPs") or [])
        block = auto_assign_block(config)
        policy = ExternalIPPolicy.of(config)
        problems: list[str] = []
        for index, text in enumerate(requested):
            field = f'spec.externalIPs[{index}]: Invalid value: "{text}"'
            try:
                ip = ipaddress.IPv4Address(str(text))
            except ValueError:
                problems.append(f"{field}: must be a valid IPv4 address")
                continue
            if text in before:
                continue  # already accepted; only what a write adds is checked
            if spec["type"] == "LoadBalancer" and block is not None and ip in block:
                continue  # auto-assigned addresses are not subject to the policy
            if reason := policy.refusal(ip):
                problems.append(f"{field}: externalIP is not allowed: {reason}")
        if problems:
            raise invalid("Service", name, ", ".join(problems))


def install_service_admission(ctx: LabContext) -> ServiceAdmission:
    hook = ServiceAdmission(ctx)
    ctx.store.add_admission(hook)
    return hook


# ---------------------------------------------------------------------------------------- auto-assignment


class ExternalIPController(Controller):
    """Gives LoadBalancer services an address from autoAssignCIDRs, follows changes of the block."""

    name = "externalip"

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.watches["/services"] = self._service_keys
        self.watches[NETWORKS_KEY] = self._network_keys

    def _services(self) -> list[Obj]:
        return self.ctx.store.list(self.ctx.rt("/services"))[0]

    def _pending_keys(self) -> list[str]:
        # Runs for every service event, inside the writer's request: read without copying every service.
        def pending(svc: Obj) -> str | None:
            ns, name = _ident(svc)
            return f"{ns}/{name}" if _type(svc) == "LoadBalancer" and not _ingress_ips(svc) else None

        return self.ctx.store.collect(self.ctx.rt("/services"), pending)

    def _service_keys(self, event: Event) -> list[str]:
        keys = object_key(event)
        if event.type == "DELETED" or _type(event.object) != "LoadBalancer":
            keys += self._pending_keys()  # an address may have been released: retry those still waiting
        return keys

    def _network_keys(self, event: Event) -> list[str]:
        if objects.meta(event.object).get("name") != "cluster":
            return []
        return [
            f"{ns}/{n}"
            for s in self._services()
            if _type(s) == "LoadBalancer" or _ingress_ips(s)
            for ns, n in [_ident(s)]
        ]

    def reconcile(self, key: str) -> float | None:
        try:
            self._sync(key)
        except ApiError as err:
            if err.code == 404:
                return None
            if err.code == 409:
                return 0.01  # someone wrote the service meanwhile: read it again
            raise
        return None

    def _sync(self, key: str) -> None:
        ns, name = split_key(key)
        store, rt = self.ctx.store, self.ctx.rt("/services")
        svc = store.try_get(rt, ns, name)
        if svc is None:
            return
        block = auto_assign_block(network_config(store))
        assigned = _ingress_ips(svc)
        is_lb = _type(svc) == "LoadBalancer"
        keep = [ip for ip in assigned if is_lb and block is not None and _inside(ip, block)][:1]
        stale = [ip for ip in assigned if ip not in keep]
        if is_lb and block is not None and not keep:
            picked = first_free(block, self._used(svc, stale))
            if picked is None:
                # OpenShift's ingress IP controller's own words (FACTS.md §10).
                message = f"No available ingress ip to allocate to service {ns}/{name}"
                self.ctx.record_event(svc, "IngressIPRangeFull", message, "Warning")
            else:
                keep = [picked]
        if keep != assigned:
            status = svc.setdefault("status", {})
            balancer = status.setdefault("loadBalancer", {})
            if keep:
                balancer["ingress"] = [{"ip": ip} for ip in keep]
            else:
                balancer.pop("ingress", None)
            svc = store.update(rt, svc, ns, subresource="status")
        external = list(svc["spec"].get("externalIPs") or [])
        wanted = [ip for ip in external if ip not in stale] + [ip for ip in keep if ip not in external]
        if wanted != external:
            if wanted:
                svc["spec"]["externalIPs"] = wanted
            else:
                svc["spec"].pop("externalIPs", None)
            store.update(rt, svc, ns)

    def _used(self, svc: Obj, releasing: Sequence[str]) -> set[str]:
        """Addresses held by any service; the ones `svc` is giving up count as free (unless another holds them)."""
        me = _ident(svc)
        used = _holds(svc) - set(releasing)
        for held in self.ctx.store.collect(self.ctx.rt("/services"), lambda s: None if _ident(s) == me else _holds(s)):
            used |= held
        return used
