"""OpenAPI v2 and v3 with real schemas: kubectl explain, validation and apply; CRD defaulting and pruning."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client, watch

from kalab.lab.apiserver import openapi, openapi_proto
from kalab.lab.apiserver.resources import Registry
from kalab.lab.apiserver.server import RunningServer
from kalab.lab.apiserver.store import Store
from kalab.model import operator_manifests as om
from tests.lab.apiserver.api_kit import Kubectl, official_client, raw_request, wait_for

KUBECTL_1_30 = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.30")
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: demo}
data: {cidr: 172.21.6.32/27}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.kalab.io"},
    "spec": {
        "group": "example.kalab.io",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "description": "What the widget should be.",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "description": "How big."},
                                    "color": {"type": "string", "default": "blue"},
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                },
                            },
                            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                        },
                    }
                },
            }
        ],
    },
}


def _older_kubectl(kubectl: Kubectl, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL_1_30), "--cache-dir", str(kubectl.home / "cache-1.30"), *args],
        env=kubectl.env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _established(server: RunningServer, crd: dict[str, Any]) -> None:
    with official_client(server) as api:
        client.ApiextensionsV1Api(api).create_custom_resource_definition(cast(Any, crd))
        name = crd["metadata"]["name"]

        def established() -> bool:
            found = client.ApiextensionsV1Api(api).read_custom_resource_definition(name)
            conditions = found.status.conditions if found.status else None
            return any(c.type == "Established" and c.status == "True" for c in conditions or [])

        wait_for(established, what=f"{name} Established")


def test_explain_a_builtin_kind_and_field(kubectl: Kubectl) -> None:
    service = kubectl("explain", "service").stdout
    assert "KIND:       Service" in service
    assert "Service is a named abstraction of software service" in service
    assert "spec\t<ServiceSpec>" in service
    target_port = kubectl("explain", "service.spec.ports.targetPort").stdout
    assert "FIELD: targetPort <IntOrString>" in target_port
    assert "Number or name of the port to access on the pods" in target_port
    containers = kubectl("explain", "deployment.spec.template.spec.containers").stdout
    assert "name\t<string> -required-" in containers
    # The OpenAPI v2 document, which kubectl asks for as protobuf.
    v2 = kubectl("explain", "--output=plaintext-openapiv2", "pods.spec.containers.ports").stdout
    assert "containerPort\t<integer> -required-" in v2


def test_explain_a_crds_spec(kubectl: Kubectl, server: RunningServer) -> None:
    _established(server, om.keepalivedgroup_crd())
    spec = kubectl("explain", "keepalivedgroup.spec").stdout
    assert "GROUP:      redhatcop.redhat.io" in spec
    assert "interface\t<string> -required-" in spec
    assert "blacklistRouterIDs\t<[]integer>" in spec
    assert "nodeSelector\t<map[string]string>" in spec


def test_explain_the_openshift_kinds(kubectl: Kubectl) -> None:
    scc = kubectl("explain", "scc.userNamespaceLevel").stdout
    assert "FIELD: userNamespaceLevel <string>" in scc and "AllowHostLevel" in scc
    health = kubectl("explain", "subscription.status.catalogHealth.lastUpdated").stdout
    assert "FIELD: lastUpdated <string>" in health
    assert "upgradeStrategy\t<Object>" in kubectl("explain", "operatorgroup.spec").stdout


def test_apply_a_list_with_validation_on(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl("apply", "-f", "-", stdin=CONFIGMAP)
    listed = kubectl("get", "cm", "-n", "demo", "-o", "yaml").stdout
    assert listed.startswith("apiVersion: v1\nitems:")
    saved = tmp_path / "cms.yaml"
    saved.write_text(listed)
    assert "configmap/settings" in kubectl("apply", "-f", str(saved)).stdout


def test_get_yaml_into_apply_round_trips(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=SERVICE)
    kubectl("apply", "-f", "-", stdin=CONFIGMAP)
    for what in (["svc", "web"], ["svc"], ["cm,svc"]):
        exported = kubectl("get", *what, "-n", "demo", "-o", "yaml").stdout
        kubectl("apply", "-f", "-", stdin=exported)
    ports = json.loads(kubectl("get", "svc", "web", "-n", "demo", "-o", "json").stdout)["spec"]["ports"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in ports] == [("http", 80, 8080)]


@pytest.mark.skipif(not KUBECTL_1_30.exists(), reason="kubectl 1.30 is not installed here")
def test_an_older_kubectl_validates_a_list_with_openapi_v2(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl("apply", "-f", "-", stdin=SERVICE)
    exported = kubectl("get", "svc", "-n", "demo", "-o", "yaml").stdout
    done = _older_kubectl(kubectl, "apply", "-f", "-", stdin=exported)
    assert done.returncode == 0, done.stderr
    assert "service/web" in done.stdout
    explained = _older_kubectl(kubectl, "explain", "service.spec.ports")
    assert "targetPort" in explained.stdout, explained.stderr


def test_strict_validation_reports_unknown_and_mistyped_fields(kubectl: Kubectl) -> None:
    manifest = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: odd, namespace: demo}
  bogus: 1
- apiVersion: v1
  kind: Service
  metadata: {name: odd, namespace: demo}
  spec:
    ports: [{port: eighty}]
"""
    done = kubectl("apply", "--validate=strict", "-f", "-", stdin=manifest, check=False)
    assert done.returncode == 1
    assert 'unknown field "bogus" in io.k8s.api.core.v1.ConfigMap' in done.stderr
    assert 'invalid type for io.k8s.api.core.v1.ServicePort.port: got "string", expected "integer"' in done.stderr
    assert "configmap" not in kubectl("get", "cm", "odd", "-n", "demo", check=False).stdout


