"""What `kubectl get` prints for the built-in kinds, worked out on the server as kube-apiserver's printers do.

One tuple of columns per kind (`BUILTIN_COLUMNS`, after k8s.io/kubernetes/pkg/printers/internalversion); wide
columns have priority 1, which kubectl shows only with `-o wide`. A column is its definition and how its cell is
computed from the object (a pod's READY, STATUS and RESTARTS, a service's EXTERNAL-IP, an age as kubectl writes it).
The Table document and the columns of other kinds are `tables`'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kalab.model import objects

Obj = dict[str, Any]
Cell = str | int | float | bool | None
NONE = "<none>"


@dataclass(frozen=True)
class PrintColumn:
    """A Table column: its definition, and how a row's cell is computed from the object."""

    name: str
    render: Callable[[Obj], Cell]
    type: str = "string"
    priority: int = 0
    format: str = ""
    description: str = ""


# -- helpers ---------------------------------------------------------------------------------------------------


def _get(obj: Mapping[str, Any] | None, *path: str) -> Any:
    value: Any = obj
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _parse_time(stamp: Any) -> datetime | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """An age as kubectl shows it: 45s, 5m30s, 95m, 4h10m, 30h, 3d4h, 40d, 2y30d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years, rest = days // 365, days % 365
    if days < 365 * 8 and rest:
        return f"{years}y{rest}d"
    return f"{years}y"


def age(stamp: Any, now: datetime | None = None) -> str:
    when = _parse_time(stamp)
    if when is None:
        return "<unknown>"
    return human_duration(((now or datetime.now(UTC)) - when).total_seconds())


def _age_of(obj: Obj) -> Cell:
    return age(objects.meta(obj).get("creationTimestamp"))


def _or_none(value: Any) -> str:
    return str(value) if value not in (None, "", [], {}) else NONE


def _map_selector(labels: Any) -> str:
    if not isinstance(labels, Mapping) or not labels:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _label_selector(selector: Any) -> str:
    """A LabelSelector object in the string form kubectl shows (`app=x,tier in (a,b)`)."""
    if not isinstance(selector, Mapping):
        return NONE
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn"):
            terms.append(f"{key} {op.lower()} ({','.join(values)})")
        elif op == "Exists":
            terms.append(str(key))
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms) or NONE


def _containers(obj: Obj) -> list[Obj]:
    return list(_get(objects.spec(obj), "template", "spec", "containers") or [])


def _container_names(obj: Obj) -> Cell:
    return ",".join(str(c.get("name", "")) for c in _containers(obj)) or NONE


def _images(obj: Obj) -> Cell:
    return ",".join(str(c.get("image", "")) for c in _containers(obj)) or NONE


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


NAME = PrintColumn("Name", objects.name_of, format="name", description="Name must be unique within a namespace.")
AGE = PrintColumn("Age", _age_of, description="CreationTimestamp is the time the object was created.")
CREATED_AT = PrintColumn("Created At", lambda o: objects.meta(o).get("creationTimestamp"), type="date")

# -- nodes -------------------------------------------------------------------------------------------------------


def _node_status(node: Obj) -> Cell:
    ready = objects.condition(node, "Ready")
    status = "Unknown" if ready is None else ("Ready" if objects.condition_true(node, "Ready") else "NotReady")
    return f"{status},SchedulingDisabled" if objects.spec(node).get("unschedulable") else status


def _node_roles(node: Obj) -> Cell:
    roles: set[str] = set()
    for key, value in objects.labels_of(node).items():
        if key.startswith("node-role.kubernetes.io/") and key.split("/", 1)[1]:
            roles.add(key.split("/", 1)[1])
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    return ",".join(sorted(roles)) or NONE


def _node_address(kind: str) -> Callable[[Obj], Cell]:
    def render(node: Obj) -> Cell:
        for address in objects.status(node).get("addresses") or []:
            if address.get("type") == kind:
                return str(address.get("address"))
        return NONE

    return render


def _node_info(field: str) -> Callable[[Obj], Cell]:
    return lambda node: _or_none(_get(objects.status(node), "nodeInfo", field))


NODE_COLUMNS = (
    NAME,
    PrintColumn("Status", _node_status),
    PrintColumn("Roles", _node_roles),
    AGE,
    PrintColumn("Version", _node_info("kubeletVersion")),
    PrintColumn("Internal-IP", _node_address("InternalIP"), priority=1),
    PrintColumn("External-IP", _node_address("ExternalIP"), priority=1),
    PrintColumn("OS-Image", _node_info("osImage"), priority=1),
    PrintColumn("Kernel-Version", _node_info("kernelVersion"), priority=1),
    PrintColumn("Container-Runtime", _node_info("containerRuntimeVersion"), priority=1),
)

# -- pods --------------------------------------------------------------------------------------------------------


def _terminated_reason(term: Mapping[str, Any]) -> str:
    if term.get("reason"):
        return str(term["reason"])
    if term.get("signal"):
        return f"Signal:{term['signal']}"
    return f"ExitCode:{term.get('exitCode', 0)}"


def pod_summary(pod: Obj) -> tuple[str, str, int]:
    """(READY "n/m", STATUS, RESTARTS) worked out the way kubectl's pod printer does."""
    spec, status = objects.spec(pod), objects.status(pod)
    containers = spec.get("containers") or []
    reason = str(status.get("reason") or status.get("phase") or "Pending")
    restarts = ready = 0
    initializing = False
    init_specs = spec.get("initContainers") or []
    for index, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += _int(cs.get("restartCount"))
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term is not None and _int(term.get("exitCode")) == 0:
            continue
        initializing = True
        if term is not None:
            reason = "Init:" + _terminated_reason(term)
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + str(waiting["reason"])
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        break
    if not initializing:
        restarts = 0
        running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += _int(cs.get("restartCount"))
            state = cs.get("state") or {}
            waiting, term = state.get("waiting") or {}, state.get("terminated")
            if waiting.get("reason"):
                reason = str(waiting["reason"])
            elif term is not None:
                reason = _terminated_reason(term)
            elif cs.get("ready") and "running" in state:
                running = True
                ready += 1
        if reason == "Completed" and running:
            reason = "Running" if objects.pod_ready(pod) else "NotReady"
    if objects.meta(pod).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return f"{ready}/{len(containers)}", reason, restarts


