"""What a freshly installed OpenShift 4 cluster already holds before anyone touches it.

The seed starts from such a cluster: its nodes are Ready, `oc get network cluster` shows the cluster and service
networks (and no externalIP block yet), and the security context constraints that decide which pods may run
privileged are in place. `bootstrap(ctx)` creates all of that in the lab's store; it only adds what is missing,
so running it twice (or after a user changed a node's labels) changes nothing.
"""

from __future__ import annotations

import os
import platform
import shutil
import uuid
from collections.abc import Iterable
from typing import Any

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.store import Obj, now_rfc3339
from kalab.lab.context import LabContext
from kalab.lab.dataplane.topology import SEED_CLUSTER_NETWORK, SEED_HOST_PREFIX, SEED_NODES, node_specs
from kalab.model import objects

SERVICE_NETWORK = "172.30.0.0/16"
NETWORK_TYPE = "OpenShiftSDN"
CLUSTER_NETWORK_MTU = 1450
# The seed's cluster is OpenShift 4.7, which runs Kubernetes 1.20.
KUBELET_VERSION = "v1.20.0"
MAX_PODS = 250  # OpenShift's kubelet default

NAMESPACES = (
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "openshift",
    "openshift-infra",
    "openshift-marketplace",
    "openshift-monitoring",
)

SCC_GROUP = "security.openshift.io"
SCC_ROLE_PREFIX = "system:openshift:scc:"
_RESTRICTED_VOLUMES = ("configMap", "downwardAPI", "emptyDir", "persistentVolumeClaim", "projected", "secret")
_RESTRICTED_V2_VOLUMES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
_HOST_VOLUMES = (*_RESTRICTED_VOLUMES, "hostPath")


def _scc(
    name: str,
    description: str,
    *,
    users: Iterable[str] = (),
    groups: Iterable[str] = (),
    priority: int | None = None,
    privileged: bool = False,
    host_network: bool = False,
    host_ports: bool = False,
    host_pid: bool = False,
    host_ipc: bool = False,
    host_dir: bool = False,
    escalation: bool = True,
    run_as_user: str = "MustRunAsRange",
    fs_group: str = "MustRunAs",
    supplemental: str = "RunAsAny",
    selinux: str = "MustRunAs",
    allowed_caps: Iterable[str] | None = None,
    drop_caps: Iterable[str] | None = ("KILL", "MKNOD", "SETUID", "SETGID"),
    volumes: Iterable[str] = _RESTRICTED_VOLUMES,
    seccomp: Iterable[str] | None = None,
) -> Obj:
    """One SecurityContextConstraints object, in the field layout `oc get scc -o yaml` shows (no spec/status)."""
    scc: Obj = {
        "metadata": {"name": name, "annotations": {"kubernetes.io/description": description}},
        "allowHostDirVolumePlugin": host_dir,
        "allowHostIPC": host_ipc,
        "allowHostNetwork": host_network,
        "allowHostPID": host_pid,
        "allowHostPorts": host_ports,
        "allowPrivilegeEscalation": escalation,
        "allowPrivilegedContainer": privileged,
        "allowedCapabilities": list(allowed_caps) if allowed_caps is not None else None,
        "defaultAddCapabilities": None,
        "fsGroup": {"type": fs_group},
        "groups": list(groups),
        "priority": priority,
        "readOnlyRootFilesystem": False,
        "requiredDropCapabilities": list(drop_caps) if drop_caps is not None else None,
        "runAsUser": {"type": run_as_user},
        "seLinuxContext": {"type": selinux},
        "supplementalGroups": {"type": supplemental},
        "users": list(users),
        "volumes": list(volumes),
    }
    if seccomp is not None:
        scc["seccompProfiles"] = list(seccomp)
    return scc


def _scc_v2(name: str, description: str, **overrides: Any) -> Obj:
    """The 4.11+ "-v2" variants: no privilege escalation, every capability dropped but NET_BIND_SERVICE."""
    return _scc(
        name,
        description,
        escalation=False,
        allowed_caps=("NET_BIND_SERVICE",),
        drop_caps=("ALL",),
        seccomp=("runtime/default",),
        volumes=_RESTRICTED_V2_VOLUMES,
        **overrides,
    )


