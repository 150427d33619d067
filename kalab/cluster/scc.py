"""`oc adm policy add-scc-to-user privileged -z <sa> -n <ns>` in whichever form the cluster supports."""

from __future__ import annotations

from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from kalab.cluster._common import Progress, fail, report
from kalab.cluster.connect import Cluster
from kalab.model import manifests, objects
from kalab.model.errors import KalabError

SCC_API = "security.openshift.io/v1"
SCC_ROLE_PREFIX = "system:openshift:scc:"


def _scc(cluster: Cluster, name: str) -> dict[str, Any] | None:
    """The SCC as a dict, or None when the cluster has no such SCC (or no SCCs at all)."""
    try:
        sccs = cluster.dynamic.resources.get(api_version=SCC_API, kind="SecurityContextConstraints")
        return dict(sccs.get(name=name).to_dict())
    except (ResourceNotFoundError, NotFoundError):
        return None
    except ApiException as err:
        raise fail(f"Reading SCC {name}", err, "use a cluster-admin kubeconfig") from None


def grant_privileged(
    cluster: Cluster,
    namespace: str,
    service_account: str = "default",
    form: Literal["auto", "users", "rbac"] = "auto",
    scc: str = "privileged",
    progress: Progress = None,
) -> str:
    """Let `service_account` in `namespace` use the SCC; idempotent. Returns the form used ("users" or "rbac").

    "auto" picks "users" when the SCC exists and carries a `users` list (older 4.x), else "rbac" (a RoleBinding to
    ClusterRole system:openshift:scc:<scc>, as newer 4.x does).
    """
    user = manifests.scc_user(namespace, service_account)
    current = _scc(cluster, scc)
    if form == "auto":
        form = "users" if current is not None and isinstance(current.get("users"), list) else "rbac"
    if form == "users":
        if current is None:
            raise KalabError(f'The cluster has no SCC "{scc}"; use form="rbac" or check the SCC name (`oc get scc`).')
        users = current.get("users")
        if isinstance(users, list) and user in users:
            report(progress, f"{user} is already in SCC {scc}'s users")
            return form
        patch = manifests.scc_grant(namespace, service_account, scc, form="users")
        if not isinstance(users, list):
            patch = [{"op": "add", "path": "/users", "value": [user]}]
        try:
            sccs = cluster.dynamic.resources.get(api_version=SCC_API, kind="SecurityContextConstraints")
            sccs.patch(name=scc, body=patch, content_type="application/json-patch+json")
        except ApiException as err:
            raise fail(f"Adding {user} to SCC {scc}", err, "use a cluster-admin kubeconfig") from None
        report(progress, f"added {user} to SCC {scc}'s users")
        return form
    if form == "rbac":
        binding = manifests.scc_grant(namespace, service_account, scc, form="rbac")
        assert isinstance(binding, dict)
        name = objects.name_of(binding)
        try:
            existing = cluster.rbac.read_namespaced_role_binding(name, namespace)
        except ApiException as err:
            if err.status != 404:
                raise fail(f"Reading RoleBinding {name}", err, "use a cluster-admin kubeconfig") from None
            existing = None
        try:
            if existing is None:
                cluster.rbac.create_namespaced_role_binding(namespace, _role_binding(binding))
                report(progress, f"created RoleBinding {namespace}/{name} for {user}")
            elif not any(
                s.kind == "ServiceAccount" and s.name == service_account and s.namespace == namespace
                for s in existing.subjects or []
            ):
                subjects = [s.to_dict() for s in existing.subjects or []] + binding["subjects"]
                cluster.rbac.patch_namespaced_role_binding(name, namespace, {"subjects": subjects})
                report(progress, f"added {user} to RoleBinding {namespace}/{name}")
            else:
                report(progress, f"RoleBinding {namespace}/{name} already grants {user}")
        except ApiException as err:
            raise fail(f"Binding {user} to {SCC_ROLE_PREFIX}{scc}", err, "use a cluster-admin kubeconfig") from None
        return form
    raise KalabError(f'The SCC grant form "{form}" is unknown; use "auto", "users" or "rbac".')


def has_privileged(cluster: Cluster, namespace: str, service_account: str = "default", scc: str = "privileged") -> bool:
    """True when the service account may use the SCC: named in its users/groups, or bound to its ClusterRole."""
    user = manifests.scc_user(namespace, service_account)
    current = _scc(cluster, scc)
    if current is not None:
        groups = set(current.get("groups") or [])
        if user in (current.get("users") or []) or groups & {
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
        }:
            return True
    role = SCC_ROLE_PREFIX + scc
    try:
        bindings = [
            (b.role_ref.name, b.subjects or []) for b in cluster.rbac.list_namespaced_role_binding(namespace).items
        ]
        bindings += [(b.role_ref.name, b.subjects or []) for b in cluster.rbac.list_cluster_role_binding().items]
    except ApiException as err:
        raise fail("Listing role bindings", err, "use a cluster-admin kubeconfig") from None
    for ref, subjects in bindings:
        if ref == role and any(
            s.kind == "ServiceAccount" and s.name == service_account and s.namespace == namespace for s in subjects
        ):
            return True
    return False


def _role_binding(manifest: dict[str, Any]) -> client.V1RoleBinding:
    binding = client.V1RoleBinding.from_dict(manifest)
    assert binding is not None
    return binding