def _readiness_gates(pod: Obj) -> Cell:
    gates = objects.spec(pod).get("readinessGates") or []
    if not gates:
        return NONE
    true = sum(1 for gate in gates if objects.condition_true(pod, gate.get("conditionType")))
    return f"{true}/{len(gates)}"


POD_COLUMNS = (
    NAME,
    PrintColumn("Ready", lambda p: pod_summary(p)[0]),
    PrintColumn("Status", lambda p: pod_summary(p)[1]),
    PrintColumn("Restarts", lambda p: pod_summary(p)[2], type="integer"),
    AGE,
    PrintColumn("IP", lambda p: _or_none(objects.status(p).get("podIP")), priority=1),
    PrintColumn("Node", lambda p: _or_none(objects.spec(p).get("nodeName")), priority=1),
    PrintColumn("Nominated Node", lambda p: _or_none(objects.status(p).get("nominatedNodeName")), priority=1),
    PrintColumn("Readiness Gates", _readiness_gates, priority=1),
)

# -- services ----------------------------------------------------------------------------------------------------

LB_WIDTH = 16  # kubectl shortens a long load-balancer list unless -o wide


def _lb_ingress(svc: Obj, wide: bool) -> str:
    found = set()
    for ingress in _get(objects.status(svc), "loadBalancer", "ingress") or []:
        if ingress.get("ip"):
            found.add(str(ingress["ip"]))
        elif ingress.get("hostname"):
            found.add(str(ingress["hostname"]))
    text = ",".join(sorted(found))
    return text[: LB_WIDTH - 3] + "..." if not wide and len(text) > LB_WIDTH else text


