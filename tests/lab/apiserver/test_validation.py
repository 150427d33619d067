"""The API refuses what kube-apiserver refuses, with the same Status: bodies that do not decode into the kind (400,
or 422 on `patch` for a patch), objects that break Kubernetes' rules or their CRD's schema (422 Invalid with causes),
bodies nested too deep, unknown verbs, watches from a resourceVersion that is no number. Each refusal stores
nothing and leaves the server answering; a store subscriber that fails does not fail the write."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kalab.lab.apiserver import decoding, schema_validation, validation
from kalab.lab.apiserver import store as store_module
from kalab.lab.apiserver.crds import CrdController
from kalab.lab.apiserver.patch import merge_patch
from kalab.lab.apiserver.resources import Registry
from kalab.lab.apiserver.server import RunningServer
from kalab.lab.apiserver.store import Event, Store
from kalab.lab.context import LabContext
from kalab.lab.controllers.bootstrap import bootstrap
from kalab.lab.controllers.endpoints import EndpointsController
from kalab.lab.controllers.keepalived_operator import KeepalivedOperator
from kalab.lab.controllers.olm import OlmController, seed_catalog
from kalab.lab.controllers.services import ExternalIPController, install_service_admission
from kalab.lab.controllers.workloads import DaemonSetController, DeploymentController, ReplicaSetController
from kalab.model.manifests import GROUP_ANNOTATION, keepalived_group, network_patch, olm_install
from kalab.model.operator_manifests import csv_name, keepalivedgroup_crd
from tests.lab.apiserver.api_kit import Raw, make_kubectl, raw_request, running_server, seeded_store, wait_for

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
SERVICES = "/api/v1/namespaces/demo/services"
CONFIGMAPS = "/api/v1/namespaces/demo/configmaps"
DEPLOYMENTS = "/apis/apps/v1/namespaces/demo/deployments"
NODE = "/api/v1/nodes/master-0"
GROUPS = "/apis/redhatcop.redhat.io/v1alpha1/namespaces/demo/keepalivedgroups"
GROUP_VERSION = "redhatcop.redhat.io/v1alpha1"
PORTS = [{"port": 80}]
BLOCK = "172.21.6.32/27"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module: every case is refused, so none changes what the others see."""
    store = seeded_store()
    rt = store.registry.by_key
    store.create(rt("apiextensions.k8s.io/customresourcedefinitions"), keepalivedgroup_crd())
    store.create(rt("/services"), {"metadata": {"name": "web", "namespace": "demo"}, "spec": {"ports": PORTS}})
    store.create(rt("/configmaps"), {"metadata": {"name": "kept", "namespace": "demo"}, "data": {"a": "b"}})
    store.create(
        rt("apps/deployments"),
        deployment({"app": "web"}, {"app": "web"}) | {"metadata": {"name": "web", "namespace": "demo"}},
    )
    with running_server(store, tmp_path_factory.mktemp("validation") / "state") as running:
        # Served once the server's CRD controller has read the CRD.
        workers = {"metadata": {"name": "workers", "namespace": "demo"}, "spec": {"interface": "ens3"}}
        store.create(store.registry.by_kind(GROUP_VERSION, "KeepalivedGroup"), workers)
        yield running


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: Any
    code: int
    reason: str
    says: str  # what the message must contain
    field: str | None = None  # a cause's field, for 422
    content_type: str = "application/json"
    target: str = ""  # the object the request would have written (default: the path, or path/name for a create)