def security_context_constraints() -> list[Obj]:
    """OpenShift's default SCCs (4.11+ layout: `restricted-v2` is what every authenticated user gets).

    Only `privileged` admits the keepalived pod (privileged, hostNetwork, hostPath, runAsUser 0), and only
    cluster admins, nodes and two system users may use it until someone grants it.
    """
    return [
        _scc(
            "privileged",
            "Everything allowed: privileged containers, every host namespace, host paths and any user. Meant for "
            "cluster infrastructure such as keepalived; grant it only to service accounts you trust.",
            users=("system:admin", "system:serviceaccount:openshift-infra:build-controller"),
            groups=("system:cluster-admins", "system:nodes", "system:masters"),
            privileged=True,
            host_network=True,
            host_ports=True,
            host_pid=True,
            host_ipc=True,
            host_dir=True,
            run_as_user="RunAsAny",
            fs_group="RunAsAny",
            selinux="RunAsAny",
            allowed_caps=("*",),
            drop_caps=None,
            volumes=("*",),
            seccomp=("*",),
        ),
        _scc_v2(
            "restricted-v2",
            "No host features, no privilege escalation, all capabilities but NET_BIND_SERVICE dropped; pods run "
            "with the UID range and SELinux context of their namespace. What authenticated users get.",
            groups=("system:authenticated",),
        ),
        _scc(
            "restricted",
            "No host features; pods run with the UID range and SELinux context of their namespace (the older "
            "default, kept for pods granted it explicitly).",
        ),
        _scc_v2(
            "nonroot-v2",
            "Like restricted-v2, but any UID other than root may be used.",
            run_as_user="MustRunAsNonRoot",
            fs_group="RunAsAny",
        ),
        _scc(
            "nonroot",
            "Like restricted, but any UID other than root may be used.",
            run_as_user="MustRunAsNonRoot",
            fs_group="RunAsAny",
        ),
        _scc(
            "anyuid",
            "Like restricted, but any UID and GID may be used, root included.",
            groups=("system:cluster-admins",),
            priority=10,
            run_as_user="RunAsAny",
            fs_group="RunAsAny",
            drop_caps=("MKNOD",),
        ),
        _scc_v2(
            "hostnetwork-v2",
            "Like restricted-v2, plus the host's network and host ports.",
            host_network=True,
            host_ports=True,
            supplemental="MustRunAs",
        ),
        _scc(
            "hostnetwork",
            "Like restricted, plus the host's network and host ports.",
            host_network=True,
            host_ports=True,
            supplemental="MustRunAs",
        ),
        _scc(
            "hostmount-anyuid",
            "Like restricted, plus host path volumes and any UID (root included): host file systems become "
            "writable as root, so grant it with care.",
            users=("system:serviceaccount:openshift-infra:pv-recycler-controller",),
            host_dir=True,
            run_as_user="RunAsAny",
            fs_group="RunAsAny",
            drop_caps=("MKNOD",),
            volumes=(*_HOST_VOLUMES, "nfs"),
        ),
        _scc(
            "hostaccess",
            "Every host namespace and host paths, but still the namespace's UID range and SELinux context; only "
            "for trusted pods.",
            host_network=True,
            host_ports=True,
            host_pid=True,
            host_ipc=True,
            host_dir=True,
            volumes=_HOST_VOLUMES,
        ),
    ]


def scc_cluster_role(scc: str) -> Obj:
    """`system:openshift:scc:<name>`: what `oc adm policy add-scc-to-user` binds on newer OpenShift 4.x."""
    return {
        "metadata": {"name": SCC_ROLE_PREFIX + scc},
        "rules": [
            {
                "apiGroups": [SCC_GROUP],
                "resources": ["securitycontextconstraints"],
                "resourceNames": [scc],
                "verbs": ["use"],
            }
        ],
    }


