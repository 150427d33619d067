"""Kubernetes protobuf on the lab API server: kubectl's generator commands, protobuf answers, and the codec itself."""

from __future__ import annotations

import base64
import gzip
import inspect
import json
from typing import Any

from google.protobuf import descriptor_pb2
from kubernetes import client
from kubernetes.client import models

from kalab.lab.apiserver import protobuf
from kalab.lab.apiserver.protobuf import descriptors
from kalab.lab.apiserver.protobuf.convert import go_duration, parse_go_duration
from kalab.lab.apiserver.protobuf.schema import (
    RUNTIME,
    descriptor_for,
    fields,
    is_inline,
    json_fields,
    message_class,
    pool,
)
from kalab.lab.apiserver.server import RunningServer
from tests.lab.apiserver.api_kit import Kubectl, raw_request

PROTOBUF = "application/vnd.kubernetes.protobuf"


def sent_protobuf(kubectl: Kubectl, *args: str) -> str:
    """Run kubectl verbosely enough to log request headers; fail unless it succeeded and wrote its body in protobuf."""
    done = kubectl("-v=8", *args, check=False)
    assert done.returncode == 0, done.stderr
    assert f"Content-Type: {PROTOBUF}" in done.stderr, "kubectl did not send protobuf"
    return done.stdout


def message(api_version: str, kind: str) -> Any:
    descriptor = descriptor_for(api_version, kind)
    assert descriptor is not None
    return message_class(descriptor)()


def wire(api_version: str, kind: str, body: Any) -> bytes:
    """What client-go sends: the magic, then a runtime.Unknown naming the kind and holding its bytes."""
    envelope = message_class(pool().FindMessageTypeByName(f"{RUNTIME}.Unknown"))()
    envelope.typeMeta.apiVersion, envelope.typeMeta.kind = api_version, kind
    envelope.raw = body.SerializeToString()
    return b"k8s\x00" + envelope.SerializeToString()


