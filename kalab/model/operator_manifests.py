"""What the keepalived operator creates for a KeepalivedGroup, and the CRD it owns (FACTS.md §2), as plain dicts.

The DaemonSet's pod template is the seed's keepalived pod minus what others add on the way: the apiserver's
defaults (terminationMessagePath, dnsPolicy, ...), the DaemonSet controller's node affinity and not-ready
tolerations, and OpenShift's imagePullSecrets and SCC annotation. Everything the operator itself decides
(container layout, commands, env, mounts, volumes, hostNetwork, ...) is spelled out here.

It stays one module (some 500 lines) because it is one thing, the operator as its bundle ships it: the CSV's
deployment hands the operator the image its DaemonSets run, and the CRD, the operator's RBAC rules and the objects
it renders per group share one API group, one set of names and one image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kalab.model import objects
from kalab.model.errors import KalabError
from kalab.model.manifests import DEFAULT_IMAGE, KEEPALIVED_API
from kalab.model.operator import POD_GROUP_LABEL

Manifest = dict[str, Any]

OPERATOR_IMAGE: Final = "quay.io/redhat-cop/keepalived-operator:latest"
CRD_GROUP: Final = "redhatcop.redhat.io"
CRD_NAME: Final = f"keepalivedgroups.{CRD_GROUP}"
CONFIG_KEY: Final = "keepalived.conf"
METRICS_PORT: Final = 9650
METRICS_LABELS: Final = {"metrics": "keepalived"}
PROMETHEUS_SA: Final = "prometheus-k8s"
PROMETHEUS_NAMESPACE: Final = "openshift-monitoring"

# Paths inside the pod: the ConfigMap is mounted read-only at SRC; config-setup writes the per-node copy to DST,
# which keepalived reads through the same emptyDir mounted one level up.
_SRC_DIR: Final = "/etc/keepalived.d/src"
_DST_DIR: Final = "/etc/keepalived.d/dst"
_PID_DIR: Final = "/etc/keepalived.pid"
_PID_FILE: Final = f"{_PID_DIR}/keepalived.pid"
# A YAML folded scalar (`>`) in the operator's template, hence the trailing newline the seed's pod shows.
KEEPALIVED_SCRIPT: Final = (
    "exec /usr/sbin/keepalived --log-console --log-detail --dont-fork --config-id=${POD_NAME} "
    f"--use-file=/etc/keepalived.d/{CONFIG_KEY} --pid={_PID_FILE}\n"
)


def _name_ns(group: Mapping[str, Any]) -> tuple[str, str]:
    if group.get("kind") != "KeepalivedGroup":
        raise KalabError(f"Expected a KeepalivedGroup but got kind {group.get('kind')!r}; pass the group object.")
    meta = objects.meta(group)
    name = str(meta.get("name") or "")
    if not name:
        raise KalabError("The KeepalivedGroup has no metadata.name; name the group.")
    return name, str(meta.get("namespace") or "default")


def _owned_meta(group: Mapping[str, Any], name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Metadata in the group's namespace, owned by the group so deleting the group deletes the object.

    A group that never went through an API server (a manifest rendered offline) has no uid; an ownerReference
    without one would be refused, so it is left out then.
    """
    _, namespace = _name_ns(group)
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    if objects.uid_of(group):
        owner = {**group, "apiVersion": group.get("apiVersion") or KEEPALIVED_API}
        meta["ownerReferences"] = [objects.owner_reference(owner)]
    return meta


# --- ConfigMap ----------------------------------------------------------------------------------------------


def config_map(group: Mapping[str, Any], config_text: str) -> Manifest:
    name, _ = _name_ns(group)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _owned_meta(group, name),
        "data": {CONFIG_KEY: config_text},
    }


# --- DaemonSet ----------------------------------------------------------------------------------------------


def _env(name: str, value: str) -> dict[str, str]:
    # The API drops empty strings when it serialises an EnvVar, so an empty value is an entry with only a name
    # (the seed's `- name: reachip`).
    return {"name": name, "value": value} if value else {"name": name}


def _notify_env(reach_ip: str, create_config_only: bool, with_pid: bool) -> list[dict[str, str]]:
    env = [_env("pid", _PID_FILE)] if with_pid else []
    env += [
        _env("file", f"{_SRC_DIR}/{CONFIG_KEY}"),
        _env("dst_file", f"{_DST_DIR}/{CONFIG_KEY}"),
        _env("reachip", reach_ip),
        _env("create_config_only", "true" if create_config_only else "false"),
    ]
    return env


def _mount(name: str, path: str, read_only: bool = False) -> dict[str, Any]:
    return {"name": name, "mountPath": path, "readOnly": True} if read_only else {"name": name, "mountPath": path}