def service(name: str = "svc", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": PORTS, **spec}}


def configmap(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, **fields}


def group(spec: Any = None, **extra: Any) -> dict[str, Any]:
    body = {"apiVersion": GROUP_VERSION, "kind": "KeepalivedGroup", "metadata": {"name": "g"}, **extra}
    if spec is not None:
        body["spec"] = spec
    return body


def pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def deployment(labels: dict[str, str], selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    }


LONG = "a" * 70
DEEP = b"[" * 200_000 + b"]" * 200_000
NESTED = b'{"a":' * 300 + b"1" + b"}" * 300
BAD_LABEL = "a valid label must be an empty string or consist of alphanumeric characters"

CASES = {
    # -- creates of built-in kinds: Kubernetes' rules (422) ------------------------------------------------------
    "service-name-70-chars": Case("POST", SERVICES, service(LONG), 422, "Invalid",
                                  "metadata.name: Invalid value", "metadata.name", target=f"{SERVICES}/{LONG}"),
    "service-name-starts-with-digit": Case("POST", SERVICES, service("1web"), 422, "Invalid",
                                           "a DNS-1035 label must consist of", "metadata.name",
                                           target=f"{SERVICES}/1web"),
    "service-long-name-and-no-ports": Case("POST", SERVICES, service(LONG, ports=[]), 422, "Invalid",
                                           "must be no more than 63 characters, spec.ports: Required value]",
                                           "spec.ports", target=f"{SERVICES}/{LONG}"),
    "service-without-ports": Case("POST", SERVICES, service(ports=[]), 422, "Invalid", "spec.ports: Required value",
                                  "spec.ports"),
    "service-port-out-of-range": Case("POST", SERVICES, service(ports=[{"port": 70000}]), 422, "Invalid",
                                      "must be between 1 and 65535, inclusive", "spec.ports[0].port"),
    "service-unknown-protocol": Case("POST", SERVICES, service(ports=[{"port": 80, "protocol": "HTTP"}]), 422,
                                     "Invalid", 'Unsupported value: "HTTP"', "spec.ports[0].protocol"),
    "service-unknown-type": Case("POST", SERVICES, service(type="Cluster"), 422, "Invalid",
                                 'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
                                 "spec.type"),
    "service-two-unnamed-ports": Case("POST", SERVICES, service(ports=[{"port": 80}, {"port": 443}]), 422,
                                      "Invalid", "spec.ports[0].name: Required value", "spec.ports[1].name"),
    "namespace-name-not-a-label": Case("POST", "/api/v1/namespaces", {"metadata": {"name": "Demo_2"}}, 422,
                                       "Invalid", "a lowercase RFC 1123 label", "metadata.name",
                                       target="/api/v1/namespaces/Demo_2"),
    "label-value-with-space": Case("POST", CONFIGMAPS, configmap(metadata={"name": "cm", "labels": {"a": "b c"}}),
                                   422, "Invalid", BAD_LABEL, "metadata.labels"),
    "label-value-64-chars": Case("POST", CONFIGMAPS, configmap(metadata={"name": "cm", "labels": {"a": "b" * 64}}),
                                 422, "Invalid", "must be no more than 63 characters", "metadata.labels"),
    "label-key-starts-with-dash": Case("POST", CONFIGMAPS, configmap(metadata={"name": "cm", "labels": {"-a": "b"}}),
                                       422, "Invalid", "name part must consist of", "metadata.labels"),
    "annotation-key-two-slashes": Case("POST", CONFIGMAPS,
                                       configmap(metadata={"name": "cm", "annotations": {"a/b/c": "d"}}), 422,
                                       "Invalid", "a qualified name must consist of", "metadata.annotations"),
    "annotations-over-256k": Case("POST", CONFIGMAPS,
                                  configmap(metadata={"name": "cm", "annotations": {"a": "x" * 262_145}}), 422,
                                  "Invalid", "Too long: may not be more than 262144 bytes", "metadata.annotations"),
    "configmap-key-with-space": Case("POST", CONFIGMAPS, configmap(data={"a b": "c"}), 422, "Invalid",
                                     "a valid config key must consist of", "data[a b]"),
    "pod-without-containers": Case("POST", "/api/v1/namespaces/demo/pods", pod({"containers": []}), 422, "Invalid",
                                   "spec.containers: Required value", "spec.containers",
                                   target="/api/v1/namespaces/demo/pods/p"),
    "pod-container-without-image": Case("POST", "/api/v1/namespaces/demo/pods", pod({"containers": [{"name": "c"}]}),
                                        422, "Invalid", "spec.containers[0].image: Required value",
                                        "spec.containers[0].image", target="/api/v1/namespaces/demo/pods/p"),
    "deployment-selector-misses-template": Case("POST", DEPLOYMENTS,
                                                deployment({"app": "a"}, {"app": "b"}), 422, "Invalid",
                                                "`selector` does not match template `labels`",
                                                "spec.template.metadata.labels",
                                                target=f"{DEPLOYMENTS}/d"),
    # -- creates and updates that do not decode (400, as Go's JSON decoder answers) ----------------------------------
    "service-port-a-string": Case("POST", SERVICES, service(ports=[{"port": "80a"}]), 400, "BadRequest",
                                  "cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type"),
    "service-ports-an-object": Case("POST", SERVICES, service(ports={"port": 80}), 400, "BadRequest",
                                    "cannot unmarshal object into Go struct field ServiceSpec.spec.ports"),
    "configmap-labels-a-string": Case("POST", CONFIGMAPS, configmap(metadata={"name": "cm", "labels": "notamap"}),
                                      400, "BadRequest",
                                      'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot '
                                      "unmarshal string into Go struct field ObjectMeta.metadata.labels"),
    "configmap-value-a-number": Case("POST", CONFIGMAPS, configmap(data={"a": 5}), 400, "BadRequest",
                                     "cannot unmarshal number into Go struct field ConfigMap.data of type string"),
    "secret-data-not-base64": Case("POST", "/api/v1/namespaces/demo/secrets",
                                   {"metadata": {"name": "s"}, "data": {"a": "!!"}}, 400, "BadRequest",
                                   "illegal base64 data at input byte 0", target="/api/v1/namespaces/demo/secrets/s"),
    "node-put-labels-a-list": Case("PUT", NODE, {"metadata": {"name": "master-0", "labels": ["a"]}}, 400,
                                   "BadRequest", "cannot unmarshal array into Go struct field ObjectMeta.metadata"),
    # -- patches: applied first, then refused (422 on `patch` when the result does not decode) --------------------
    "merge-patch-node-labels-notamap": Case("PATCH", NODE, {"metadata": {"labels": "notamap"}}, 422, "Invalid",
                                            "patch: Invalid value", "patch", MERGE),
    "strategic-patch-node-labels-notamap": Case("PATCH", NODE, {"metadata": {"labels": "notamap"}}, 422, "Invalid",
                                                "of type map[string]string", "patch", STRATEGIC),
    "strategic-patch-taints-a-string": Case("PATCH", NODE, {"spec": {"taints": "x"}}, 422, "Invalid",
                                            "Go struct field NodeSpec.spec.taints of type []v1.Taint", "patch",
                                            STRATEGIC),
    "json-patch-spec-a-string": Case("PATCH", NODE, [{"op": "add", "path": "/spec", "value": "x"}], 422, "Invalid",
                                     "Go struct field Node.spec of type v1.NodeSpec", "patch", JSON_PATCH),
    "json-patch-metadata-a-number": Case("PATCH", NODE, [{"op": "add", "path": "/metadata", "value": 5}], 422,
                                         "Invalid", "of type v1.ObjectMeta", "patch", JSON_PATCH),
    "json-patch-drops-the-name": Case("PATCH", NODE, [{"op": "remove", "path": "/metadata/name"}], 400, "BadRequest",
                                      "does not match the name on the URL", content_type=JSON_PATCH),
    "json-patch-not-a-list": Case("PATCH", NODE, {"op": "add"}, 400, "BadRequest", "must be a list of operations",
                                  content_type=JSON_PATCH),
    "merge-patch-service-port-a-string": Case("PATCH", f"{SERVICES}/web", {"spec": {"ports": [{"port": "x"}]}}, 422,
                                              "Invalid", "ServicePort.spec.ports.port", "patch", MERGE),
    "merge-patch-service-drops-its-ports": Case("PATCH", f"{SERVICES}/web", {"spec": {"ports": None}}, 422,
                                                "Invalid", "spec.ports: Required value", "spec.ports", MERGE),
    "merge-patch-namespace-bad-label": Case("PATCH", "/api/v1/namespaces/default",
                                            {"metadata": {"labels": {"x": "a b"}}}, 422, "Invalid", BAD_LABEL,
                                            "metadata.labels", MERGE),
    "apply-node-labels-a-string": Case("PATCH", f"{NODE}?fieldManager=t&force=true",
                                       "apiVersion: v1\nkind: Node\nmetadata:\n  name: master-0\n  labels: x\n", 422,
                                       "Invalid", "of type map[string]string", "patch", APPLY, target=NODE),
    "apply-create-metadata-a-number": Case("PATCH", f"{CONFIGMAPS}/new?fieldManager=t",
                                           "apiVersion: v1\nkind: ConfigMap\nmetadata: 5\n", 400, "BadRequest",
                                           "Go struct field ConfigMap.metadata of type v1.ObjectMeta",
                                           content_type=APPLY, target=f"{CONFIGMAPS}/new"),
    "scale-spec-a-string": Case("PUT", f"{DEPLOYMENTS}/web/scale", {"spec": "x"}, 400, "BadRequest",
                                'Scale in version "v1" cannot be handled as a Scale', target=f"{DEPLOYMENTS}/web"),
    "merge-patch-scale-replicas-a-string": Case("PATCH", f"{DEPLOYMENTS}/web/scale", {"spec": {"replicas": "x"}},
                                                422, "Invalid", "ScaleSpec.spec.replicas of type int32", "patch",
                                                MERGE, target=f"{DEPLOYMENTS}/web"),
    "delete-preconditions-a-string": Case("DELETE", f"{CONFIGMAPS}/kept", {"preconditions": "x"}, 400, "BadRequest",
                                          "DeleteOptions.preconditions of type v1.Preconditions"),
    # -- custom objects against their CRD's openAPIV3Schema -----------------------------------------------------
    "group-spec-a-string": Case("POST", GROUPS, group("x"), 422, "Invalid",
                                'spec: Invalid value: "string": spec in body must be of type object: "string"', "spec"),
    "group-without-interface": Case("POST", GROUPS, group({}), 422, "Invalid", "spec.interface: Required value",
                                    "spec.interface"),
    "group-interface-from-ip-not-ipv4": Case("POST", GROUPS, group({"interface": "e", "interfaceFromIP": "abc"}), 422,
                                             "Invalid", "spec.interfaceFromIP in body must be of type ipv4: \"abc\"",
                                             "spec.interfaceFromIP"),
    "group-router-id-zero": Case("POST", GROUPS, group({"interface": "e", "blacklistRouterIDs": [0]}), 422,
                                 "Invalid", "should be greater than or equal to 1", "spec.blacklistRouterIDs[0]"),
    "group-unicast-a-string": Case("POST", GROUPS, group({"interface": "e", "unicastEnabled": "yes"}), 422,
                                   "Invalid", "must be of type boolean", "spec.unicastEnabled"),
    "group-node-selector-a-number": Case("POST", GROUPS, group({"interface": "e", "nodeSelector": {"a": 1}}), 422,
                                         "Invalid", "spec.nodeSelector.a in body must be of type string",
                                         "spec.nodeSelector.a"),
    "group-labels-a-string": Case("POST", GROUPS, group({"interface": "e"}, metadata={"name": "g", "labels": "x"}),
                                  400, "BadRequest", "ObjectMeta.metadata.labels"),
    "merge-patch-group-spec-a-string": Case("PATCH", f"{GROUPS}/workers", {"spec": "x"}, 422, "Invalid",
                                            "spec in body must be of type object", "spec", MERGE),
    "merge-patch-group-drops-interface": Case("PATCH", f"{GROUPS}/workers", {"spec": {"interface": None}}, 422,
                                              "Invalid", "spec.interface: Required value", "spec.interface", MERGE),
    "json-patch-group-image-a-number": Case("PATCH", f"{GROUPS}/workers",
                                            [{"op": "add", "path": "/spec/image", "value": 5}], 422, "Invalid",
                                            "spec.image in body must be of type string", "spec.image", JSON_PATCH),
    "subscription-approval-not-in-enum": Case(
        "POST", "/apis/operators.coreos.com/v1alpha1/namespaces/demo/subscriptions",
        {"metadata": {"name": "s"}, "spec": {"name": "x", "source": "y", "sourceNamespace": "z",
                                             "installPlanApproval": "Sometimes"}},
        422, "Invalid", 'Unsupported value: "Sometimes": supported values: "Automatic", "Manual"',
        "spec.installPlanApproval", target="/apis/operators.coreos.com/v1alpha1/namespaces/demo/subscriptions/s"),
    "merge-patch-network-spec-a-string": Case("PATCH", "/apis/config.openshift.io/v1/networks/cluster", {"spec": "x"},
                                              422, "Invalid", "spec in body must be of type object", "spec", MERGE),
    "scc-without-required-fields": Case("POST", "/apis/security.openshift.io/v1/securitycontextconstraints",
                                        {"metadata": {"name": "mine"}}, 422, "Invalid",
                                        "allowHostNetwork: Required value", "allowHostNetwork",
                                        target="/apis/security.openshift.io/v1/securitycontextconstraints/mine"),
    # -- bodies no object can be, verbs no resource has, watches from no resourceVersion --------------------------
    "body-200k-deep": Case("POST", CONFIGMAPS, DEEP, 400, "BadRequest", "nests deeper than 200 levels",
                           target=f"{CONFIGMAPS}/cm"),
    "body-300-deep": Case("POST", CONFIGMAPS, NESTED, 400, "BadRequest", "nests deeper than 200 levels",
                          target=f"{CONFIGMAPS}/cm"),
    "patch-200k-deep": Case("PATCH", NODE, DEEP, 400, "BadRequest", "nests deeper than 200 levels", content_type=MERGE),
    "unknown-verb": Case("FROB", "/api/v1/nodes", None, 405, "MethodNotAllowed", "does not allow this method",
                         target=NODE),
    "watch-from-a-word": Case("GET", "/api/v1/nodes?watch=1&resourceVersion=abc", None, 422, "Invalid",
                              'resourceVersion: Invalid value: "abc": strconv.ParseUint', "resourceVersion",
                              target=NODE),
    "watch-from-a-negative-number": Case("GET", "/api/v1/nodes?watch=1&resourceVersion=-5", None, 422, "Invalid",
                                         'parsing "-5": invalid syntax', "resourceVersion", target=NODE),
}  # fmt: skip


def _encoded(body: Any, content_type: str) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _target(case: Case) -> str:
    if case.target:
        return case.target
    if case.method == "POST":
        return f"{case.path}/{case.body['metadata']['name']}"
    return case.path


def _state(server: RunningServer, path: str) -> tuple[int, Any]:
    """What is stored at `path`: its status and resourceVersion (404 and None when there is nothing)."""
    got = raw_request(server, "GET", path)
    return got.status, got.json().get("metadata", {}).get("resourceVersion") if got.status == 200 else None


def _assert_status(answer: Raw, case: Case) -> dict[str, Any]:
    assert answer.status == case.code, answer.body[:500]
    assert answer.headers["content-type"] == "application/json"
    status = answer.json()
    assert {k: status[k] for k in ("kind", "apiVersion", "status", "reason", "code")} == {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": case.reason,
        "code": case.code,
    }
    message = status["message"]
    assert case.says in message
    # One line a person can read: no traceback, no echo of a huge body.
    assert "\n" not in message and "Traceback" not in message and len(message) < 1500
    return status


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_refused_writes_answer_a_status_and_store_nothing(server: RunningServer, case: Case) -> None:
    before = _state(server, _target(case))
    answer = raw_request(
        server, case.method, case.path, {"Content-Type": case.content_type}, _encoded(case.body, case.content_type)
    )
    status = _assert_status(answer, case)
    if case.field is not None:
        causes = status["details"]["causes"]
        assert case.field in [c["field"] for c in causes]
        assert all(set(c) == {"reason", "message", "field"} for c in causes)
        assert status["message"].endswith(causes[-1]["message"] + ("]" if len(causes) > 1 else ""))
    assert _state(server, _target(case)) == before  # nothing stored, nothing changed
    nodes = raw_request(server, "GET", "/api/v1/nodes")
    assert nodes.status == 200 and len(nodes.json()["items"]) == 3


def test_a_group_without_spec_is_accepted_as_its_crd_allows(server: RunningServer) -> None:
    # The operator's CRD (like the upstream one) requires nothing at the root: OpenShift stores such a group too.
    created = raw_request(
        server,
        "POST",
        GROUPS,
        {"Content-Type": "application/json"},
        json.dumps(group(metadata={"name": "bare"})).encode(),
    )
    assert created.status == 201, created.body
    assert raw_request(server, "DELETE", f"{GROUPS}/bare").status == 200


def test_valid_writes_still_pass(server: RunningServer) -> None:
    """The same kinds, written right, are stored (so the refusals above are about the faults they carry)."""
    headers = {"Content-Type": "application/json"}
    for path, body in (
        (
            SERVICES,
            service(
                "ok",
                type="LoadBalancer",
                ports=[{"name": "http", "port": 80, "targetPort": "http"}, {"name": "https", "port": 443}],
            ),
        ),
        (CONFIGMAPS, configmap(metadata={"name": "ok", "labels": {"example.com/app": "web_1"}}, data={"k.y": "v"})),
        (
            GROUPS,
            group(
                {"interface": "ens3", "interfaceFromIP": "192.168.7.1", "blacklistRouterIDs": [1, 255]},
                metadata={"name": "ok"},
            ),
        ),
    ):
        answer = raw_request(server, "POST", path, headers, json.dumps(body).encode())
        assert answer.status == 201, answer.body
        assert raw_request(server, "DELETE", f"{path}/ok").status == 200


# -- kubectl prints kube-apiserver's refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (
            ("create", "-f", "-"),
            json.dumps(service(LONG) | {"metadata": {"name": LONG, "namespace": "demo"}}),
            f'The Service "{LONG}" is invalid: metadata.name: Invalid value: "{LONG}": must be no more than 63 '
            "characters",
        ),
        (
            ("patch", "node", "master-0", "--type", "merge", "-p", '{"metadata":{"labels":"notamap"}}'),
            None,
            'The Node "master-0" is invalid: patch: Invalid value: ',
        ),
        (
            ("apply", "-f", "-"),
            json.dumps(group("x") | {"metadata": {"name": "g", "namespace": "demo"}}),
            'The KeepalivedGroup "g" is invalid: spec: Invalid value: "string": spec in body must be of type object: '
            '"string"',
        ),
    ],
    ids=["create-long-service-name", "patch-node-labels", "apply-group-spec-a-string"],
)
def test_kubectl_prints_the_refusal(
    server: RunningServer, tmp_path: Path, args: tuple[str, ...], stdin: str | None, says: str
) -> None:
    kubectl = make_kubectl(server, tmp_path / "home")
    done = kubectl(*args, check=False, stdin=stdin)
    assert done.returncode == 1
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "InternalError" not in done.stderr
    assert kubectl("get", "nodes", "-o", "name").stdout.split() == [f"node/master-{i}" for i in range(3)]


