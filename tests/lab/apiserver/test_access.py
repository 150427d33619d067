"""Access reviews and impersonation, as kube-apiserver answers them: the admin may do anything, others what RBAC
(plus the bootstrap policy and SCC users) grants."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes import client

from kalab.lab.apiserver.server import RunningServer
from kalab.lab.apiserver.store import Store
from tests.lab.apiserver.api_kit import make_kubectl, official_client, raw_request

SA = "system:serviceaccount:demo:default"
RBAC = "rbac.authorization.k8s.io"


def grant_pod_reader(store: Store) -> None:
    rt = store.registry.by_key
    store.create(
        rt(f"{RBAC}/roles"),
        {
            "metadata": {"name": "reader", "namespace": "demo"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}],
        },
    )
    store.create(
        rt(f"{RBAC}/rolebindings"),
        {
            "metadata": {"name": "reader", "namespace": "demo"},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}],
        },
    )


def post(server: RunningServer, path: str, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
    raw = raw_request(server, "POST", path, {"Content-Type": "application/json", **headers}, json.dumps(body).encode())
    return raw.status, raw.json()


def test_the_admin_may_do_anything(server: RunningServer) -> None:
    with official_client(server) as api:
        review = client.AuthorizationV1Api(api).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(verb="delete", resource="nodes", name="master-0")
                )
            )
        )
    assert review.status.allowed is True


def test_subject_access_review_follows_rbac(server: RunningServer, lab_store: Store) -> None:
    grant_pod_reader(lab_store)
    with official_client(server) as api:
        authz = client.AuthorizationV1Api(api)

        def allowed(verb: str, resource: str, subresource: str = "", namespace: str = "demo") -> Any:
            attrs = client.V1ResourceAttributes(
                verb=verb, resource=resource, subresource=subresource or None, namespace=namespace
            )
            spec = client.V1SubjectAccessReviewSpec(
                user=SA, groups=["system:serviceaccounts"], resource_attributes=attrs
            )
            return authz.create_subject_access_review(client.V1SubjectAccessReview(spec=spec)).status

        granted = allowed("list", "pods")
        assert granted.allowed is True
        assert (
            granted.reason
            == 'RBAC: allowed by RoleBinding "reader/demo" of Role "reader" to ServiceAccount "demo/default"'
        )
        assert allowed("get", "pods", "log").allowed is True
        assert allowed("create", "pods", "exec").allowed is False
        assert allowed("list", "pods", namespace="default").allowed is False
        assert allowed("delete", "pods").allowed is False


def test_local_review_must_name_its_namespace(server: RunningServer) -> None:
    body = {"spec": {"user": SA, "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}}
    code, doc = post(server, "/apis/authorization.k8s.io/v1/namespaces/demo/localsubjectaccessreviews", body)
    assert code == 422 and "must match metadata.namespace" in doc["message"]
    body["spec"]["resourceAttributes"]["namespace"] = "demo"
    code, doc = post(server, "/apis/authorization.k8s.io/v1/namespaces/demo/localsubjectaccessreviews", body)
    assert code == 201 and doc["kind"] == "LocalSubjectAccessReview" and doc["status"] == {"allowed": False}


def test_reviews_are_create_only(server: RunningServer) -> None:
    assert raw_request(server, "GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews").status == 405
    empty = post(server, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {"spec": {}})
    assert empty[0] == 422
    found = raw_request(server, "GET", "/apis/authorization.k8s.io/v1").json()
    verbs = {r["name"]: r["verbs"] for r in found["resources"]}
    assert verbs["selfsubjectaccessreviews"] == ["create"] and "subjectaccessreviews" in verbs


def test_an_impersonated_user_gets_what_rbac_grants(server: RunningServer, lab_store: Store) -> None:
    grant_pod_reader(lab_store)
    as_sa = {"Impersonate-User": SA}
    assert raw_request(server, "GET", "/api/v1/namespaces/demo/pods", as_sa).status == 200
    refused = raw_request(server, "GET", "/api/v1/namespaces/demo/services", as_sa)
    assert refused.status == 403
    assert refused.json()["message"] == (
        f'services is forbidden: User "{SA}" cannot list resource "services" in API group "" in the namespace "demo"'
    )
    code, doc = post(server, "/apis/authentication.k8s.io/v1/selfsubjectreviews", {}, **as_sa)
    assert code == 201
    assert doc["status"]["userInfo"] == {
        "username": SA,
        "groups": ["system:serviceaccounts", "system:serviceaccounts:demo", "system:authenticated"],
    }
    # Asking about others needs rights the service account does not have.
    sar = {"spec": {"user": "x", "resourceAttributes": {"verb": "get", "resource": "pods"}}}
    assert post(server, "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar, **as_sa)[0] == 403


def test_an_scc_listing_a_user_lets_it_use_the_scc(server: RunningServer, lab_store: Store) -> None:
    lab_store.create(
        lab_store.registry.by_key("security.openshift.io/securitycontextconstraints"),
        {"metadata": {"name": "privileged"}, "users": [SA]},
    )
    attrs = {"verb": "use", "group": "security.openshift.io", "resource": "securitycontextconstraints"}
    code, doc = post(
        server,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {"spec": {"user": SA, "resourceAttributes": {**attrs, "name": "privileged"}}},
    )
    assert code == 201 and doc["status"]["allowed"] is True
    code, doc = post(
        server,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {"spec": {"user": SA, "resourceAttributes": {**attrs, "name": "anyuid"}}},
    )
    assert doc["status"]["allowed"] is False


def test_kubectl_auth_can_i_and_whoami(server: RunningServer, lab_store: Store, tmp_path: Path) -> None:
    grant_pod_reader(lab_store)
    kubectl = make_kubectl(server, tmp_path / "home")
    assert kubectl("auth", "can-i", "create", "pods").stdout == "yes\n"
    assert kubectl("auth", "can-i", "list", "pods", "-n", "demo", f"--as={SA}").stdout == "yes\n"
    refused = kubectl("auth", "can-i", "create", "pods", "-n", "demo", f"--as={SA}", check=False)
    assert (refused.returncode, refused.stdout) == (1, "no\n")
    listed = kubectl("auth", "can-i", "--list", "-n", "demo", f"--as={SA}").stdout
    assert any(line.split()[:1] == ["pods"] and "[get list]" in line for line in listed.splitlines()), listed
    assert "Username    system:admin" in kubectl("auth", "whoami").stdout