def _notify_container(name: str, image: str, reach_ip: str, reloader: bool) -> dict[str, Any]:
    """config-setup (init: copy the config once) and config-reloader (copy again and SIGHUP on change)."""
    mounts = [_mount("config", _SRC_DIR, read_only=True), _mount("config-dst", _DST_DIR)]
    if reloader:
        mounts.append(_mount("pid", _PID_DIR))  # the reloader signals the PID keepalived writes here
    return {
        "name": name,
        "image": image,
        "command": ["bash", "-c", "/usr/local/bin/notify.sh"],
        "env": _notify_env(reach_ip, create_config_only=not reloader, with_pid=reloader),
        "securityContext": {"runAsUser": 0},
        "volumeMounts": mounts,
    }


def _keepalived_container(image: str) -> dict[str, Any]:
    return {
        "name": "keepalived",
        "image": image,
        # Through bash so ${POD_NAME} expands: --config-id selects this pod's `@<pod>` spreadvips lines.
        "command": ["/bin/bash"],
        "args": ["-c", KEEPALIVED_SCRIPT],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "securityContext": {"privileged": True},
        "volumeMounts": [
            _mount("lib-modules", "/lib/modules", read_only=True),
            _mount("config-dst", "/etc/keepalived.d", read_only=True),
            _mount("pid", _PID_DIR),
            _mount("stats", "/tmp"),  # keepalived's dumps land in $TMPDIR, where the exporter reads them
        ],
    }


def _exporter_container(image: str) -> dict[str, Any]:
    return {
        "name": "prometheus-exporter",
        "image": image,
        "command": ["/usr/local/bin/keepalived_exporter"],
        "args": ["-web.listen-address", f":{METRICS_PORT}", "-web.telemetry-path", "/metrics"],
        "securityContext": {"privileged": True},
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "hostPort": METRICS_PORT, "protocol": "TCP"}],
        "volumeMounts": [_mount("lib-modules", "/lib/modules", read_only=True), _mount("stats", "/tmp")],
    }


def _volumes(config_name: str) -> list[dict[str, Any]]:
    return [
        {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
        {"name": "config", "configMap": {"name": config_name, "defaultMode": 420}},
        {"name": "config-dst", "emptyDir": {}},
        {"name": "pid", "emptyDir": {"medium": "Memory"}},
        {"name": "stats", "emptyDir": {}},
    ]


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise KalabError(f"{what} must be a map of strings.")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def pod_template_spec(group: Mapping[str, Any], operator_image: str = OPERATOR_IMAGE) -> dict[str, Any]:
    """The keepalived pod's spec as the operator writes it into the DaemonSet."""
    name, namespace = _name_ns(group)
    spec = objects.spec(group)
    image = str(spec.get("image") or DEFAULT_IMAGE)
    # With interfaceFromIP the init container resolves the interface on each node; `interface` is ignored.
    reach_ip = str(spec.get("interfaceFromIP") or "")
    pod: dict[str, Any] = {
        "nodeSelector": _string_map(spec.get("nodeSelector"), f"KeepalivedGroup {namespace}/{name} nodeSelector"),
        "hostNetwork": True,  # VIPs go on the node's own interface; VRRP and gratuitous ARPs on its segment
        "shareProcessNamespace": True,  # reloader and exporter signal keepalived by PID
        "automountServiceAccountToken": False,  # nothing in the pod talks to the API
        "enableServiceLinks": False,
        "serviceAccountName": "default",  # the account the privileged SCC is granted to
        "tolerations": [{"operator": "Exists"}],  # run on every selected node, tainted or not
        "initContainers": [_notify_container("config-setup", operator_image, reach_ip, reloader=False)],
        "containers": [
            _keepalived_container(image),
            _notify_container("config-reloader", operator_image, reach_ip, reloader=True),
            _exporter_container(operator_image),
        ],
        "volumes": _volumes(name),
    }
    priority_class = spec.get("daemonsetPodPriorityClassName")
    if priority_class:
        pod["priorityClassName"] = str(priority_class)
    return pod


def daemon_set(group: Mapping[str, Any], operator_image: str = OPERATOR_IMAGE) -> Manifest:
    name, namespace = _name_ns(group)
    labels = {POD_GROUP_LABEL: name}
    template_meta: dict[str, Any] = {"labels": dict(labels)}
    annotations = _string_map(
        objects.spec(group).get("daemonsetPodAnnotations"),
        f"KeepalivedGroup {namespace}/{name} daemonsetPodAnnotations",
    )
    if annotations:
        template_meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _owned_meta(group, name),
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": template_meta, "spec": pod_template_spec(group, operator_image)},
        },
    }


# --- monitoring ---------------------------------------------------------------------------------------------