# -- store subscribers --------------------------------------------------------------------------------------------


def test_a_failing_subscriber_neither_fails_the_write_nor_starves_the_others(caplog: pytest.LogCaptureFixture) -> None:
    store = Store(Registry())
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("a controller's bug")

    store.subscribe(broken)
    store.subscribe(lambda event: seen.append(f"{event.type} {event.object['metadata']['name']}"))
    configmaps = store.registry.by_key("/configmaps")
    store.create(store.registry.by_key("/namespaces"), {"metadata": {"name": "demo"}})
    created = store.create(configmaps, {"metadata": {"name": "kept", "namespace": "demo"}})
    store.delete(configmaps, "demo", "kept")
    assert created["metadata"]["name"] == "kept"
    assert seen == ["ADDED demo", "ADDED kept", "DELETED kept"]
    assert "a store subscriber failed on ADDED ConfigMap demo/kept" in caplog.text


def test_a_failing_subscriber_is_not_the_clients_500(tmp_path: Path) -> None:
    store = seeded_store()
    delivered = threading.Event()

    def broken(event: Event) -> None:
        raise RuntimeError("a controller's bug")

    store.subscribe(broken)
    store.subscribe(lambda event: delivered.set())
    with running_server(store, tmp_path / "state") as running:
        answer = raw_request(
            running, "POST", CONFIGMAPS, {"Content-Type": "application/json"}, json.dumps(configmap()).encode()
        )
        assert answer.status == 201, answer.body
        assert delivered.is_set()
        assert raw_request(running, "GET", f"{CONFIGMAPS}/cm").status == 200