def test_the_server_rejects_unknown_fields_when_kubectl_asks_for_strict(
    kubectl: Kubectl, server: RunningServer
) -> None:
    manifest = SERVICE.replace("spec:\n", "spec:\n  bogus: 1\n").replace(
        "targetPort: 8080", "targetPort: 8080, extra: 2"
    )
    done = kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert done.returncode == 1
    assert (
        'Error from server (BadRequest): error when creating "STDIN": Service in version "v1" cannot be handled as a '
        'Service: strict decoding error: unknown field "spec.bogus", unknown field "spec.ports[0].extra"'
    ) in done.stderr
    assert kubectl("apply", "--validate=false", "-f", "-", stdin=manifest).stdout == "service/web created\n"
    _established(server, om.keepalivedgroup_crd())
    group = """\
apiVersion: redhatcop.redhat.io/v1alpha1
kind: KeepalivedGroup
metadata: {name: workers, namespace: demo, surplus: 1}
spec: {interface: ens3, passwordAuth: {secretRef: {name: s}, typo: x}}
"""
    done = kubectl("apply", "-f", "-", stdin=group, check=False)
    assert 'unknown field "metadata.surplus", unknown field "spec.passwordAuth.typo"' in done.stderr


def test_documents_are_cached_and_change_with_crds(server: RunningServer, lab_store: Store) -> None:
    first = openapi.documents_of(lab_store)
    assert openapi.documents_of(lab_store) is first  # nothing changed: not rebuilt
    root = raw_request(server, "GET", "/openapi/v3").json()
    assert "apis/example.kalab.io/v1" not in root["paths"]
    v2 = raw_request(server, "GET", "/openapi/v2", {"Accept": "application/json"})
    etag = v2.headers["etag"]
    assert raw_request(server, "GET", "/openapi/v2", {"If-None-Match": etag}).status == 304

    _established(server, WIDGET_CRD)
    root = raw_request(server, "GET", "/openapi/v3").json()
    url = root["paths"]["apis/example.kalab.io/v1"]["serverRelativeURL"]
    widget = raw_request(server, "GET", url)
    assert widget.headers["cache-control"] == "public, immutable"
    schemas = widget.json()["components"]["schemas"]
    spec = schemas["io.kalab.example.v1.Widget"]["properties"]["spec"]
    assert spec["properties"]["color"]["default"] == "blue"
    stale = raw_request(server, "GET", "/openapi/v3/apis/example.kalab.io/v1?hash=0")
    assert stale.status == 301 and stale.headers["location"] == url
    assert raw_request(server, "GET", "/openapi/v2", {"If-None-Match": etag}).status == 200

    with official_client(server) as api:
        client.ApiextensionsV1Api(api).delete_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
    wait_for(
        lambda: "apis/example.kalab.io/v1" not in raw_request(server, "GET", "/openapi/v3").json()["paths"],
        what="the Widget document gone",
    )
    assert raw_request(server, "GET", "/openapi/v3/apis/example.kalab.io/v1").status == 404


def test_v3_patch_declares_field_validation_and_v2_answers_protobuf(server: RunningServer) -> None:
    docs = openapi.build(list(Registry()), [])
    core = json.loads(docs.v3["api/v1"])
    patch = core["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    proto = raw_request(server, "GET", "/openapi/v2", {"Accept": openapi.PROTOBUF_V2_ASKED[0]})
    assert proto.headers["content-type"] == openapi.PROTOBUF_V2
    assert proto.body.startswith(openapi_proto.document({"swagger": "2.0"})[:5])


def test_client_side_apply_merges_containers_by_name(kubectl: Kubectl) -> None:
    deployment = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: a, image: "img:1", env: [{name: X, value: "1"}]}
      - {name: b, image: "img:1"}