def pod_monitor(group: Mapping[str, Any]) -> Manifest:
    """Lets the cluster's Prometheus scrape every keepalived pod's exporter on its `metrics` port."""
    name, namespace = _name_ns(group)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _owned_meta(group, name, METRICS_LABELS),
        "spec": {
            "selector": {"matchLabels": {POD_GROUP_LABEL: name}},
            "namespaceSelector": {"matchNames": [namespace]},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics"}],
        },
    }


def _prometheus_name(group: Mapping[str, Any]) -> str:
    return f"{_name_ns(group)[0]}-{PROMETHEUS_SA}"


def prometheus_role(group: Mapping[str, Any]) -> Manifest:
    """What prometheus-k8s needs in the group's namespace to discover the pods the PodMonitor selects."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _owned_meta(group, _prometheus_name(group)),
        "rules": [
            {"apiGroups": [""], "resources": ["services", "endpoints", "pods"], "verbs": ["get", "list", "watch"]}
        ],
    }


def prometheus_role_binding(group: Mapping[str, Any]) -> Manifest:
    role = _prometheus_name(group)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _owned_meta(group, role),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": PROMETHEUS_SA, "namespace": PROMETHEUS_NAMESPACE}],
    }


# --- the CRD ------------------------------------------------------------------------------------------------


def _described(schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {**schema, "description": text}


def _spec_schema() -> dict[str, Any]:
    # Descriptions say what each field does, for `oc explain keepalivedgroup.spec`, the way people learn a CRD.
    strings = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "type": "object",
        "description": "KeepalivedGroupSpec: where the group's keepalived pods run and how they announce the VIPs.",
        "required": ["interface"],
        "properties": {
            "image": _described(
                {"type": "string", "default": DEFAULT_IMAGE},
                "The keepalived image the group's DaemonSet runs (default: OpenShift's ose-keepalived-ipfailover).",
            ),
            "interface": _described(
                {"type": "string"},
                "The node interface keepalived puts the VIPs on and sends VRRP adverts from, e.g. ens3. Ignored "
                "when interfaceFromIP is set.",
            ),
            "interfaceFromIP": _described(
                {"type": "string", "format": "ipv4"},
                "An IPv4 address; on each node the interface that routes to it is used, for clusters whose "
                "nodes name their interfaces differently.",
            ),
            "nodeSelector": _described(
                strings, "Labels a node must carry to run the group's keepalived pod (a loadbalancer node)."
            ),
            "blacklistRouterIDs": _described(
                {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 255}},
                "VRRP router IDs (1-255) the operator never assigns, e.g. those another keepalived on the same "
                "network already uses.",
            ),
            "unicastEnabled": _described(
                {"type": "boolean"},
                "Send VRRP adverts to the other nodes of the group by unicast instead of multicast, for networks "
                "that filter multicast.",
            ),
            "passwordAuth": _described(
                {
                    "type": "object",
                    "properties": {
                        "secretRef": _described(
                            {"type": "object", "properties": {"name": {"type": "string"}}},
                            "The Secret, in the group's namespace, that holds the VRRP password.",
                        ),
                        "secretKey": _described(
                            {"type": "string", "default": "password"}, "The key of the password in that Secret."
                        ),
                    },
                },
                "VRRP authentication with a password kept in a Secret.",
            ),
            "verbatimConfig": _described(
                strings, "Lines added as they are to keepalived.conf's global_defs (key: value)."
            ),
            "daemonsetPodPriorityClassName": _described(
                {"type": "string"}, "The priority class of the group's keepalived pods."
            ),
            "daemonsetPodAnnotations": _described(strings, "Annotations added to the group's keepalived pods."),
        },
        # Lenient like an older CRD: unknown fields are kept rather than pruned.
        "x-kubernetes-preserve-unknown-fields": True,
    }


def _status_schema() -> dict[str, Any]:
    condition = {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string"},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "type": "object",
        "description": "KeepalivedGroupStatus: what the operator did with the group.",
        "properties": {
            "routerIDs": _described(
                {"type": "object", "additionalProperties": {"type": "integer"}},
                "The VRRP router ID given to each instance (namespace/service, or namespace/service/VIP with "
                "spreadvips); kept across reconciles so a service keeps its ID.",
            ),
            "conditions": _described(
                {"type": "array", "items": condition},
                "One condition: type ReconcileSuccess, or ReconcileError with the error as its message (e.g. no "
                "router ID left).",
            ),
        },
        "x-kubernetes-preserve-unknown-fields": True,
    }


def keepalivedgroup_crd() -> Manifest:
    """The CustomResourceDefinition the operator's bundle installs (namespaced, v1alpha1, status subresource)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": CRD_GROUP,
            "names": {
                "kind": "KeepalivedGroup",
                "listKind": "KeepalivedGroupList",
                "plural": "keepalivedgroups",
                "singular": "keepalivedgroup",
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "KeepalivedGroup: a set of nodes that carry the VIPs of the services "
                            "that name it.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _spec_schema(),
                                "status": _status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


# --- the operator's bundle: the ClusterServiceVersion OLM installs from the catalog -------------------------

OPERATOR_VERSION: Final = "1.4.2"
OPERATOR_PACKAGE: Final = "keepalived-operator"
OPERATOR_DEPLOYMENT: Final = "keepalived-operator"
OPERATOR_SERVICE_ACCOUNT: Final = "keepalived-operator"


def csv_name(version: str = OPERATOR_VERSION) -> str:
    return f"{OPERATOR_PACKAGE}.v{version}"


def _rule(groups: list[str], resources: list[str], verbs: list[str] | None = None) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs or ["*"]}


