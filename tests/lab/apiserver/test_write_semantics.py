"""Write semantics as kube-apiserver has them: field ownership and server-side apply (with kubectl), Status bodies,
dry runs through admission, finalizers, foreground deletion and namespace termination."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kalab.lab.apiserver.server import RunningServer
from kalab.lab.apiserver.store import Store
from kalab.lab.context import LabContext
from kalab.lab.controllers.services import install_service_admission
from tests.lab.apiserver.api_kit import Kubectl, raw_request, wait_for

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
  labels: {app: runbook}
data:
  cidr: 172.21.6.32/27
  interface: ens3
"""

JSON = {"Content-Type": "application/json"}
APPLY = {"Content-Type": "application/apply-patch+yaml"}


def managed(kubectl: Kubectl, *target: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The object as kubectl shows it with managedFields, and those managedFields."""
    shown = json.loads(kubectl("get", *target, "-o", "json", "--show-managed-fields").stdout)
    return shown, shown["metadata"].get("managedFields") or []


# -- server-side apply -------------------------------------------------------------------------------------------


def test_apply_twice_without_a_field_removes_it(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "-f", "-", stdin=CONFIGMAP)
    shown, fields = managed(kubectl, "-n", "demo", "configmap", "settings")
    assert shown["data"] == {"cidr": "172.21.6.32/27", "interface": "ens3"}
    assert [(f["manager"], f["operation"], f["fieldsType"]) for f in fields] == [("kubectl", "Apply", "FieldsV1")]
    assert fields[0]["fieldsV1"] == {
        "f:data": {"f:cidr": {}, "f:interface": {}},
        "f:metadata": {"f:labels": {"f:app": {}}},
    }
    assert fields[0]["apiVersion"] == "v1" and fields[0]["time"].endswith("Z")

    kubectl("apply", "--server-side", "-f", "-", stdin=CONFIGMAP.replace("  interface: ens3\n", ""))
    shown, fields = managed(kubectl, "-n", "demo", "configmap", "settings")
    assert shown["data"] == {"cidr": "172.21.6.32/27"}  # owned by this applier alone, so it went
    assert fields[0]["fieldsV1"]["f:data"] == {"f:cidr": {}}


def test_a_field_another_manager_owns_conflicts_until_forced(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--field-manager=runbook", "-f", "-", stdin=CONFIGMAP)
    changed = CONFIGMAP.replace("ens3", "ens4")
    refused = kubectl("apply", "--server-side", "--field-manager=operator", "-f", "-", stdin=changed, check=False)
    assert refused.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "runbook": .data.interface' in refused.stderr
    assert "--force-conflicts" in refused.stderr  # kubectl's advice, shown for a Conflict with causes
    shown, _ = managed(kubectl, "-n", "demo", "configmap", "settings")
    assert shown["data"]["interface"] == "ens3"

    kubectl("apply", "--server-side", "--field-manager=operator", "--force-conflicts", "-f", "-", stdin=changed)
    shown, fields = managed(kubectl, "-n", "demo", "configmap", "settings")
    assert shown["data"]["interface"] == "ens4"
    owners = {f["manager"]: f["fieldsV1"] for f in fields}
    assert "f:interface" in owners["operator"]["f:data"]
    assert "f:interface" not in owners["runbook"]["f:data"]  # forcing took the field away
    assert "f:cidr" in owners["runbook"]["f:data"] and "f:cidr" in owners["operator"]["f:data"]  # shared


def test_conflict_status_names_every_field_and_manager(server: RunningServer) -> None:
    path = "/api/v1/namespaces/demo/configmaps/settings"
    first = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: '1', b: '2'}\n"
    assert raw_request(server, "PATCH", path + "?fieldManager=one", APPLY, first).status == 201
    second = first.replace(b"'1'", b"'9'").replace(b"'2'", b"'8'")
    answer = raw_request(server, "PATCH", path + "?fieldManager=two", APPLY, second)
    assert answer.status == 409
    assert answer.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Apply failed with 2 conflicts: conflicts with "one":\n- .data.a\n- .data.b',
        "reason": "Conflict",
        "details": {
            "causes": [
                {"reason": "FieldManagerConflict", "message": 'conflict with "one"', "field": ".data.a"},
                {"reason": "FieldManagerConflict", "message": 'conflict with "one"', "field": ".data.b"},
            ]
        },
        "code": 409,
    }
    missing = raw_request(server, "PATCH", path, APPLY, first)
    assert missing.status == 422
    assert missing.json()["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )


def test_list_items_merge_by_their_keys(server: RunningServer) -> None:
    path = "/apis/apps/v1/namespaces/demo/deployments/web"
    base = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]},
            },
        },
    }
    assert raw_request(server, "PATCH", path + "?fieldManager=web", APPLY, json.dumps(base).encode()).status == 201
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "exporter", "image": "exporter:1"}]}}},
    }
    answer = raw_request(server, "PATCH", path + "?fieldManager=sidecar", APPLY, json.dumps(sidecar).encode())
    assert answer.status == 200, answer.body
    deployment = answer.json()
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "exporter"]
    entries = {f["manager"]: f["fieldsV1"] for f in deployment["metadata"]["managedFields"]}
    web = entries["web"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    # An item is owned itself ("."), keyed by its list-map keys, protocol defaulted as the schema defaults it.
    assert web["f:ports"] == {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}
    assert 'k:{"name":"exporter"}' in entries["sidecar"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    # The sidecar's applier drops its container: only its own item goes.
    sidecar["spec"]["template"]["spec"]["containers"] = []
    answer = raw_request(server, "PATCH", path + "?fieldManager=sidecar", APPLY, json.dumps(sidecar).encode())
    assert [c["name"] for c in answer.json()["spec"]["template"]["spec"]["containers"]] == ["web"]


def test_every_write_records_its_manager(api: client.ApiClient, kubectl: Kubectl) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("demo", {"metadata": {"name": "typed"}, "data": {"k": "v"}})
    created = core.read_namespaced_config_map("typed", "demo").metadata.managed_fields
    # No ?fieldManager=: the manager is the program in the client's User-Agent, as kube-apiserver derives it.
    assert [(f.manager, f.operation) for f in created] == [("OpenAPI-Generator", "Update")]
    assert created[0].fields_v1 == {"f:data": {".": {}, "f:k": {}}}
    core.patch_namespaced_config_map("typed", "demo", {"data": {"x": "y"}}, field_manager="patcher")
    kubectl("label", "-n", "demo", "configmap", "typed", "tier=lab")
    _, fields = managed(kubectl, "-n", "demo", "configmap", "typed")
    by_manager = {f["manager"]: f for f in fields}
    assert set(by_manager) == {"OpenAPI-Generator", "patcher", "kubectl-label"}
    assert by_manager["patcher"]["fieldsV1"] == {"f:data": {"f:x": {}}}
    assert by_manager["kubectl-label"]["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:tier": {}}}}


# -- create answers and Status bodies ----------------------------------------------------------------------------


def test_a_created_service_comes_back_with_its_status(server: RunningServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    body = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}, "status": {"loadBalancer": {"x": 1}}}
    answer = raw_request(server, "POST", "/api/v1/namespaces/demo/services", JSON, json.dumps(body).encode())
    assert answer.status == 201
    assert answer.json()["status"] == {"loadBalancer": {}}  # what a client sends as status is not kept
    assert core.read_namespaced_service("web", "demo").status.load_balancer is not None
    pod = core.create_namespaced_pod(
        "demo", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    )
    assert (pod.status.phase, pod.status.qos_class) == ("Pending", "BestEffort")


def test_status_bodies_match_kube_apiserver(server: RunningServer) -> None:
    cm = json.dumps({"metadata": {"name": "twice"}}).encode()
    assert raw_request(server, "POST", "/api/v1/namespaces/demo/configmaps", JSON, cm).status == 201
    again = raw_request(server, "POST", "/api/v1/namespaces/demo/configmaps", JSON, cm)
    assert again.status == 409
    assert again.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "twice" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "twice", "kind": "configmaps"},
        "code": 409,
    }
    missing = raw_request(server, "GET", "/apis/apps/v1/namespaces/demo/deployments/nothing")
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nothing" not found',
        "reason": "NotFound",
        "details": {"name": "nothing", "group": "apps", "kind": "deployments"},
        "code": 404,
    }
    stale = json.dumps({"metadata": {"name": "twice", "resourceVersion": "1"}, "data": {"a": "b"}}).encode()
    conflict = raw_request(server, "PUT", "/api/v1/namespaces/demo/configmaps/twice", JSON, stale)
    assert conflict.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on configmaps "twice": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "reason": "Conflict",
        "details": {"name": "twice", "kind": "configmaps"},
        "code": 409,
    }
    precondition = json.dumps({"preconditions": {"uid": "not-it"}}).encode()
    refused = raw_request(server, "DELETE", "/api/v1/namespaces/demo/configmaps/twice", JSON, precondition)
    assert refused.status == 409
    assert refused.json()["message"].startswith(
        'Operation cannot be fulfilled on configmaps "twice": Precondition failed: UID in precondition: not-it, '
        "UID in object meta: "
    )
    invalid = raw_request(server, "POST", "/api/v1/namespaces/demo/configmaps", JSON, b'{"metadata": {}}')
    assert invalid.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required',
        "reason": "Invalid",
        "details": {
            "name": "",
            "kind": "ConfigMap",
            "causes": [
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value: name or generateName is required",
                    "field": "metadata.name",
                }
            ],
        },
        "code": 422,
    }


# -- dry run -----------------------------------------------------------------------------------------------------


SERVICE_WITH_EXTERNAL_IP = """\
apiVersion: v1
kind: Service
metadata:
  name: pinned
  namespace: demo
spec:
  externalIPs: [172.21.6.40]
  ports: [{port: 80}]
"""


def test_server_dry_run_goes_through_admission_and_stores_nothing(
    lab_store: Store, server: RunningServer, kubectl: Kubectl, tmp_path: Path
) -> None:
    install_service_admission(LabContext(store=lab_store, state_dir=tmp_path / "lab"))
    refused = kubectl("create", "--dry-run=server", "-f", "-", stdin=SERVICE_WITH_EXTERNAL_IP, check=False)
    assert refused.returncode != 0
    assert "externalIP is not allowed" in refused.stderr
    allowed = SERVICE_WITH_EXTERNAL_IP.replace("  externalIPs: [172.21.6.40]\n", "")
    shown = json.loads(kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=allowed).stdout)
    assert shown["spec"]["clusterIP"].startswith("172.30.")  # admission allocated it, as it would for real
    assert shown["metadata"]["uid"] and "resourceVersion" not in shown["metadata"]
    assert lab_store.try_get(lab_store.registry.by_key("/services"), "demo", "pinned") is None
    kubectl("create", "-f", "-", stdin=allowed)
    kubectl("delete", "--dry-run=server", "-n", "demo", "service", "pinned")
    assert lab_store.try_get(lab_store.registry.by_key("/services"), "demo", "pinned") is not None


# -- finalizers, foreground deletion, namespaces -----------------------------------------------------------------


def test_finalizers_hold_an_object_until_they_are_removed(server: RunningServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("demo", {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    answer = raw_request(server, "DELETE", "/api/v1/namespaces/demo/configmaps/held")
    assert answer.status == 200 and answer.json()["kind"] == "ConfigMap"  # the marked object, not a Status
    held = core.read_namespaced_config_map("held", "demo")
    assert held.metadata.deletion_timestamp is not None and held.metadata.deletion_grace_period_seconds == 0
    body = {"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}
    with pytest.raises(client.ApiException) as refused:
        core.patch_namespaced_config_map("held", "demo", body)
    assert refused.value.status == 422 and "no new finalizers" in json.loads(refused.value.body)["message"]
    core.patch_namespaced_config_map("held", "demo", [{"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(client.ApiException) as gone:
        core.read_namespaced_config_map("held", "demo")
    assert gone.value.status == 404


def test_foreground_deletion_waits_for_dependents(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map("demo", {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map("demo", {"metadata": {"name": "free", "ownerReferences": [ref]}})
    held = {"name": "held", "ownerReferences": [ref], "finalizers": ["example.com/hold"]}
    core.create_namespaced_config_map("demo", {"metadata": held})
    core.delete_namespaced_config_map("owner", "demo", propagation_policy="Foreground")
    waiting = core.read_namespaced_config_map("owner", "demo")
    assert waiting.metadata.finalizers == ["foregroundDeletion"] and waiting.metadata.deletion_timestamp
    names = [c.metadata.name for c in core.list_namespaced_config_map("demo").items]
    assert "free" not in names and "held" in names
    core.patch_namespaced_config_map("held", "demo", {"metadata": {"finalizers": None}})
    names = [c.metadata.name for c in core.list_namespaced_config_map("demo").items]
    assert "owner" not in names and "held" not in names


def test_orphan_deletion_keeps_dependents_without_the_reference(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map("demo", {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map("demo", {"metadata": {"name": "child", "ownerReferences": [ref]}})
    core.delete_namespaced_config_map("owner", "demo", propagation_policy="Orphan")
    assert core.read_namespaced_config_map("child", "demo").metadata.owner_references is None


def test_kubectl_delete_namespace_terminates_through_its_finalizers(
    api: client.ApiClient, kubectl: Kubectl, lab_store: Store
) -> None:
    core = client.CoreV1Api(api)
    namespace = core.create_namespace({"metadata": {"name": "scratch"}})
    assert namespace.spec.finalizers == ["kubernetes"] and namespace.status.phase == "Active"
    assert namespace.metadata.labels == {"kubernetes.io/metadata.name": "scratch"}
    core.create_namespaced_config_map("scratch", {"metadata": {"name": "plain"}})
    core.create_namespaced_config_map("scratch", {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    kubectl("delete", "namespace", "scratch", "--wait=false")
    ns_rt = lab_store.registry.by_key("/namespaces")

    def conditions() -> dict[str, tuple[str, str]]:
        ns = lab_store.try_get(ns_rt, None, "scratch") or {}
        return {c["type"]: (c["status"], c["reason"]) for c in (ns.get("status") or {}).get("conditions") or []}

    wait_for(
        lambda: conditions().get("NamespaceFinalizersRemaining") == ("True", "SomeFinalizersRemain"),
        what="the namespace controller to report the held content",
    )
    ns = lab_store.get(ns_rt, None, "scratch")
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert conditions()["NamespaceContentRemaining"] == ("True", "SomeResourcesRemain")
    assert conditions()["NamespaceDeletionDiscoveryFailure"] == ("False", "ResourcesDiscovered")
    message = {c["type"]: c["message"] for c in ns["status"]["conditions"]}
    assert message["NamespaceContentRemaining"] == "Some resources are remaining: configmaps has 1 resource instances"
    assert message["NamespaceFinalizersRemaining"] == (
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    )
    assert [c.metadata.name for c in core.list_namespaced_config_map("scratch").items] == ["held"]
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_config_map("scratch", {"metadata": {"name": "late"}})
    assert json.loads(refused.value.body)["details"] == {
        "name": "late",
        "kind": "configmaps",
        "causes": [
            {
                "reason": "NamespaceTerminating",
                "message": "unable to create new content in namespace scratch because it is being terminated",
                "field": "metadata.namespace",
            }
        ],
    }
    core.patch_namespaced_config_map("held", "scratch", {"metadata": {"finalizers": None}})
    wait_for(lambda: lab_store.try_get(ns_rt, None, "scratch") is None, what="the namespace to be gone")
    assert "scratch" not in kubectl("get", "namespaces", "-o", "name").stdout


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                                      "port": {"type": "integer"}}}},
                "hosts": {"type": "array", "items": {"type": "string"}},
            }}}}},
        }],
    },
}  # fmt: skip


def test_custom_resources_merge_lists_as_their_schema_says(server: RunningServer) -> None:
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    assert raw_request(server, "POST", crds, JSON, json.dumps(WIDGET_CRD).encode()).status == 201
    path = "/apis/example.com/v1/namespaces/demo/widgets"
    wait_for(lambda: raw_request(server, "GET", path).status == 200, what="the CRD to be served")

    def apply(manager: str, spec: dict[str, Any], force: bool = False) -> Any:
        body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}
        query = f"?fieldManager={manager}" + ("&force=true" if force else "")
        return raw_request(server, "PATCH", f"{path}/w{query}", APPLY, json.dumps(body).encode())

    assert apply("a", {"ports": [{"name": "http", "port": 80}], "hosts": ["x"]}).status == 201
    both = apply("b", {"ports": [{"name": "metrics", "port": 9650}]})
    assert both.status == 200, both.body
    assert both.json()["spec"]["ports"] == [{"name": "http", "port": 80}, {"name": "metrics", "port": 9650}]
    # `hosts` declares no list type: it is atomic, owned whole, so another applier's list conflicts.
    clash = apply("b", {"ports": [{"name": "metrics", "port": 9650}], "hosts": ["y"]})
    assert clash.status == 409 and clash.json()["details"]["causes"][0]["field"] == ".spec.hosts"
    forced = apply("b", {"ports": [{"name": "metrics", "port": 9650}], "hosts": ["y"]}, force=True)
    assert forced.json()["spec"]["hosts"] == ["y"]
