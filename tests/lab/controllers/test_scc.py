"""SCC admission: the seed's keepalived pod is refused until its service account may use `privileged`.

Both grant forms of `oc adm policy add-scc-to-user privileged -z default -n keepalived-operator` work: the SA in the
SCC's `users` (older 4.x) or a binding to ClusterRole `system:openshift:scc:privileged` (newer 4.x).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.controllers.bootstrap import bootstrap
from kalab.lab.controllers.scc import SCC_ANNOTATION, install_scc_admission
from tests.lab.controllers.cluster_kit import ControlPlane
from tests.support.paths import FIXTURES

NS = "keepalived-operator"
SA = f"system:serviceaccount:{NS}:default"
SCC = "security.openshift.io/securitycontextconstraints"


@pytest.fixture
def cp(tmp_path: Path) -> ControlPlane:
    plane = ControlPlane(tmp_path)
    bootstrap(plane.ctx)
    install_scc_admission(plane.ctx)
    plane.namespace(NS)
    return plane


def keepalived_pod() -> dict[str, Any]:
    """The seed's keepalived DaemonSet pod as the DaemonSet controller would create it (no identity, no status)."""
    pod = yaml.safe_load((FIXTURES / "seed_keepalived_pod.yaml").read_text())
    meta = pod["metadata"]
    for field in ("name", "uid", "resourceVersion", "creationTimestamp", "selfLink", "annotations"):
        meta.pop(field, None)
    pod.pop("status", None)
    return pod


def plain_pod(name: str = "test-0", **security: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "php", "image": "quay.io/wangzheng422/php:demo.02"}
    if security:
        container["securityContext"] = security
    return {"metadata": {"name": name, "labels": {"env": "test"}}, "spec": {"containers": [container]}}


def create_pod(cp: ControlPlane, pod: dict[str, Any], namespace: str = NS) -> dict[str, Any]:
    return cp.create("/pods", copy.deepcopy(pod), namespace)


def refusal(cp: ControlPlane, pod: dict[str, Any], namespace: str = NS) -> ApiError:
    with pytest.raises(ApiError) as err:
        create_pod(cp, pod, namespace)
    return err.value


def test_keepalived_pod_is_refused_with_openshifts_wording(cp: ControlPlane) -> None:
    err = refusal(cp, keepalived_pod())
    assert err.code == 403 and err.reason == "Forbidden"
    message = err.message
    assert message.startswith(
        'pods "keepalivedgroup-workers-" is forbidden: unable to validate against any security context constraint: ['
    )
    assert 'provider "anyuid": Forbidden: not usable by user or serviceaccount' in message
    assert 'provider "privileged": Forbidden: not usable by user or serviceaccount' in message
    # restricted-v2 is usable by every authenticated account, so its concrete violations are listed.
    assert "provider restricted-v2: .spec.securityContext.hostNetwork: Invalid value: true: " in message
    assert (
        "spec.containers[0].securityContext.privileged: Invalid value: true: Privileged containers are not allowed"
        in message
    )
    assert 'spec.volumes[0]: Invalid value: "hostPath": hostPath volumes are not allowed to be used' in message
    assert "spec.containers[2].ports[0].hostPort: Invalid value: 9650: Host ports are not allowed to be used" in message
    assert "spec.initContainers[0].securityContext.runAsUser: Invalid value: 0: must be in the ranges: [" in message
    assert message.endswith("]")
    assert cp.store.list(cp.rt("/pods"), NS)[0] == []


def test_granted_through_the_scc_users_list(cp: ControlPlane) -> None:
    refusal(cp, keepalived_pod())
    privileged = cp.get(SCC, "privileged")
    assert privileged is not None
    cp.patch(SCC, "privileged", {"users": [*privileged["users"], SA]})
    pod = create_pod(cp, keepalived_pod())
    assert pod["metadata"]["annotations"][SCC_ANNOTATION] == "privileged"
    assert pod["spec"]["serviceAccountName"] == "default"
    # Only that namespace's default account: another namespace is still refused.
    cp.namespace("other")
    assert refusal(cp, keepalived_pod(), "other").code == 403