def api_packages() -> set[str]:
    """The k8s.io/api packages the schema holds: every stable group's (core, apps, batch, rbac, …)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(
        gzip.decompress(base64.b64decode("".join(descriptors.FILE_DESCRIPTOR_SET)))
    )
    return {f.package.split(".")[3] for f in files.file if f.package.startswith("k8s.io.api.")}


# -- kubectl's generator commands --------------------------------------------------------------------------------


def test_kubectl_create_namespace_configmap_and_secret(kubectl: Kubectl, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    assert sent_protobuf(kubectl, "create", "namespace", "runbook").strip() == "namespace/runbook created"
    namespace = core.read_namespace("runbook").metadata
    assert namespace.name == "runbook" and namespace.uid and namespace.creation_timestamp

    sent_protobuf(kubectl, "create", "configmap", "settings", "-n", "runbook", "--from-literal=cidr=172.21.6.32/27")
    settings = core.read_namespaced_config_map("settings", "runbook")
    assert settings.data == {"cidr": "172.21.6.32/27"} and settings.binary_data is None

    secret_args = ("--from-literal=password=s3cr3t", "--from-literal=empty=")
    sent_protobuf(kubectl, "create", "secret", "generic", "vrrp", "-n", "runbook", *secret_args)
    secret = core.read_namespaced_secret("vrrp", "runbook")
    assert secret.type == "Opaque"
    assert {k: base64.b64decode(v) for k, v in secret.data.items()} == {"password": b"s3cr3t", "empty": b""}


def test_kubectl_create_deployment_and_serviceaccount(kubectl: Kubectl, api: client.ApiClient) -> None:
    sent_protobuf(kubectl, "create", "deployment", "web", "-n", "demo", "--image=nginx:1.25", "--port=8080")
    deployment = client.AppsV1Api(api).read_namespaced_deployment("web", "demo")
    assert deployment.spec.replicas == 1
    assert deployment.spec.selector.match_labels == {"app": "web"}
    assert deployment.spec.template.metadata.labels == {"app": "web"}
    (container,) = deployment.spec.template.spec.containers
    assert (container.name, container.image) == ("nginx", "nginx:1.25")
    assert [(p.container_port, p.protocol) for p in container.ports] == [(8080, "TCP")]

    # A Go pointer set to zero is a value, not absence: replicas 0 must not become the default 1.
    sent_protobuf(kubectl, "create", "deployment", "idle", "-n", "demo", "--image=nginx", "--replicas=0")
    assert client.AppsV1Api(api).read_namespaced_deployment("idle", "demo").spec.replicas == 0

    sent_protobuf(kubectl, "create", "serviceaccount", "robot", "-n", "demo")
    account = client.CoreV1Api(api).read_namespaced_service_account("robot", "demo")
    assert account.metadata.name == "robot" and account.metadata.uid


def test_kubectl_create_service_then_run_and_expose(kubectl: Kubectl, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    sent_protobuf(kubectl, "create", "service", "clusterip", "web", "-n", "demo", "--tcp=80:8080", "--tcp=443:https")
    service = core.read_namespaced_service("web", "demo")
    assert service.spec.type == "ClusterIP" and service.spec.selector == {"app": "web"}
    # targetPort is an IntOrString: a number stays a number, a port name a string.
    assert [(p.name, p.port, p.target_port) for p in service.spec.ports] == [
        ("80-8080", 80, 8080),
        ("443-https", 443, "https"),
    ]

    # run and expose build their objects as JSON (through the dynamic client): they must keep working alongside.
    kubectl(
        "run",
        "probe",
        "-n",
        "demo",
        "--image=busybox:1.36",
        "--labels=app=probe,tier=test",
        "--port=8080",
        "--env=MODE=check",
        "--restart=Never",
        "--",
        "sleep",
        "3600",
    )
    pod = core.read_namespaced_pod("probe", "demo")
    assert pod.metadata.labels == {"app": "probe", "tier": "test"} and pod.spec.restart_policy == "Never"
    (container,) = pod.spec.containers
    assert (container.image, container.args) == ("busybox:1.36", ["sleep", "3600"])
    assert [(e.name, e.value) for e in container.env] == [("MODE", "check")]
    kubectl("expose", "pod", "probe", "-n", "demo", "--port=80", "--target-port=8080", "--name=probe")
    (port,) = core.read_namespaced_service("probe", "demo").spec.ports
    assert (port.port, port.target_port, port.protocol) == (80, 8080, "TCP")


def test_kubectl_create_role_and_rolebinding(kubectl: Kubectl, api: client.ApiClient) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    sent_protobuf(kubectl, "create", "role", "reader", "-n", "demo", "--verb=get,list", "--resource=pods")
    (rule,) = rbac.read_namespaced_role("reader", "demo").rules
    assert (rule.verbs, rule.resources, rule.api_groups) == (["get", "list"], ["pods"], [""])
    sent_protobuf(kubectl, "create", "rolebinding", "read", "-n", "demo", "--role=reader", "--serviceaccount=demo:bot")
    binding = rbac.read_namespaced_role_binding("read", "demo")
    assert (binding.role_ref.kind, binding.role_ref.name) == ("Role", "reader")
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("ServiceAccount", "bot", "demo")]


# -- bodies the lab cannot read, and answers in protobuf ---------------------------------------------------------


def test_a_protobuf_body_of_an_unknown_kind_gets_one_clear_415(server: RunningServer) -> None:
    network = message("v1", "ConfigMap")  # any bytes: the envelope names a kind Kubernetes has no protobuf for
    body = wire("config.openshift.io/v1", "Network", network)
    answer = raw_request(server, "POST", "/apis/config.openshift.io/v1/networks", {"Content-Type": PROTOBUF}, body)
    status = answer.json()
    assert (answer.status, status["reason"]) == (415, "UnsupportedMediaType")
    assert "config.openshift.io/v1 Network" in status["message"] and status["message"].count(". ") == 0
    garbage = raw_request(server, "POST", "/api/v1/namespaces/demo/configmaps", {"Content-Type": PROTOBUF}, b"\x0a")
    assert garbage.status == 415 and "prefix" in garbage.json()["message"]


def test_answers_in_protobuf_only_to_a_client_that_takes_nothing_else(server: RunningServer) -> None:
    body = message("v1", "ConfigMap")
    body.metadata.name = "pb"
    body.data["key"] = "value"
    created = raw_request(
        server,
        "POST",
        "/api/v1/namespaces/demo/configmaps",
        {"Content-Type": PROTOBUF, "Accept": PROTOBUF},
        wire("v1", "ConfigMap", body),
    )
    assert (created.status, created.headers["content-type"]) == (201, PROTOBUF)
    assert protobuf.decode(created.body)["metadata"]["uid"]

    got = raw_request(server, "GET", "/api/v1/namespaces/demo/configmaps/pb", {"Accept": PROTOBUF})
    assert got.headers["content-type"] == PROTOBUF and got.body.startswith(b"k8s\x00")
    envelope = message_class(pool().FindMessageTypeByName(f"{RUNTIME}.Unknown")).FromString(got.body[4:])
    assert (envelope.typeMeta.apiVersion, envelope.typeMeta.kind) == ("v1", "ConfigMap")
    decoded = message("v1", "ConfigMap")
    decoded.ParseFromString(envelope.raw)
    assert (decoded.metadata.name, dict(decoded.data)) == ("pb", {"key": "value"})
    assert decoded.metadata.creationTimestamp.seconds > 0

    listed = protobuf.decode(raw_request(server, "GET", "/api/v1/nodes", {"Accept": PROTOBUF}).body)
    assert listed["kind"] == "NodeList"
    assert [n["metadata"]["name"] for n in listed["items"]] == ["master-0", "master-1", "master-2"]
    missing = raw_request(server, "GET", "/api/v1/namespaces/demo/configmaps/nope", {"Accept": PROTOBUF})
    assert missing.status == 404 and protobuf.decode(missing.body)["reason"] == "NotFound"  # a Status, in protobuf

    for accept in (f"{PROTOBUF}, */*", f"{PROTOBUF},application/json"):  # client-go's: JSON is fine for them
        either = raw_request(server, "GET", "/api/v1/namespaces/demo/configmaps/pb", {"Accept": accept})
        assert either.headers["content-type"] == "application/json", accept
    table_or_protobuf = f"{PROTOBUF}, application/json;as=Table;v=v1;g=meta.k8s.io"
    preferred = raw_request(server, "GET", "/api/v1/namespaces/demo/configmaps/pb", {"Accept": table_or_protobuf})
    assert preferred.headers["content-type"] == PROTOBUF


# -- the codec ---------------------------------------------------------------------------------------------------


def test_decodes_a_message_built_by_the_protobuf_library() -> None:
    deployment = message("apps/v1", "Deployment")
    deployment.metadata.name = "web"
    deployment.metadata.labels["b"] = "2"
    deployment.metadata.labels["a"] = "1"
    deployment.metadata.creationTimestamp.seconds = 1_700_000_000
    deployment.metadata.generation = 0  # a zero non-pointer scalar: Go's "unset", left out like omitempty does
    deployment.spec.replicas = 0  # a pointer: zero is a value
    deployment.spec.strategy.rollingUpdate.maxSurge.type = 1
    deployment.spec.strategy.rollingUpdate.maxSurge.strVal = "25%"
    deployment.spec.strategy.rollingUpdate.maxUnavailable.intVal = 0
    pod = deployment.spec.template.spec
    pod.hostNetwork = False
    pod.automountServiceAccountToken = False
    container = pod.containers.add()
    container.name, container.image = "web", "nginx"
    container.resources.limits["cpu"].string = "500m"
    container.readinessProbe.handler.httpGet.port.intVal = 8080  # ProbeHandler is inline in JSON
    volume = pod.volumes.add()
    volume.name = "config"
    volume.volumeSource.configMap.localObjectReference.name = "settings"  # two inlines deep
    scratch = pod.volumes.add()
    scratch.name = "scratch"
    scratch.volumeSource.emptyDir.SetInParent()  # a pointer to an empty struct: `emptyDir: {}` is a choice
    deployment.status.SetInParent()  # an empty struct held by value: Go cannot tell it from none
    event_time = message("v1", "Event").eventTime
    event_time.seconds, event_time.nanos = 1_700_000_000, 123_456_000

    assert protobuf.decode(wire("apps/v1", "Deployment", deployment)) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "creationTimestamp": "2023-11-14T22:13:20Z", "labels": {"a": "1", "b": "2"}},
        "spec": {
            "replicas": 0,
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "config", "configMap": {"name": "settings"}},
                        {"name": "scratch", "emptyDir": {}},
                    ],
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx",
                            "resources": {"limits": {"cpu": "500m"}},
                            "readinessProbe": {"httpGet": {"port": 8080}},
                        }
                    ],
                    "automountServiceAccountToken": False,
                },
            },
            "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        },
    }
    event = message("v1", "Event")
    event.eventTime.CopyFrom(event_time)
    event.count = 0
    assert protobuf.decode(wire("v1", "Event", event))["eventTime"] == "2023-11-14T22:13:20.123456Z"


def test_secret_bytes_and_embedded_json_round_trip() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s",
            "managedFields": [{"manager": "kubectl", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}],
        },
        "data": {"bin": base64.b64encode(bytes(range(256))).decode(), "empty": ""},
        "type": "Opaque",
    }
    encoded = protobuf.encode(secret)
    assert encoded is not None
    assert protobuf.decode(encoded) == secret
    assert protobuf.encode({"apiVersion": "route.openshift.io/v1", "kind": "Route"}) is None
    assert json.loads(json.dumps(protobuf.decode(encoded))) == secret


def test_go_durations() -> None:
    assert [go_duration(n) for n in (0, 1_500_000, 90 * 10**9, 3723_500_000_000, -2)] == [
        "0s",
        "1.5ms",
        "1m30s",
        "1h2m3.5s",
        "-2ns",
    ]
    assert parse_go_duration("1h2m3.5s") == 3723_500_000_000 and parse_go_duration("-1.5ms") == -1_500_000


def test_field_names_are_the_official_clients_json_names() -> None:
    """Every field of every stable group's messages carries its JSON name, inlined structs flattened, as the
    official client models them (fields newer than the schema's release may be missing here, never extra)."""
    checked = 0
    for name, model in inspect.getmembers(models, inspect.isclass):
        version = name[:2].lower()
        if version not in ("v1", "v2") or not hasattr(model, "attribute_map"):
            continue
        for package in api_packages():
            try:
                descriptor = pool().FindMessageTypeByName(f"k8s.io.api.{package}.{version}.{name[2:]}")
            except KeyError:
                continue
            checked += 1
            extra = set(json_fields(descriptor)) - set(model.attribute_map.values()) - {"apiVersion", "kind"}
            assert not extra, f"{descriptor.full_name}: {sorted(extra)}"
    assert checked > 400 and {"core", "apps", "batch", "rbac", "networking", "policy"} <= api_packages()
    inline = [f.full_name for f in fields(pool().FindMessageTypeByName("k8s.io.api.core.v1.Volume")) if is_inline(f)]
    assert inline == ["k8s.io.api.core.v1.Volume.volumeSource"]