# -- watches from a resourceVersion the history no longer holds ------------------------------------------------------


def test_a_watch_from_a_compacted_resource_version_gets_410_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As kube-apiserver's watch cache: the watch starts (200), then one ERROR event carries the 410.
    monkeypatch.setattr(store_module, "HISTORY", 4)
    store = seeded_store()
    with running_server(store, tmp_path / "state") as running:
        answer = raw_request(running, "GET", "/api/v1/nodes?watch=1&resourceVersion=1")
        assert answer.status == 200
        events = [json.loads(line) for line in answer.body.splitlines()]
        assert [e["type"] for e in events] == ["ERROR"]
        status = events[0]["object"]
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
        assert status["message"].startswith("too old resource version: 1 (")


# -- what the lab's own controllers write ---------------------------------------------------------------------------


def test_every_object_the_lab_writes_is_one_the_api_would_accept(tmp_path: Path) -> None:
    """The lab's controllers write to the store directly, as trusted code; what they write must pass the checks a
    client's write gets (Kubernetes' rules, the Go types, each CRD's schema), or a client's read-modify-write of it
    would be refused. Bootstrap, OLM installing the operator, the operator rendering a group's objects, the workload
    controllers and the service controllers write here."""
    store = Store(Registry())
    ctx = LabContext(store=store, state_dir=tmp_path, topology=None)
    bootstrap(ctx)
    seed_catalog(ctx)
    install_service_admission(ctx)
    crds = CrdController(ctx)
    olm = OlmController(ctx)
    olm.phase_delay = 0.05
    controllers = [crds, olm, KeepalivedOperator(ctx), ExternalIPController(ctx), EndpointsController(ctx),
                   DaemonSetController(ctx), ReplicaSetController(ctx), DeploymentController(ctx)]  # fmt: skip
    for controller in controllers:
        controller.start()
    try:
        for obj in olm_install():
            store.create(store.registry.by_kind(obj["apiVersion"], obj["kind"]), obj)
        csvs = ctx.rt("operators.coreos.com/clusterserviceversions")
        wait_for(
            lambda: (
                (store.try_get(csvs, "keepalived-operator", csv_name()) or {}).get("status", {}).get("phase")
                == "Succeeded"
            ),
            what="the operator's CSV Succeeded",
        )
        group = keepalived_group(interface="ens3")
        store.create(store.registry.by_kind(group["apiVersion"], group["kind"]), group)
        annotations = {GROUP_ANNOTATION: "keepalived-operator/keepalivedgroup-workers"}
        networks = ctx.rt("config.openshift.io/networks")
        store.update(networks, merge_patch(store.get(networks, None, "cluster"), network_patch(BLOCK, BLOCK)))
        store.create(
            ctx.rt("/services"),
            {
                "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
                "spec": {
                    "type": "LoadBalancer",
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                },
            },
        )
        rendered = ctx.rt("/configmaps")
        wait_for(
            lambda: (
                "172.21.6."
                in str((store.try_get(rendered, "keepalived-operator", "keepalivedgroup-workers") or {}).get("data"))
            ),
            what="the operator's keepalived.conf holding the service's auto-assigned VIP",
        )
        problems = []
        for rt in store.registry:
            if "list" not in rt.verbs:
                continue
            for obj in store.list(rt)[0]:
                found = [str(e) for e in validation.errors_of(rt, obj)]
                found += [problem] if (problem := decoding.decode_error(rt, obj)) else []
                schema = crds.schema(rt)
                found += [str(e) for e in schema_validation.errors_of(obj, schema)] if schema else []
                meta = obj["metadata"]
                problems += [f"{rt.kind} {meta.get('namespace', '')}/{meta['name']}: {p}" for p in found]
        assert problems == []
        assert len([rt for rt in store.registry if store.list(rt)[0]]) >= 15  # many kinds were checked
    finally:
        for controller in reversed(controllers):
            controller.stop()
