"""The kinds of object the lab serves: one ResourceType per resource, as discovery describes them.

Built-ins cover what the seed touches on OpenShift; a CustomResourceDefinition created through the API adds its
resource here at run time (and removes it when deleted), exactly as kube-apiserver's discovery follows CRDs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from kalab.model.errors import KalabError


@dataclass(frozen=True)
class Column:
    """One printer column (a CRD's additionalPrinterColumns entry): what `kubectl get` shows."""

    name: str
    type: str
    json_path: str
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = field(default_factory=frozenset)  # status, log, exec, proxy, scale
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    columns: tuple[Column, ...] = ()  # printer columns for CRD resources; built-ins have their own in printers.py

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Storage key, independent of version: `apps/daemonsets`, `/pods` for core."""
        return f"{self.group}/{self.plural}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of a collection or an object (what selfLink used to hold)."""
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


def _rt(
    api_version: str,
    kind: str,
    plural: str,
    namespaced: bool = True,
    short: Iterable[str] = (),
    sub: Iterable[str] = (),
    categories: Iterable[str] = (),
) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    return ResourceType(
        group, version, kind, plural, namespaced, kind.lower(), tuple(short), tuple(categories), frozenset(sub)
    )


ALL = ("all",)
# fmt: off
BUILTINS: tuple[ResourceType, ...] = (
    _rt("v1", "Namespace", "namespaces", False, ("ns",), ("status",)),
    _rt("v1", "Node", "nodes", False, ("no",), ("status", "proxy")),
    _rt("v1", "Pod", "pods", True, ("po",), ("status", "log", "exec", "attach", "portforward", "proxy"), ALL),
    _rt("v1", "Service", "services", True, ("svc",), ("status", "proxy"), ALL),
    _rt("v1", "Endpoints", "endpoints", True, ("ep",)),
    _rt("v1", "ConfigMap", "configmaps", True, ("cm",)),
    _rt("v1", "Secret", "secrets"),
    _rt("v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    _rt("v1", "Event", "events", True, ("ev",)),
    _rt("apps/v1", "DaemonSet", "daemonsets", True, ("ds",), ("status",), ALL),
    _rt("apps/v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale"), ALL),
    _rt("apps/v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"), ALL),
    _rt("rbac.authorization.k8s.io/v1", "Role", "roles"),
    _rt("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    _rt("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    _rt("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _rt("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False, ("crd", "crds"),
        ("status",)),
    _rt("config.openshift.io/v1", "Network", "networks", False, (), ("status",)),
    _rt("security.openshift.io/v1", "SecurityContextConstraints", "securitycontextconstraints", False, ("scc",)),
    _rt("operators.coreos.com/v1", "OperatorGroup", "operatorgroups", True, ("og",), ("status",)),
    _rt("operators.coreos.com/v1alpha1", "Subscription", "subscriptions", True, ("sub", "subs"), ("status",)),
    _rt("operators.coreos.com/v1alpha1", "ClusterServiceVersion", "clusterserviceversions", True, ("csv", "csvs"),
        ("status",)),
    _rt("operators.coreos.com/v1alpha1", "InstallPlan", "installplans", True, ("ip",), ("status",)),
    _rt("operators.coreos.com/v1alpha1", "CatalogSource", "catalogsources", True, ("catsrc",), ("status",)),
    _rt("monitoring.coreos.com/v1", "PodMonitor", "podmonitors", True, ("pmon",)),
    # Create-only reviews (what `kubectl auth can-i` and `kubectl auth whoami` post): answered, never stored.
    *(ResourceType(group, version, kind, plural, namespaced, kind.lower(), verbs=("create",))
      for group, version, kind, plural, namespaced in (
          ("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
          ("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False),
          ("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False),
          ("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", True),
          ("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False),
      )),
)
# fmt: on


class Registry:
    """Thread-safe set of served resources; lookups by path segments, by kind, or by what users type."""

    def __init__(self, types: Iterable[ResourceType] = BUILTINS) -> None:
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rt in types:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        with self._lock:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def remove(self, group: str, plural: str) -> None:
        with self._lock:
            for key in [k for k in self._types if k[0] == group and k[2] == plural]:
                del self._types[key]

    def __iter__(self) -> Iterator[ResourceType]:
        with self._lock:
            return iter(list(self._types.values()))

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType:
        for rt in self:
            if rt.api_version == api_version and rt.kind == kind:
                return rt
        raise KalabError(f"The lab serves no kind {kind} in {api_version}.")

    def by_key(self, key: str) -> ResourceType:
        """The preferred (first registered) version of a storage key such as `apps/daemonsets`."""
        for rt in self:
            if rt.key == key:
                return rt
        raise KalabError(f"The lab serves no resource {key}.")

    def resolve(self, name: str) -> ResourceType:
        """What a user types: plural, singular, kind or short name, optionally `name.group`."""
        lowered = name.lower()
        base, _, group = lowered.partition(".")
        for rt in self:
            names = {rt.plural, rt.singular_name, rt.kind.lower(), *rt.short_names}
            if base in names and (not group or rt.group == group or rt.group.startswith(group)):
                return rt
        raise KalabError(f'The lab serves no resource "{name}"; `kubectl api-resources` lists what it serves.')

    def groups(self) -> dict[str, list[str]]:
        """group → versions, core group as ""; the order discovery lists them in."""
        found: dict[str, list[str]] = {}
        for rt in self:
            versions = found.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return found