def service_external_ip(svc: Obj, wide: bool = False) -> str:
    """EXTERNAL-IP: spec.externalIPs then the load balancer's addresses, so an auto-assigned IP shows twice."""
    kind = objects.spec(svc).get("type") or "ClusterIP"
    external = [str(ip) for ip in objects.spec(svc).get("externalIPs") or []]
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or NONE
    if kind == "ExternalName":
        return str(objects.spec(svc).get("externalName") or NONE)
    if kind == "LoadBalancer":
        ingress = _lb_ingress(svc, wide)
        joined = ",".join([*external, ingress] if ingress else external)
        return joined or "<pending>"
    return "<unknown>"


def service_ports(svc: Obj) -> str:
    parts = []
    for port in objects.spec(svc).get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if port.get("nodePort"):
            parts.append(f"{port.get('port')}:{port['nodePort']}/{protocol}")
        else:
            parts.append(f"{port.get('port')}/{protocol}")
    return ",".join(parts) or NONE


SERVICE_COLUMNS = (
    NAME,
    PrintColumn("Type", lambda s: str(objects.spec(s).get("type") or "ClusterIP")),
    PrintColumn("Cluster-IP", lambda s: _or_none(objects.spec(s).get("clusterIP"))),
    # kube-apiserver renders tables as for -o wide (kubectl drops the wide columns), so nothing is shortened.
    PrintColumn("External-IP", lambda s: service_external_ip(s, wide=True)),
    PrintColumn("Port(s)", service_ports),
    AGE,
    PrintColumn("Selector", lambda s: _map_selector(objects.spec(s).get("selector")), priority=1),
)

# -- workloads ---------------------------------------------------------------------------------------------------

_WORKLOAD_WIDE = (
    PrintColumn("Containers", _container_names, priority=1),
    PrintColumn("Images", _images, priority=1),
    PrintColumn("Selector", lambda o: _label_selector(objects.spec(o).get("selector")), priority=1),
)


def _status_int(*path: str) -> Callable[[Obj], Cell]:
    return lambda obj: _int(_get(objects.status(obj), *path))


DAEMONSET_COLUMNS = (
    NAME,
    PrintColumn("Desired", _status_int("desiredNumberScheduled"), type="integer"),
    PrintColumn("Current", _status_int("currentNumberScheduled"), type="integer"),
    PrintColumn("Ready", _status_int("numberReady"), type="integer"),
    PrintColumn("Up-to-date", _status_int("updatedNumberScheduled"), type="integer"),
    PrintColumn("Available", _status_int("numberAvailable"), type="integer"),
    PrintColumn("Node Selector", lambda d: _map_selector(_get(objects.spec(d), "template", "spec", "nodeSelector"))),
    AGE,
    *_WORKLOAD_WIDE,
)


def _replicas(obj: Obj) -> int:
    wanted = objects.spec(obj).get("replicas")
    return 1 if wanted is None else _int(wanted)


DEPLOYMENT_COLUMNS = (
    NAME,
    PrintColumn("Ready", lambda d: f"{_int(objects.status(d).get('readyReplicas'))}/{_replicas(d)}"),
    PrintColumn("Up-to-date", _status_int("updatedReplicas"), type="integer"),
    PrintColumn("Available", _status_int("availableReplicas"), type="integer"),
    AGE,
    *_WORKLOAD_WIDE,
)

REPLICASET_COLUMNS = (
    NAME,
    PrintColumn("Desired", _replicas, type="integer"),
    PrintColumn("Current", _status_int("replicas"), type="integer"),
    PrintColumn("Ready", _status_int("readyReplicas"), type="integer"),
    AGE,
    *_WORKLOAD_WIDE,
)

# -- small core kinds --------------------------------------------------------------------------------------------


def _event_last_seen(ev: Obj) -> Cell:
    stamp = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp")
    return age(stamp)