def network_config(
    cluster_network: str = SEED_CLUSTER_NETWORK,
    host_prefix: int = SEED_HOST_PREFIX,
    service_network: str = SERVICE_NETWORK,
    mtu: int = CLUSTER_NETWORK_MTU,
) -> Obj:
    """`networks.config.openshift.io/cluster` as `oc get network cluster -o yaml` showed it before the patch."""
    clusters = [{"cidr": cluster_network, "hostPrefix": host_prefix}]
    return {
        "metadata": {"name": "cluster"},
        "spec": {"clusterNetwork": clusters, "networkType": NETWORK_TYPE, "serviceNetwork": [service_network]},
        "status": {
            "clusterNetwork": [dict(c) for c in clusters],
            "clusterNetworkMTU": mtu,
            "networkType": NETWORK_TYPE,
            "serviceNetwork": [service_network],
        },
    }


def namespace(name: str) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def kubernetes_service() -> Obj:
    """The API server's own service in `default`; it takes the service network's first address, .1."""
    return {
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "172.30.0.1",
            "clusterIPs": ["172.30.0.1"],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
            "sessionAffinity": "None",
        },
    }


def _host_facts() -> dict[str, str]:
    """What the nodes really run on: they are namespaces of this machine, so they share its kernel and CPUs."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    memory_kib = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory_kib = int(line.split()[1])
    except OSError:
        pass
    try:
        disk_kib = shutil.disk_usage("/").total // 1024
    except OSError:
        disk_kib = 0
    return {
        "arch": arch,
        "kernel": os.uname().release,
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{memory_kib}Ki",
        "storage": f"{disk_kib}Ki",
    }


def node(name: str, address: str, pod_cidr: str, facts: dict[str, str] | None = None) -> Obj:
    """A Ready master node as `oc get node -o yaml` shows it; the seed's masters are schedulable workers too."""
    facts = facts or _host_facts()
    now = now_rfc3339()
    ident = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.kalab"))
    resources = {
        "cpu": facts["cpu"],
        "memory": facts["memory"],
        "ephemeral-storage": facts["storage"],
        "pods": str(MAX_PODS),
    }

    def condition(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": facts["arch"],
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": facts["arch"],
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/master": "",
                "node-role.kubernetes.io/worker": "",
                "node.openshift.io/os_id": "rhcos",
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                condition(
                    "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"
                ),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": facts["arch"],
                "bootID": ident,
                "containerRuntimeVersion": "kalab://lab",
                "kernelVersion": facts["kernel"],
                "kubeProxyVersion": KUBELET_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "machineID": ident.replace("-", ""),
                "operatingSystem": "linux",
                "osImage": "kalab lab node (a network namespace of this machine)",
                "systemUUID": ident,
            },
        },
    }


def nodes(ctx: LabContext) -> list[Obj]:
    """One Node per topology node; without a data plane, the seed's three masters and their addresses."""
    facts = _host_facts()
    if ctx.topology is not None:
        specs: Iterable[Any] = ctx.topology.spec.nodes
    else:
        specs = node_specs(SEED_NODES)
    return [node(spec.name, spec.ip, spec.pod_cidr, facts) for spec in specs]


def _ensure(ctx: LabContext, key: str, objects: Iterable[Obj]) -> None:
    rt = ctx.rt(key)
    for obj in objects:
        meta = obj["metadata"]
        if ctx.store.try_get(rt, meta.get("namespace"), meta["name"]) is not None:
            continue
        try:
            ctx.store.create(rt, obj, meta.get("namespace"))
        except ApiError as err:
            if err.code != 409:  # someone else created it in between: that is what we wanted
                raise


def bootstrap(ctx: LabContext) -> None:
    """Create what a fresh OpenShift-like cluster already has; existing objects are left as they are."""
    if ctx.topology is not None:
        spec = ctx.topology.spec
        config = network_config(spec.cluster_network, spec.host_prefix, mtu=spec.pod_mtu)
    else:
        config = network_config()
    _ensure(ctx, "/namespaces", [namespace(name) for name in NAMESPACES])
    _ensure(ctx, "config.openshift.io/networks", [config])
    sccs = security_context_constraints()
    _ensure(ctx, "security.openshift.io/securitycontextconstraints", sccs)
    _ensure(ctx, "rbac.authorization.k8s.io/clusterroles", [scc_cluster_role(objects.name_of(s)) for s in sccs])
    _ensure(ctx, "/nodes", nodes(ctx))
    _ensure(ctx, "/services", [kubernetes_service()])