@pytest.mark.parametrize("kind", ["ClusterRoleBinding", "RoleBinding"])
def test_granted_through_a_binding_to_the_scc_cluster_role(cp: ControlPlane, kind: str) -> None:
    refusal(cp, keepalived_pod())
    binding = {
        "metadata": {"name": "system:openshift:scc:privileged"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:openshift:scc:privileged",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}],
    }
    if kind == "RoleBinding":
        cp.create("rbac.authorization.k8s.io/rolebindings", binding, NS)
    else:
        cp.create("rbac.authorization.k8s.io/clusterrolebindings", binding)
    pod = create_pod(cp, keepalived_pod())
    assert pod["metadata"]["annotations"][SCC_ANNOTATION] == "privileged"
    assert pod["metadata"]["name"].startswith("keepalivedgroup-workers-")


def test_a_role_binding_elsewhere_grants_nothing(cp: ControlPlane) -> None:
    cp.namespace("elsewhere")
    cp.create(
        "rbac.authorization.k8s.io/rolebindings",
        {
            "metadata": {"name": "scc"},
            "roleRef": {"kind": "ClusterRole", "name": "system:openshift:scc:privileged"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}],
        },
        "elsewhere",
    )
    assert refusal(cp, keepalived_pod()).code == 403


def test_any_role_with_use_on_the_scc_grants_it(cp: ControlPlane) -> None:
    cp.create(
        "rbac.authorization.k8s.io/roles",
        {
            "metadata": {"name": "use-privileged"},
            "rules": [
                {
                    "apiGroups": ["security.openshift.io"],
                    "resources": ["securitycontextconstraints"],
                    "resourceNames": ["privileged"],
                    "verbs": ["use"],
                }
            ],
        },
        NS,
    )
    cp.create(
        "rbac.authorization.k8s.io/rolebindings",
        {
            "metadata": {"name": "use-privileged"},
            "roleRef": {"kind": "Role", "name": "use-privileged"},
            "subjects": [{"kind": "Group", "name": f"system:serviceaccounts:{NS}"}],
        },
        NS,
    )
    assert create_pod(cp, keepalived_pod())["metadata"]["annotations"][SCC_ANNOTATION] == "privileged"


def test_plain_pod_gets_restricted_v2_even_with_privileged_granted(cp: ControlPlane) -> None:
    assert create_pod(cp, plain_pod())["metadata"]["annotations"][SCC_ANNOTATION] == "restricted-v2"
    privileged = cp.get(SCC, "privileged")
    assert privileged is not None
    cp.patch(SCC, "privileged", {"users": [*privileged["users"], SA]})
    # The most restrictive SCC that admits a pod wins, not the most powerful one the account may use.
    assert create_pod(cp, plain_pod("test-1"))["metadata"]["annotations"][SCC_ANNOTATION] == "restricted-v2"


def test_root_needs_anyuid_and_anyuid_goes_first(cp: ControlPlane) -> None:
    err = refusal(cp, plain_pod(runAsUser=0))
    assert "spec.containers[0].securityContext.runAsUser: Invalid value: 0: must be in the ranges" in err.message
    cp.create(
        "rbac.authorization.k8s.io/clusterrolebindings",
        {
            "metadata": {"name": "anyuid"},
            "roleRef": {"kind": "ClusterRole", "name": "system:openshift:scc:anyuid"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}],
        },
    )
    assert create_pod(cp, plain_pod(runAsUser=0))["metadata"]["annotations"][SCC_ANNOTATION] == "anyuid"
    # anyuid has priority 10, so OpenShift tries it before restricted-v2 even for a pod that needs nothing.
    assert create_pod(cp, plain_pod("test-1"))["metadata"]["annotations"][SCC_ANNOTATION] == "anyuid"


def test_host_network_alone_fits_hostnetwork_scc(cp: ControlPlane) -> None:
    pod = plain_pod()
    pod["spec"]["hostNetwork"] = True
    pod["spec"]["serviceAccountName"] = "router"
    err = refusal(cp, pod)
    assert "Host network is not allowed to be used" in err.message
    hostnetwork = cp.get(SCC, "hostnetwork-v2")
    assert hostnetwork is not None
    cp.patch(SCC, "hostnetwork-v2", {"users": [f"system:serviceaccount:{NS}:router"]})
    assert create_pod(cp, pod)["metadata"]["annotations"][SCC_ANNOTATION] == "hostnetwork-v2"


def test_updates_are_not_rechecked(cp: ControlPlane) -> None:
    pod = create_pod(cp, plain_pod())
    pod["metadata"]["labels"]["extra"] = "yes"
    updated = cp.store.update(cp.rt("/pods"), pod, NS)
    assert updated["metadata"]["annotations"][SCC_ANNOTATION] == "restricted-v2"
