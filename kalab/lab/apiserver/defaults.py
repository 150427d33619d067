"""Built-in defaults: what kube-apiserver fills in when it decodes an object of a built-in kind.

Every object written to the store passes here first (create and update, from the API or from the lab's own
controllers, as every write goes through the API server on a cluster), so what `kubectl get -o yaml` shows matches
a real cluster: a DaemonSet's updateStrategy, a Deployment's strategy and progressDeadlineSeconds, a pod's
restartPolicy, dnsPolicy, terminationMessagePath, imagePullPolicy by tag, a Service's sessionAffinity, ipFamilies
and traffic policies, and so on (k8s.io/api's SetDefaults_* functions, plus the Priority admission plugin's
priority and preemptionPolicy that every OpenShift pod shows). Defaults never overwrite what a writer set, so
applying them twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from kalab.lab.apiserver.resources import ResourceType

Obj = dict[str, Any]

TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
DEFAULT_SCHEDULER: Final = "default-scheduler"
DEFAULT_MODE: Final = 420  # 0644, as the API shows file modes in decimal
_RBAC: Final = "rbac.authorization.k8s.io"


def _dict(parent: Obj, key: str) -> Obj:
    """parent[key] as a dict, created when missing (a non-dict value is left for validation to refuse)."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[Obj]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# -- pods -------------------------------------------------------------------------------------------------------------


def image_pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged image, IfNotPresent for any other tag or a digest."""
    name, _, digest = image.partition("@")
    if digest:
        return "IfNotPresent"
    last = name.rsplit("/", 1)[-1]
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


def _probe(probe: Obj) -> None:
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        probe.setdefault(key, value)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _container(container: Obj, host_network: bool) -> None:
    container.setdefault("terminationMessagePath", TERMINATION_MESSAGE_PATH)
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("imagePullPolicy", image_pull_policy(str(container.get("image") or "")))
    container.setdefault("resources", {})
    for port in _dicts(container.get("ports")):
        port.setdefault("protocol", "TCP")
        if host_network and not port.get("hostPort") and port.get("containerPort"):
            port["hostPort"] = port["containerPort"]  # a host-network pod listens on the node
    for item in _dicts(container.get("env")):
        source = item.get("valueFrom")
        if isinstance(source, dict) and isinstance(source.get("fieldRef"), dict):
            source["fieldRef"].setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(container.get(probe), dict):
            _probe(container[probe])


def _volume(volume: Obj) -> None:
    if isinstance(volume.get("hostPath"), dict):
        volume["hostPath"].setdefault("type", "")
    for kind in ("configMap", "secret", "downwardAPI", "projected"):
        if isinstance(volume.get(kind), dict):
            volume[kind].setdefault("defaultMode", DEFAULT_MODE)


def pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec and what it calls for containers, volumes and probes."""
    for key, value in (
        ("restartPolicy", "Always"),
        ("terminationGracePeriodSeconds", 30),
        ("dnsPolicy", "ClusterFirst"),
        ("securityContext", {}),
        ("schedulerName", DEFAULT_SCHEDULER),
        ("enableServiceLinks", True),
        ("priority", 0),  # the Priority admission plugin, without a priorityClassName
        ("preemptionPolicy", "PreemptLowerPriority"),
    ):
        spec.setdefault(key, value)
    host_network = bool(spec.get("hostNetwork"))
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in _dicts(spec.get(field)):
            _container(container, host_network)
    for volume in _dicts(spec.get("volumes")):
        _volume(volume)


def _template(spec: Obj) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        pod_spec(_dict(template, "spec"))


def pod(obj: Obj) -> None:
    pod_spec(_dict(obj, "spec"))


# -- workloads ------------------------------------------------------------------------------------------------------


def daemon_set(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    strategy = _dict(spec, "updateStrategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _template(spec)


def deployment(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    spec.setdefault("replicas", 1)
    strategy = _dict(spec, "strategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(spec)


def replica_set(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    spec.setdefault("replicas", 1)
    _template(spec)


# -- services and the rest -------------------------------------------------------------------------------------------


def service(obj: Obj) -> None:
    """SetDefaults_Service, plus the IP family fields the allocator fills in on a single-stack IPv4 cluster."""
    spec = _dict(obj, "spec")
    kind = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        client_ip = _dict(_dict(spec, "sessionAffinityConfig"), "clientIP")
        client_ip.setdefault("timeoutSeconds", 10800)
    for port in _dicts(spec.get("ports")):
        port.setdefault("protocol", "TCP")
        if "port" in port:
            port.setdefault("targetPort", port["port"])
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if kind != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")


def endpoints(obj: Obj) -> None:
    for subset in _dicts(obj.get("subsets")):
        for port in _dicts(subset.get("ports")):
            port.setdefault("protocol", "TCP")


def secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")


def role_binding(obj: Obj) -> None:
    for subject in _dicts(obj.get("subjects")):
        if subject.get("kind") in ("User", "Group"):  # a ServiceAccount's "" is omitted, as in the API's JSON
            subject.setdefault("apiGroup", _RBAC)


_BY_KEY: Final[dict[str, Callable[[Obj], None]]] = {
    "/pods": pod,
    "/services": service,
    "/endpoints": endpoints,
    "/secrets": secret,
    "apps/daemonsets": daemon_set,
    "apps/deployments": deployment,
    "apps/replicasets": replica_set,
    f"{_RBAC}/rolebindings": role_binding,
    f"{_RBAC}/clusterrolebindings": role_binding,
}


def apply(rt: ResourceType, obj: Obj) -> None:
    """Fill in the built-in defaults of `rt`'s kind in `obj`, in place (other kinds are left as they are)."""
    default = _BY_KEY.get(rt.key)
    if default is not None:
        default(obj)