"""
    kubectl("apply", "-f", "-", stdin=deployment)
    changed = deployment.replace('value: "1"', 'value: "2"').replace('      - {name: b, image: "img:1"}\n', "")
    kubectl("apply", "-f", "-", stdin=changed)
    spec = json.loads(kubectl("get", "deploy", "web", "-n", "demo", "-o", "json").stdout)["spec"]["template"]["spec"]
    assert [(c["name"], c["env"]) for c in spec["containers"]] == [("a", [{"name": "X", "value": "2"}])]


def test_patch_operations_say_which_patch_types_a_kind_takes() -> None:
    registry = Registry()
    docs = openapi.build(list(registry), [])
    apps = json.loads(docs.v3["apis/apps/v1"])["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert "application/strategic-merge-patch+json" in apps["patch"]["requestBody"]["content"]
    olm = json.loads(docs.v3["apis/operators.coreos.com/v1"])["paths"]
    og = olm["/apis/operators.coreos.com/v1/namespaces/{namespace}/operatorgroups/{name}"]["patch"]
    assert set(og["requestBody"]["content"]) == {
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    }
    assert "io.k8s.api.core.v1.PodTemplateSpec" in json.loads(docs.v3["apis/apps/v1"])["components"]["schemas"]


def test_crd_defaulting_and_pruning_through_the_official_client(server: RunningServer) -> None:
    _established(server, WIDGET_CRD)
    with official_client(server) as api:
        custom = client.CustomObjectsApi(api)
        body = {
            "apiVersion": "example.kalab.io/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "namespace": "demo"},
            "spec": {"size": 3, "unknown": True, "labels": {"a": "b"}, "extra": {"anything": [1]}},
            "surplus": "dropped",
        }
        created: Any = custom.create_namespaced_custom_object("example.kalab.io", "v1", "demo", "widgets", body)
        assert created["spec"] == {"size": 3, "color": "blue", "labels": {"a": "b"}, "extra": {"anything": [1]}}
        assert "surplus" not in created
        created["spec"].pop("color")
        created["status"] = {"ready": True, "phase": "Ready"}
        updated: Any = custom.replace_namespaced_custom_object(
            "example.kalab.io", "v1", "demo", "widgets", "w", created
        )
        assert updated["spec"]["color"] == "blue"
        status: Any = custom.patch_namespaced_custom_object_status(
            "example.kalab.io", "v1", "demo", "widgets", "w", {"status": {"ready": True, "phase": "Ready"}}
        )
        assert status["status"] == {"ready": True}
        read: Any = custom.get_namespaced_custom_object("example.kalab.io", "v1", "demo", "widgets", "w")
        assert read["spec"]["color"] == "blue" and read["status"] == {"ready": True}

        # A default added to the schema later shows on read, as kube-apiserver defaults what it reads from storage.
        versions = copy.deepcopy(WIDGET_CRD["spec"]["versions"])
        versions[0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["shape"] = {
            "type": "string",
            "default": "round",
        }
        custom.patch_cluster_custom_object(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "widgets.example.kalab.io",
            {"spec": {"versions": versions}},
        )
        wait_for(
            lambda: (
                custom.get_namespaced_custom_object("example.kalab.io", "v1", "demo", "widgets", "w")["spec"].get(
                    "shape"
                )
                == "round"
            ),
            what="the new default on read",
        )
        listed: Any = custom.list_namespaced_custom_object("example.kalab.io", "v1", "demo", "widgets")
        assert [item["spec"]["shape"] for item in listed["items"]] == ["round"]
        events = watch.Watch().stream(
            custom.list_namespaced_custom_object, "example.kalab.io", "v1", "demo", "widgets", timeout_seconds=5
        )
        first: Any = next(iter(events))
        assert (first["type"], first["object"]["spec"]["shape"]) == ("ADDED", "round")


def test_openshift_kinds_are_defaulted_as_their_crds_say(server: RunningServer) -> None:
    with official_client(server) as api:
        custom = client.CustomObjectsApi(api)
        group: Any = custom.create_namespaced_custom_object(
            "operators.coreos.com",
            "v1",
            "demo",
            "operatorgroups",
            {"apiVersion": "operators.coreos.com/v1", "kind": "OperatorGroup", "metadata": {"name": "og"}},
        )
        assert group["spec"] == {"upgradeStrategy": {"name": "Default"}}
        scc: Any = custom.create_cluster_custom_object(
            "security.openshift.io",
            "v1",
            "securitycontextconstraints",
            {
                "apiVersion": "security.openshift.io/v1",
                "kind": "SecurityContextConstraints",
                "metadata": {"name": "restricted-test"},
                "allowHostDirVolumePlugin": False,
                "allowHostIPC": False,
                "allowHostNetwork": False,
                "allowHostPID": False,
                "allowHostPorts": False,
                "allowPrivilegedContainer": False,
                "readOnlyRootFilesystem": False,
                "runAsUser": {"type": "MustRunAsRange"},
                # Required by the SCC CRD, and nullable: what `oc get scc -o yaml` shows for an SCC without them.
                **dict.fromkeys(
                    ("allowedCapabilities", "defaultAddCapabilities", "priority", "requiredDropCapabilities", "volumes")
                ),
            },
        )
        assert scc["userNamespaceLevel"] == "AllowHostLevel"
