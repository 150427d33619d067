"""The scheduler: binds pods without a node to one that fits, spreads a workload's pods, says why none fits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.store import Event, Obj, now_rfc3339
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller, object_key, split_key
from kalab.lab.controllers.workloads.placement import (
    UNSCHEDULABLE_TAINT,
    host_ports,
    matches_node_selection,
    untolerated_taint,
)
from kalab.model import objects

DEFAULT_SCHEDULER: Final = "default-scheduler"


class Scheduler(Controller):
    """Binds pods without a node to a fitting one; spreads a workload's pods; retries unschedulable pods."""

    name = "scheduler"
    retry_unschedulable = 5.0  # pods leaving a node (freeing a host port) are noticed at the latest after this

    def __init__(self, ctx: LabContext) -> None:
        super().__init__(ctx)
        self.pods_rt: ResourceType = ctx.rt("/pods")
        self.nodes_rt: ResourceType = ctx.rt("/nodes")
        self.watches = {"/pods": self._unbound_key, "/nodes": lambda event: self._unbound_keys()}

    @staticmethod
    def _unbound_key(event: Event) -> list[str]:
        if event.type == "DELETED" or objects.spec(event.object).get("nodeName"):
            return []
        return object_key(event)

    def _unbound_keys(self) -> list[str]:
        pods, _ = self.ctx.store.list(self.pods_rt)
        return [f"{objects.namespace_of(p)}/{objects.name_of(p)}" for p in pods if not objects.spec(p).get("nodeName")]

    def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        pod = self.ctx.store.try_get(self.pods_rt, namespace, name)
        if pod is None or objects.spec(pod).get("nodeName"):
            return None
        if (objects.spec(pod).get("schedulerName") or DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER:
            return None  # another scheduler's pod
        nodes = sorted(self.ctx.store.list(self.nodes_rt)[0], key=objects.name_of)
        pods, _ = self.ctx.store.list(self.pods_rt)
        placed = [p for p in pods if objects.spec(p).get("nodeName") and not objects.pod_terminal(p)]
        feasible, reasons = self._filter(pod, nodes, placed)
        if not feasible:
            self._unschedulable(pod, len(nodes), reasons)
            return self.retry_unschedulable
        node = min(feasible, key=lambda n: self._score(pod, n, placed, nodes))
        node_name = objects.name_of(node)
        pod["spec"]["nodeName"] = node_name
        bound = self.ctx.store.update(self.pods_rt, pod, namespace)  # a stale pod conflicts: retried by the queue
        status = dict(objects.status(bound))
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conditions.append(
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
        )
        status.setdefault("phase", "Pending")
        status["conditions"] = conditions
        self.write_status(self.pods_rt, bound, status)
        self.ctx.record_event(bound, "Scheduled", f"Successfully assigned {namespace}/{name} to {node_name}")
        return None

    @staticmethod
    def _filter(pod: Obj, nodes: list[Obj], placed: list[Obj]) -> tuple[list[Obj], dict[str, int]]:
        spec = objects.spec(pod)
        wanted_ports = host_ports(spec)
        feasible: list[Obj] = []
        reasons: dict[str, int] = {}

        def reject(reason: str) -> None:
            reasons[reason] = reasons.get(reason, 0) + 1

        for node in nodes:
            node_name = objects.meta(node).get("name")
            if not matches_node_selection(node, spec):
                reject("node(s) didn't match Pod's node affinity/selector")
                continue
            taint = untolerated_taint(node, spec)
            if taint is not None:
                if taint.get("key") == UNSCHEDULABLE_TAINT:
                    reject("node(s) were unschedulable")
                else:
                    value = f": {taint['value']}" if taint.get("value") else ""
                    reject(f"node(s) had untolerated taint {{{taint.get('key')}{value}}}")
                continue
            on_node = [p for p in placed if objects.spec(p).get("nodeName") == node_name]
            used = set().union(*(host_ports(objects.spec(p)) for p in on_node))
            if wanted_ports & used:
                reject("node(s) didn't have free ports for the requested pod ports")
                continue
            feasible.append(node)
        return feasible, reasons

    @staticmethod
    def _score(pod: Obj, node: Obj, placed: list[Obj], nodes: list[Obj]) -> tuple[int, int, int]:
        """Fewest pods of the same workload, then fewest pods, then node order: spread and deterministic."""
        node_name = objects.meta(node).get("name")
        here = [p for p in placed if objects.spec(p).get("nodeName") == node_name]
        owner = (objects.controller_of(pod) or {}).get("uid")
        siblings = sum(1 for p in here if owner and (objects.controller_of(p) or {}).get("uid") == owner)
        return siblings, len(here), nodes.index(node)

    def _unschedulable(self, pod: Obj, total: int, reasons: Mapping[str, int]) -> None:
        detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        message = f"0/{total} nodes are available: {detail}." if detail else f"0/{total} nodes are available."
        status = dict(objects.status(pod))
        old = [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"]
        if old and old[0].get("status") == "False" and old[0].get("message") == message:
            return
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": None,
                "lastTransitionTime": now_rfc3339(),
            }
        )
        status["phase"] = "Pending"
        status["conditions"] = conditions
        self.write_status(self.pods_rt, pod, status)
        self.ctx.record_event(pod, "FailedScheduling", message, "Warning")