def operator_rules() -> list[dict[str, Any]]:
    """What the operator reads (services, pods, secrets in any namespace) and what it renders per group."""
    read = ["get", "list", "watch"]
    return [
        _rule([CRD_GROUP], ["keepalivedgroups", "keepalivedgroups/status", "keepalivedgroups/finalizers"]),
        _rule([""], ["services", "pods", "secrets", "nodes"], read),
        _rule([""], ["configmaps", "events"]),
        _rule(["apps"], ["daemonsets"]),
        _rule(["monitoring.coreos.com"], ["podmonitors"]),
        _rule(["rbac.authorization.k8s.io"], ["roles", "rolebindings"]),
        _rule(["coordination.k8s.io"], ["leases"]),  # leader election
    ]


def operator_deployment_spec(image: str = OPERATOR_IMAGE) -> dict[str, Any]:
    labels = {"name": OPERATOR_DEPLOYMENT}
    return {
        "replicas": 1,
        "selector": {"matchLabels": dict(labels)},
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": {
                "serviceAccountName": OPERATOR_SERVICE_ACCOUNT,
                "containers": [
                    {
                        "name": OPERATOR_DEPLOYMENT,
                        "image": image,
                        "command": ["/manager"],
                        "args": ["--leader-elect"],
                        "env": [
                            # OLM's annotation on the pod: "" means every namespace (AllNamespaces install).
                            {
                                "name": "WATCH_NAMESPACE",
                                "valueFrom": {
                                    "fieldRef": {"fieldPath": "metadata.annotations['olm.targetNamespaces']"}
                                },
                            },
                            # The image the operator puts in its DaemonSets' init, reloader and exporter containers.
                            {"name": "KEEPALIVED_OPERATOR_IMAGE_NAME", "value": image},
                        ],
                    }
                ],
            },
        },
    }


def operator_csv(namespace: str, version: str = OPERATOR_VERSION, image: str = OPERATOR_IMAGE) -> Manifest:
    """The ClusterServiceVersion of the operator's bundle, placed in the subscription's namespace."""
    return {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": {
            "name": csv_name(version),
            "namespace": namespace,
            "annotations": {"containerImage": image, "capabilities": "Full Lifecycle", "categories": "Networking"},
        },
        "spec": {
            "displayName": "Keepalived Operator",
            "description": "Self-hosted load balancing for LoadBalancer services and externalIPs: keepalived on "
            "selected nodes announces each service's VIPs with VRRP.",
            "version": version,
            "maturity": "alpha",
            "provider": {"name": "Red Hat Community of Practice"},
            "keywords": ["keepalived", "vrrp", "loadbalancer", "externalIP"],
            # As the operator's bundle has them: it watches the whole cluster, so an OperatorGroup that targets
            # namespaces leaves the CSV Failed (UnsupportedOperatorGroup).
            "installModes": [
                {"type": "OwnNamespace", "supported": False},
                {"type": "SingleNamespace", "supported": False},
                {"type": "MultiNamespace", "supported": False},
                {"type": "AllNamespaces", "supported": True},
            ],
            "customresourcedefinitions": {
                "owned": [
                    {
                        "name": CRD_NAME,
                        "version": "v1alpha1",
                        "kind": "KeepalivedGroup",
                        "displayName": "Keepalived Group",
                        "description": "A set of nodes that carry the VIPs of the services that name it.",
                    }
                ]
            },
            "install": {
                "strategy": "deployment",
                "spec": {
                    "clusterPermissions": [{"serviceAccountName": OPERATOR_SERVICE_ACCOUNT, "rules": operator_rules()}],
                    "deployments": [{"name": OPERATOR_DEPLOYMENT, "spec": operator_deployment_spec(image)}],
                },
            },
        },
    }
