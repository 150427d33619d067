"""Discovery documents: `/version`, `/api`, `/apis`, `/apis/{group}` and the APIResourceLists of each version.

kubectl builds its whole view of the cluster (short names like svc/ds/csv/scc, which resources are namespaced,
what `all` means) from these, so they are generated from the Registry and follow CRDs as they come and go.
The plain (non-aggregated) forms are enough: kubectl asks for aggregated discovery first and accepts them.
"""

from __future__ import annotations

import re
from typing import Any

from kalab.lab.apiserver.resources import Registry, ResourceType

Doc = dict[str, Any]

# Shaped like an OpenShift 4 cluster's answer: a Kubernetes version with a build suffix.
KUBE_MAJOR, KUBE_MINOR, KUBE_PATCH = 1, 30, 4
GIT_VERSION = f"v{KUBE_MAJOR}.{KUBE_MINOR}.{KUBE_PATCH}+kalab"

_STATUS_VERBS = ["get", "patch", "update"]
_PROXY_VERBS = ["create", "delete", "get", "patch", "update"]
_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_info() -> Doc:
    return {
        "major": str(KUBE_MAJOR),
        "minor": str(KUBE_MINOR),
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-08-01T00:00:00Z",
        "goVersion": "go1.22.5",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key giving Kubernetes' version order: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > anything else."""
    match = _VERSION.match(version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0), version)


def _sorted_versions(versions: list[str]) -> list[str]:
    return sorted(versions, key=version_priority)


def api_versions(server_address: str) -> Doc:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(registry: Registry, group: str) -> Doc | None:
    versions = registry.groups().get(group)
    if not group or not versions:
        return None
    ordered = [{"groupVersion": f"{group}/{v}", "version": v} for v in _sorted_versions(versions)]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": ordered, "preferredVersion": ordered[0]}


def api_group_list(registry: Registry) -> Doc:
    groups = [doc for name in registry.groups() if name and (doc := api_group(registry, name)) is not None]
    for doc in groups:
        del doc["kind"], doc["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _subresource(rt: ResourceType, sub: str) -> Doc:
    doc: Doc = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced, "kind": rt.kind}
    if sub == "status":
        doc["verbs"] = _STATUS_VERBS
    elif sub == "scale":
        doc.update(group="autoscaling", version="v1", kind="Scale", verbs=_STATUS_VERBS)
    elif sub == "log":
        doc["verbs"] = ["get"]
    elif sub == "exec":
        doc.update(kind="PodExecOptions", verbs=["create", "get"])
    elif sub == "attach":
        doc.update(kind="PodAttachOptions", verbs=["create", "get"])
    elif sub == "portforward":
        doc.update(kind="PodPortForwardOptions", verbs=["create", "get"])
    elif sub == "proxy":
        doc.update(kind=f"{rt.kind}ProxyOptions", verbs=_PROXY_VERBS)
    else:
        doc["verbs"] = ["get"]
    return doc


def resource_entry(rt: ResourceType) -> Doc:
    doc: Doc = {
        "name": rt.plural,
        "singularName": rt.singular_name,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        doc["shortNames"] = list(rt.short_names)
    if rt.categories:
        doc["categories"] = list(rt.categories)
    return doc


def resource_list(registry: Registry, group: str, version: str) -> Doc | None:
    """The APIResourceList of one group version, or None when the registry serves nothing there."""
    types = sorted((rt for rt in registry if rt.group == group and rt.version == version), key=lambda r: r.plural)
    if not types:
        return None
    resources: list[Doc] = []
    for rt in types:
        resources.append(resource_entry(rt))
        resources += [_subresource(rt, sub) for sub in sorted(rt.subresources)]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