def _event_object(ev: Obj) -> Cell:
    involved = ev.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


EVENT_COLUMNS = (
    PrintColumn("Last Seen", _event_last_seen),
    PrintColumn("Type", lambda e: str(e.get("type") or "")),
    PrintColumn("Reason", lambda e: str(e.get("reason") or "")),
    PrintColumn("Object", _event_object),
    PrintColumn("Subobject", lambda e: str(_get(e, "involvedObject", "fieldPath") or ""), priority=1),
    PrintColumn("Source", lambda e: str(_get(e, "source", "component") or ""), priority=1),
    PrintColumn("Message", lambda e: str(e.get("message") or "")),
    PrintColumn("First Seen", lambda e: age(e.get("firstTimestamp")), priority=1),
    PrintColumn("Count", lambda e: _int(e.get("count")), type="integer", priority=1),
    PrintColumn("Name", objects.name_of, format="name", priority=1),
)


def _endpoints(ep: Obj) -> Cell:
    found: list[str] = []
    for subset in ep.get("subsets") or []:
        ports = [p.get("port") for p in subset.get("ports") or []] or [None]
        for address in subset.get("addresses") or []:
            found += [f"{address.get('ip')}:{p}" if p else str(address.get("ip")) for p in ports]
    if not found:
        return NONE
    shown = ",".join(found[:3])
    return f"{shown} + {len(found) - 3} more..." if len(found) > 3 else shown


def _binding_subjects(kind: str) -> Callable[[Obj], Cell]:
    def render(binding: Obj) -> Cell:
        names = []
        for subject in binding.get("subjects") or []:
            if subject.get("kind") != kind:
                continue
            ns = subject.get("namespace")
            names.append(f"{ns}/{subject.get('name')}" if kind == "ServiceAccount" else str(subject.get("name")))
        return ",".join(names)

    return render


_BINDING_COLUMNS = (
    NAME,
    PrintColumn("Role", lambda b: f"{_get(b, 'roleRef', 'kind')}/{_get(b, 'roleRef', 'name')}"),
    AGE,
    PrintColumn("Users", _binding_subjects("User"), priority=1),
    PrintColumn("Groups", _binding_subjects("Group"), priority=1),
    PrintColumn("ServiceAccounts", _binding_subjects("ServiceAccount"), priority=1),
)


def _data_count(obj: Obj) -> Cell:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


BUILTIN_COLUMNS: dict[str, tuple[PrintColumn, ...]] = {
    "/nodes": NODE_COLUMNS,
    "/pods": POD_COLUMNS,
    "/services": SERVICE_COLUMNS,
    "/namespaces": (NAME, PrintColumn("Status", lambda n: objects.phase_of(n) or "Active"), AGE),
    "/events": EVENT_COLUMNS,
    "/configmaps": (NAME, PrintColumn("Data", _data_count, type="integer"), AGE),
    "/secrets": (
        NAME,
        PrintColumn("Type", lambda s: str(s.get("type") or "Opaque")),
        PrintColumn("Data", _data_count, type="integer"),
        AGE,
    ),
    "/serviceaccounts": (NAME, PrintColumn("Secrets", lambda s: len(s.get("secrets") or []), type="integer"), AGE),
    "/endpoints": (NAME, PrintColumn("Endpoints", _endpoints), AGE),
    "apps/daemonsets": DAEMONSET_COLUMNS,
    "apps/deployments": DEPLOYMENT_COLUMNS,
    "apps/replicasets": REPLICASET_COLUMNS,
    "rbac.authorization.k8s.io/roles": (NAME, CREATED_AT),
    "rbac.authorization.k8s.io/clusterroles": (NAME, CREATED_AT),
    "rbac.authorization.k8s.io/rolebindings": _BINDING_COLUMNS,
    "rbac.authorization.k8s.io/clusterrolebindings": _BINDING_COLUMNS,
    "apiextensions.k8s.io/customresourcedefinitions": (NAME, CREATED_AT),
}
