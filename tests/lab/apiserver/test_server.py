"""The lab API server through the official `kubernetes` client (unmodified) and raw HTTPS."""

from __future__ import annotations

import contextlib
import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import urllib3
from kubernetes import client, dynamic, watch

from kalab.lab.apiserver import endpoints
from kalab.lab.apiserver import store as store_module
from kalab.lab.apiserver.hooks import ExecRequest, LogRequest, PodHooks
from kalab.lab.apiserver.resources import Registry
from kalab.lab.apiserver.server import RunningServer, serve
from kalab.lab.apiserver.store import Store
from tests.lab.apiserver.api_kit import official_client, raw_request, running_server, seeded_store, wait_for

TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


def expect_api_error(code: int, call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call and expect an ApiException with `code`; return the Status body."""
    with pytest.raises(client.ApiException) as err:
        call(*args, **kwargs)
    assert err.value.status == code, err.value.body
    body: dict[str, Any] = json.loads(err.value.body)
    assert body["kind"] == "Status" and body["code"] == code
    return body


# -- serving ---------------------------------------------------------------------------------------------------


def listening_sockets(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def test_listens_on_loopback_only_and_keeps_secrets_private(server: RunningServer, tmp_path: Path) -> None:
    assert server.bound_address == ("127.0.0.1", server.port)
    assert listening_sockets(server.port) == ["0100007F"]  # 127.0.0.1, and nothing on 0.0.0.0 or ::
    assert server.url == f"https://127.0.0.1:{server.port}"
    assert stat.S_IMODE(server.kubeconfig.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state" / "pki" / "apiserver.key").stat().st_mode) == 0o600
    assert server.token in server.kubeconfig.read_text()
    for host in ("0.0.0.0", "192.168.7.1", "::1"):
        with pytest.raises(ValueError, match="loopback"):
            serve(Store(Registry()), None, tmp_path / "other", host=host)


def test_requests_need_the_bearer_token(server: RunningServer, api: client.ApiClient) -> None:
    for token in (None, "wrong-token"):
        denied = raw_request(server, "GET", "/api/v1/namespaces", token=token)
        assert denied.status == 401
        assert denied.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    assert raw_request(server, "GET", "/version", token=None).status == 401
    for health in ("/healthz", "/readyz", "/livez"):
        ok = raw_request(server, "GET", health, token=None)
        assert (ok.status, ok.body) == (200, b"ok")
    assert client.VersionApi(api).get_code().git_version.startswith("v1.30.")
    assert api.configuration.api_key["BearerToken"] == f"Bearer {server.token}"
    wrong = client.Configuration(host=server.url, api_key={"BearerToken": "Bearer wrong"})
    wrong.ssl_ca_cert = str(server.ca_file)
    with client.ApiClient(wrong) as wrong_client:
        expect_api_error(401, client.CoreV1Api(wrong_client).list_namespace)


def test_shutdown_ends_watches_and_stops_listening(lab_store: Store, tmp_path: Path) -> None:
    running = serve(lab_store, None, tmp_path / "state")
    with official_client(running) as api:
        events: list[str] = []

        def consume() -> None:
            stream = watch.Watch().stream(client.CoreV1Api(api).list_namespace, timeout_seconds=60)
            with contextlib.suppress(urllib3.exceptions.HTTPError):  # the server going away ends the stream
                for event in stream:
                    events.append(event["type"])

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        wait_for(lambda: len(events) >= 2, what="the initial ADDED events")
        running.shutdown()
        reader.join(timeout=5)
        assert not reader.is_alive(), "a watch outlived the server"
    assert listening_sockets(running.port) == []
    assert not [t for t in threading.enumerate() if t.name in (f"kalab-apiserver-{running.port}", "kalab-crds")]
    running.shutdown()  # idempotent


# -- CRUD, conflicts, selectors ---------------------------------------------------------------------------------


def test_crud_with_the_typed_clients(api: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    made = core.create_namespaced_config_map("demo", {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    assert made.metadata.uid and made.metadata.resource_version and made.metadata.creation_timestamp
    assert core.read_namespaced_config_map("settings", "demo").data == {"a": "1"}
    made.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("settings", "demo", made)
    assert replaced.data == {"a": "1", "b": "2"}
    assert int(replaced.metadata.resource_version) > int(made.metadata.resource_version)
    body = expect_api_error(409, core.create_namespaced_config_map, "demo", {"metadata": {"name": "settings"}})
    assert body["reason"] == "AlreadyExists"
    generated = core.create_namespaced_secret("demo", {"metadata": {"generateName": "token-"}, "type": "Opaque"})
    assert generated.metadata.name.startswith("token-") and len(generated.metadata.name) == len("token-") + 5
    status = core.delete_namespaced_config_map("settings", "demo")
    assert status["status"] == "Success" and status["details"]["name"] == "settings"
    assert expect_api_error(404, core.read_namespaced_config_map, "settings", "demo")["reason"] == "NotFound"
    ds = apps.create_namespaced_daemon_set(
        "demo",
        {
            "metadata": {"name": "keepalivedgroup-workers"},
            "spec": {
                "selector": {"matchLabels": {"keepalivedGroup": "keepalivedgroup-workers"}},
                "template": {
                    "metadata": {"labels": {"keepalivedGroup": "keepalivedgroup-workers"}},
                    "spec": {"hostNetwork": True, "containers": [{"name": "keepalived", "image": "k"}]},
                },
            },
        },
    )
    assert ds.spec.template.spec.host_network is True
    assert [d.metadata.name for d in apps.list_daemon_set_for_all_namespaces().items] == ["keepalivedgroup-workers"]
    assert expect_api_error(404, core.read_namespaced_config_map, "x", "nowhere")["reason"] == "NotFound"
    nodes = core.list_node()
    assert [n.metadata.name for n in nodes.items] == ["master-0", "master-1", "master-2"]
    assert int(nodes.metadata.resource_version) > 0


def test_delete_answers_like_kube_apiserver(api: client.ApiClient) -> None:
    """Pods, services, service accounts come back as the deleted object (as the client decodes them); others: Status."""
    core = client.CoreV1Api(api)
    make_pod(core, "test-0", "master-0", "Running")
    core.create_namespaced_service("demo", {"metadata": {"name": "demo"}, "spec": {"ports": [{"port": 80}]}})
    core.create_namespaced_service_account("demo", {"metadata": {"name": "default"}})
    pod = core.delete_namespaced_pod("test-0", "demo")
    assert isinstance(pod, client.V1Pod) and pod.metadata.name == "test-0"
    svc = core.delete_namespaced_service("demo", "demo")
    assert isinstance(svc, client.V1Service) and svc.spec.ports[0].port == 80
    assert isinstance(core.delete_namespaced_service_account("default", "demo"), client.V1ServiceAccount)
    assert core.delete_node("master-2")["kind"] == "Status"
    assert core.list_namespaced_pod("demo").items == []


def test_update_with_a_stale_resource_version_conflicts(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    first = core.create_namespaced_config_map("demo", {"metadata": {"name": "c"}, "data": {"v": "1"}})
    stale_rv = first.metadata.resource_version
    first.data["v"] = "2"
    core.replace_namespaced_config_map("c", "demo", first)
    first.data["v"] = "3"
    first.metadata.resource_version = stale_rv
    body = expect_api_error(409, core.replace_namespaced_config_map, "c", "demo", first)
    assert body["reason"] == "Conflict" and "the object has been modified" in body["message"]
    assert core.read_namespaced_config_map("c", "demo").data == {"v": "2"}


def make_pod(core: client.CoreV1Api, name: str, node: str, phase: str, **labels: str) -> None:
    core.create_namespaced_pod(
        "demo",
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "php", "image": "php"}]},
        },
    )
    core.patch_namespaced_pod_status(name, "demo", {"status": {"phase": phase}})


def test_label_and_field_selectors(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    make_pod(core, "test-0", "master-0", "Running", env="test")
    make_pod(core, "test-1", "master-2", "Running", env="test", tier="web")
    make_pod(core, "other", "master-2", "Pending", env="prod")

    def names(**selectors: str) -> list[str]:
        return [p.metadata.name for p in core.list_namespaced_pod("demo", **selectors).items]

    assert names(label_selector="env=test") == ["test-0", "test-1"]
    assert names(label_selector="env in (prod,staging)") == ["other"]
    assert names(label_selector="env=test,!tier") == ["test-0"]
    assert names(label_selector="tier") == ["test-1"]
    assert names(field_selector="spec.nodeName=master-2") == ["other", "test-1"]
    assert names(field_selector="status.phase=Running,spec.nodeName!=master-0") == ["test-1"]
    assert names(field_selector="metadata.name=test-0") == ["test-0"]
    everywhere = core.list_pod_for_all_namespaces(field_selector="metadata.namespace=demo", label_selector="env=test")
    assert [p.metadata.name for p in everywhere.items] == ["test-0", "test-1"]
    assert expect_api_error(400, core.list_namespaced_pod, "demo", label_selector="env in (")["reason"] == "BadRequest"


def test_limit_and_continue_page_through_everything(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for index in range(5):
        core.create_namespaced_config_map("demo", {"metadata": {"name": f"cm-{index}"}})
    seen: list[str] = []
    token = None
    for _ in range(5):
        page = core.list_namespaced_config_map("demo", limit=2, _continue=token)
        seen += [c.metadata.name for c in page.items]
        assert len(page.items) <= 2
        token = page.metadata._continue
        if not token:
            break
    assert seen == [f"cm-{i}" for i in range(5)]


def test_delete_collection_with_a_selector(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for name, env in (("a", "test"), ("b", "test"), ("c", "prod")):
        core.create_namespaced_config_map("demo", {"metadata": {"name": name, "labels": {"env": env}}})
    core.delete_collection_namespaced_config_map("demo", label_selector="env=test")
    assert [c.metadata.name for c in core.list_namespaced_config_map("demo").items] == ["c"]


# -- watch -------------------------------------------------------------------------------------------------------


def collect(stream: Iterator[dict[str, Any]], count: int, into: list[dict[str, Any]]) -> None:
    for event in stream:
        into.append(event)
        if len(into) >= count:
            return


def test_watch_from_a_resource_version_loses_nothing(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("demo", {"metadata": {"name": "before"}})
    start = core.list_namespaced_config_map("demo").metadata.resource_version
    events: list[dict[str, Any]] = []
    watcher = watch.Watch()
    stream = watcher.stream(core.list_namespaced_config_map, "demo", resource_version=start, timeout_seconds=20)
    reader = threading.Thread(target=collect, args=(stream, 42, events), daemon=True)
    reader.start()
    for index in range(40):
        core.create_namespaced_config_map("demo", {"metadata": {"name": f"burst-{index}"}})
    core.patch_namespaced_config_map("burst-3", "demo", {"data": {"x": "1"}})
    core.delete_namespaced_config_map("burst-7", "demo")
    core.create_namespaced_config_map("default", {"metadata": {"name": "elsewhere"}})  # another namespace
    reader.join(timeout=15)
    watcher.stop()
    assert len(events) == 42, [e["type"] for e in events]
    assert [e["object"].metadata.name for e in events[:40]] == [f"burst-{i}" for i in range(40)]
    assert all(e["type"] == "ADDED" for e in events[:40])
    assert (events[40]["type"], events[40]["object"].data) == ("MODIFIED", {"x": "1"})
    assert (events[41]["type"], events[41]["object"].metadata.name) == ("DELETED", "burst-7")
    versions = [int(e["object"].metadata.resource_version) for e in events]
    assert versions == sorted(versions) and versions[0] > int(start)


def test_watch_without_resource_version_starts_with_current_objects(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("demo", {"metadata": {"name": "a", "labels": {"app": "x"}}})
    core.create_namespaced_config_map("demo", {"metadata": {"name": "b", "labels": {"app": "y"}}})
    events: list[dict[str, Any]] = []
    stream = watch.Watch().stream(core.list_namespaced_config_map, "demo", label_selector="app=x", timeout_seconds=1)
    collect(stream, 99, events)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "a")]


def test_watch_bookmarks_and_timeout(lab_store: Store, tmp_path: Path) -> None:
    with running_server(lab_store, tmp_path / "state", bookmark_interval=0.2) as server, official_client(server) as api:
        core = client.CoreV1Api(api)
        rv = core.list_namespaced_config_map("demo").metadata.resource_version
        started = time.monotonic()
        stream = watch.Watch().stream(
            core.list_namespaced_config_map, "demo", resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=2
        )
        events = list(stream)
        elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 6, elapsed
    assert events and all(e["type"] == "BOOKMARK" for e in events)
    assert all(int(e["raw_object"]["metadata"]["resourceVersion"]) >= int(rv) for e in events)


def test_watch_from_an_expired_resource_version_gets_410(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(store_module, "HISTORY", 5)
    small = seeded_store()  # its history keeps only 5 events
    with running_server(small, tmp_path / "state") as server, official_client(server) as api:
        core = client.CoreV1Api(api)
        for index in range(10):
            core.create_namespaced_config_map("demo", {"metadata": {"name": f"c{index}"}})
        stream = watch.Watch().stream(core.list_namespaced_config_map, "demo", resource_version="2", timeout_seconds=5)
        with pytest.raises(client.ApiException) as err:
            next(iter(stream))
        assert err.value.status == 410
        raw = raw_request(server, "GET", "/api/v1/namespaces/demo/configmaps?watch=true&resourceVersion=2")
        assert raw.status == 200
        event = json.loads(raw.body.splitlines()[0])
        assert event["type"] == "ERROR" and event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"


def test_streaming_list_ends_initial_events_with_a_bookmark(server: RunningServer) -> None:
    query = "watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
    raw = raw_request(server, "GET", f"/api/v1/nodes?{query}&timeoutSeconds=1")
    events = [json.loads(line) for line in raw.body.splitlines()]
    assert [e["type"] for e in events[:4]] == ["ADDED", "ADDED", "ADDED", "BOOKMARK"]
    marker = events[3]["object"]["metadata"]
    assert marker["annotations"] == {"k8s.io/initial-events-end": "true"} and int(marker["resourceVersion"]) > 0


def test_single_object_watch_path(api: client.ApiClient, server: RunningServer) -> None:
    core = client.CoreV1Api(api)
    rv = core.read_node("master-1").metadata.resource_version
    core.patch_node("master-0", {"metadata": {"labels": {"x": "1"}}})
    core.patch_node("master-1", {"metadata": {"labels": {"x": "1"}}})
    raw = raw_request(server, "GET", f"/api/v1/watch/nodes/master-1?resourceVersion={rv}&timeoutSeconds=1")
    events = [json.loads(line) for line in raw.body.splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("MODIFIED", "master-1")]


# -- patch, status, scale, dry run -------------------------------------------------------------------------------


def test_three_patch_types(api: client.ApiClient) -> None:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    node = core.patch_node("master-1", {"metadata": {"labels": {"node-role.kubernetes.io/loadbalancer": ""}}})
    assert node.metadata.labels["node-role.kubernetes.io/loadbalancer"] == ""
    assert node.metadata.labels["kubernetes.io/hostname"] == "master-1"  # strategic merge kept the others
    node = core.patch_node("master-1", [{"op": "remove", "path": "/metadata/labels/node-role.kubernetes.io~1master"}])
    assert "node-role.kubernetes.io/master" not in node.metadata.labels
    network = custom.patch_cluster_custom_object(
        "config.openshift.io",
        "v1",
        "networks",
        "cluster",
        {
            "spec": {
                "externalIP": {"policy": {"allowedCIDRs": ["172.21.6.33/27"]}, "autoAssignCIDRs": ["172.21.6.33/27"]}
            }
        },
    )
    assert network["spec"]["externalIP"]["autoAssignCIDRs"] == ["172.21.6.33/27"]
    assert network["spec"]["serviceNetwork"] == ["172.30.0.0/16"]
    body = expect_api_error(
        415,
        custom.patch_cluster_custom_object,
        "config.openshift.io",
        "v1",
        "networks",
        "cluster",
        {"spec": {}},
        _content_type="application/strategic-merge-patch+json",
    )
    assert body["reason"] == "UnsupportedMediaType"
    expect_api_error(404, core.patch_node, "master-9", {"metadata": {"labels": {"a": "b"}}})


def test_status_subresource_is_separate_from_the_object(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service(
        "demo",
        {
            "metadata": {"name": "demo"},
            "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}},
        },
    )
    patched = core.patch_namespaced_service_status(
        "demo",
        "demo",
        {"status": {"loadBalancer": {"ingress": [{"ip": "172.21.6.50"}]}}, "spec": {"type": "ClusterIP"}},
    )
    assert patched.status.load_balancer.ingress[0].ip == "172.21.6.50"
    assert patched.spec.type == "LoadBalancer"  # a status write never touches spec
    svc = core.read_namespaced_service("demo", "demo")
    svc.spec.external_ips = ["172.21.6.50"]
    svc.status.load_balancer.ingress[0].ip = "9.9.9.9"
    replaced = core.replace_namespaced_service("demo", "demo", svc)
    assert replaced.spec.external_ips == ["172.21.6.50"]
    assert replaced.status.load_balancer.ingress[0].ip == "172.21.6.50"  # an object write never touches status
    read = core.read_namespaced_service_status("demo", "demo")
    assert read.status.load_balancer.ingress[0].ip == "172.21.6.50"


def test_scale_subresource(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(
        "demo",
        {
            "metadata": {"name": "keepalived-operator"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "op"}},
                "template": {
                    "metadata": {"labels": {"app": "op"}},
                    "spec": {"containers": [{"name": "m", "image": "i"}]},
                },
            },
        },
    )
    scale = apps.read_namespaced_deployment_scale("keepalived-operator", "demo")
    assert scale.spec.replicas == 1 and scale.status.selector == "app=op"
    apps.patch_namespaced_deployment_scale("keepalived-operator", "demo", {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("keepalived-operator", "demo").spec.replicas == 3


def test_dry_run_changes_nothing(api: client.ApiClient, lab_store: Store) -> None:
    core = client.CoreV1Api(api)
    before = lab_store.resource_version
    made = core.create_namespaced_config_map("demo", {"metadata": {"name": "dry"}}, dry_run="All")
    assert made.metadata.name == "dry" and made.metadata.uid
    expect_api_error(404, core.read_namespaced_config_map, "dry", "demo")
    core.create_namespaced_config_map("demo", {"metadata": {"name": "x"}})
    expect_api_error(409, core.create_namespaced_config_map, "demo", {"metadata": {"name": "x"}}, dry_run="All")
    after_create = lab_store.resource_version
    custom = client.CustomObjectsApi(api)
    preview = custom.patch_cluster_custom_object(
        "config.openshift.io",
        "v1",
        "networks",
        "cluster",
        {"spec": {"externalIP": {"autoAssignCIDRs": ["172.21.6.32/27"]}}},
        dry_run="All",
    )
    assert preview["spec"]["externalIP"] == {"autoAssignCIDRs": ["172.21.6.32/27"]}
    assert (
        "externalIP" not in custom.get_cluster_custom_object("config.openshift.io", "v1", "networks", "cluster")["spec"]
    )
    core.delete_namespaced_config_map("x", "demo", dry_run="All")
    core.read_namespaced_config_map("x", "demo")
    assert lab_store.resource_version == after_create == before + 1


# -- CRDs ------------------------------------------------------------------------------------------------------------


def crd_body(scope: str, plural: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.kalab.io"},
        "spec": {
            "group": "example.kalab.io",
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": [plural[:3]]},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Interface", "type": "string", "jsonPath": ".spec.interface"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                }
            ],
        },
    }


def established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    conditions = ext.read_custom_resource_definition(name).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def test_a_crd_created_through_the_api_is_served(api: client.ApiClient, server: RunningServer, tmp_path: Path) -> None:
    ext, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
    group, version = "example.kalab.io", "v1alpha1"
    ext.create_custom_resource_definition(crd_body("Namespaced", "keepalivedgroups", "KeepalivedGroup"))
    ext.create_custom_resource_definition(crd_body("Cluster", "lbpools", "LbPool"))
    wait_for(lambda: established(ext, "keepalivedgroups.example.kalab.io"), what="Established")
    wait_for(lambda: established(ext, "lbpools.example.kalab.io"), what="Established")

    group_doc = raw_request(server, "GET", f"/apis/{group}/{version}").json()
    names = {r["name"]: r for r in group_doc["resources"]}
    assert names["keepalivedgroups"]["namespaced"] and not names["lbpools"]["namespaced"]
    assert names["keepalivedgroups"]["shortNames"] == ["kee"] and "keepalivedgroups/status" in names

    kg = custom.create_namespaced_custom_object(
        group,
        version,
        "demo",
        "keepalivedgroups",
        {
            "apiVersion": f"{group}/{version}",
            "kind": "KeepalivedGroup",
            "metadata": {"name": "keepalivedgroup-workers", "labels": {"tier": "lb"}},
            "spec": {"interface": "ens3", "nodeSelector": {"node-role.kubernetes.io/loadbalancer": ""}},
        },
    )
    assert kg["kind"] == "KeepalivedGroup" and kg["metadata"]["namespace"] == "demo"
    custom.patch_namespaced_custom_object(
        group, version, "demo", "keepalivedgroups", "keepalivedgroup-workers", {"spec": {"blacklistRouterIDs": [1, 2]}}
    )
    custom.patch_namespaced_custom_object_status(
        group,
        version,
        "demo",
        "keepalivedgroups",
        "keepalivedgroup-workers",
        {"status": {"routerIDs": {"demo/demo": 3}}},
    )
    got = custom.get_namespaced_custom_object(group, version, "demo", "keepalivedgroups", "keepalivedgroup-workers")
    assert got["spec"]["blacklistRouterIDs"] == [1, 2] and got["status"] == {"routerIDs": {"demo/demo": 3}}
    listed = custom.list_namespaced_custom_object(group, version, "demo", "keepalivedgroups", label_selector="tier=lb")
    assert listed["kind"] == "KeepalivedGroupList" and len(listed["items"]) == 1

    pool = custom.create_cluster_custom_object(
        group,
        version,
        "lbpools",
        {
            "apiVersion": f"{group}/{version}",
            "kind": "LbPool",
            "metadata": {"name": "pool-a"},
            "spec": {"interface": "br0"},
        },
    )
    assert "namespace" not in pool["metadata"]
    table = raw_request(server, "GET", f"/apis/{group}/{version}/lbpools", headers={"Accept": TABLE}).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Interface", "Age"]
    assert table["rows"][0]["cells"][:2] == ["pool-a", "br0"]

    dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    pools = dyn.resources.get(api_version=f"{group}/{version}", kind="LbPool")
    assert [p.metadata.name for p in pools.get().items] == ["pool-a"]
    kgs = dyn.resources.get(api_version=f"{group}/{version}", kind="KeepalivedGroup")
    assert kgs.get(name="keepalivedgroup-workers", namespace="demo").spec.interface == "ens3"

    ext.delete_custom_resource_definition("keepalivedgroups.example.kalab.io")
    missing = raw_request(server, "GET", f"/apis/{group}/{version}/namespaces/demo/keepalivedgroups")
    assert missing.status == 404
    remaining = {r["name"] for r in raw_request(server, "GET", f"/apis/{group}/{version}").json()["resources"]}
    assert "keepalivedgroups" not in remaining and "lbpools" in remaining
    ext.create_custom_resource_definition(crd_body("Namespaced", "keepalivedgroups", "KeepalivedGroup"))
    again = custom.list_namespaced_custom_object(group, version, "demo", "keepalivedgroups")
    assert again["items"] == []  # deleting a CRD deleted its objects


def test_an_invalid_crd_is_refused(api: client.ApiClient) -> None:
    body = crd_body("Namespaced", "widgets", "Widget")
    body["metadata"]["name"] = "widgets.wrong.io"
    assert (
        expect_api_error(422, client.ApiextensionsV1Api(api).create_custom_resource_definition, body)["reason"]
        == "Invalid"
    )


# -- content negotiation and errors -----------------------------------------------------------------------------


def seed_service(core: client.CoreV1Api) -> None:
    core.create_namespaced_service(
        "demo",
        {
            "metadata": {"name": "demo"},
            "spec": {
                "type": "LoadBalancer",
                "clusterIP": "172.30.203.237",
                "externalIPs": ["172.21.6.50"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 31682}],
            },
        },
    )
    core.patch_namespaced_service_status(
        "demo", "demo", {"status": {"loadBalancer": {"ingress": [{"ip": "172.21.6.50"}]}}}
    )


def test_tables_and_partial_metadata_when_asked(api: client.ApiClient, server: RunningServer) -> None:
    seed_service(client.CoreV1Api(api))
    table = raw_request(server, "GET", "/api/v1/namespaces/demo/services?limit=500", headers={"Accept": TABLE}).json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    columns = [c["name"] for c in table["columnDefinitions"]]
    row = dict(zip(columns, table["rows"][0]["cells"], strict=True))
    assert (row["Type"], row["Cluster-IP"], row["External-IP"], row["Port(s)"]) == (
        "LoadBalancer",
        "172.30.203.237",
        "172.21.6.50,172.21.6.50",
        "80:31682/TCP",
    )
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    beta = raw_request(
        server,
        "GET",
        "/api/v1/namespaces/demo/services/demo?includeObject=Object",
        headers={"Accept": "application/json;as=Table;v=v1beta1;g=meta.k8s.io"},
    ).json()
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1" and beta["rows"][0]["object"]["kind"] == "Service"
    partial = raw_request(
        server,
        "GET",
        "/api/v1/nodes",
        headers={"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"},
    ).json()
    assert partial["kind"] == "PartialObjectMetadataList" and len(partial["items"]) == 3
    table_in_protobuf = {"Accept": "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io"}
    assert raw_request(server, "GET", "/api/v1/nodes", headers=table_in_protobuf).status == 406  # Table has none
    groups = raw_request(
        server,
        "GET",
        "/apis",
        headers={"Accept": ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")},
    ).json()
    assert groups["kind"] == "APIGroupList"


def test_error_codes(server: RunningServer, api: client.ApiClient) -> None:
    def call(method: str, path: str, body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        answer = raw_request(server, method, path, headers={"Content-Type": content_type}, body=data)
        doc: dict[str, Any] = answer.json()
        assert doc["kind"] == "Status" and doc["code"] == answer.status
        return doc

    assert call("GET", "/api/v1/widgets")["code"] == 404
    assert call("GET", "/apis/nothere.io/v1/things")["code"] == 404
    assert call("GET", "/api/v1/namespaces/demo/configmaps/nope")["reason"] == "NotFound"
    assert call("GET", "/api/v1/configmaps/nope")["code"] == 404  # namespaced objects live in namespaces
    assert call("PUT", "/api/v1/namespaces/demo/configmaps", {})["reason"] == "MethodNotAllowed"
    assert call("POST", "/api/v1/nodes/master-0", {})["code"] == 405
    assert (
        call("POST", "/api/v1/namespaces/demo/configmaps", b"\x0a\x0b", "application/vnd.kubernetes.protobuf")["code"]
        == 415
    )
    assert call("PATCH", "/api/v1/nodes/master-0", {}, "application/xml")["code"] == 415
    assert call("POST", "/api/v1/namespaces/demo/configmaps", {"metadata": {"name": "Bad_Name"}})["reason"] == "Invalid"
    assert (
        call("POST", "/api/v1/namespaces/demo/configmaps", {"metadata": {"name": "x", "namespace": "default"}})["code"]
        == 400
    )
    assert call("POST", "/api/v1/namespaces/demo/configmaps", b"{not json")["code"] == 400
    assert (
        call("POST", "/api/v1/namespaces/demo/configmaps", {"kind": "Secret", "metadata": {"name": "x"}})["code"] == 400
    )
    assert call("PUT", "/api/v1/nodes/master-0", {"metadata": {"name": "master-1"}})["code"] == 400
    assert call("GET", "/api/v1/namespaces/demo/pods/nope/log")["code"] == 404


def test_pod_streams_need_a_kubelet(api: client.ApiClient, server: RunningServer) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        "demo",
        {
            "metadata": {"name": "test-0"},
            "spec": {
                "containers": [{"name": "php", "image": "php", "ports": [{"containerPort": 8080, "name": "http"}]}]
            },
        },
    )
    for path in ("log", "exec?command=ip&command=addr", "proxy/metrics"):
        answer = raw_request(server, "GET", f"/api/v1/namespaces/demo/pods/test-0/{path}")
        assert answer.status == 503, path
        assert answer.json()["reason"] == "ServiceUnavailable"
    assert raw_request(server, "GET", "/api/v1/namespaces/demo/pods/test-0:9650/proxy/metrics").status == 503
    assert raw_request(server, "GET", "/api/v1/namespaces/demo/pods/ghost:9650/proxy/metrics").status == 404


def test_server_side_apply_creates_then_owns_what_it_applies(server: RunningServer, api: client.ApiClient) -> None:
    path = "/api/v1/namespaces/demo/configmaps/applied?fieldManager=kalab-test"
    headers = {"Content-Type": "application/apply-patch+yaml"}
    doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n"
    created = raw_request(server, "PATCH", path, headers=headers, body=doc)
    assert created.status == 201 and created.json()["data"] == {"a": "1"}
    merged = raw_request(server, "PATCH", path, headers=headers, body=doc.replace(b"a: '1'", b"b: '2'"))
    # `a` was owned by this applier alone and is left out now: it goes.
    assert merged.status == 200 and merged.json()["data"] == {"b": "2"}


def test_a_deleted_namespace_terminates_before_it_is_gone(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("demo", {"metadata": {"name": "inside"}})
    answer = core.delete_namespace("demo")
    assert answer["kind"] == "Namespace" and answer["status"]["phase"] == "Terminating"
    assert core.read_namespace("demo").status.phase == "Terminating"
    forbidden = expect_api_error(403, core.create_namespaced_config_map, "demo", {"metadata": {"name": "new"}})
    assert "being terminated" in forbidden["message"]
    core.delete_namespaced_config_map("inside", "demo")  # what is inside can still be deleted
    wait_for(lambda: "demo" not in [n.metadata.name for n in core.list_namespace().items], what="namespace gone")
    assert core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=demo").items == []


class StreamsRecorder:
    """Stands in for kalab.lab.apiserver.streams: records what the server routed to it and answers 200."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def _answer(self, handler: Any, text: str) -> None:
        handler.respond(200, [], text.encode())

    def serve_log(self, handler: Any, hooks: Any, request: LogRequest) -> None:
        self.calls.append(("log", request))
        self._answer(handler, "log")

    def serve_exec(self, handler: Any, hooks: Any, request: ExecRequest) -> None:
        self.calls.append(("exec", request))
        self._answer(handler, "exec")

    def serve_proxy(
        self, handler: Any, hooks: Any, namespace: str, pod: str, port: int, path: str, method: str, body: bytes
    ) -> None:
        self.calls.append(("proxy", (namespace, pod, port, path, method, body)))
        self._answer(handler, "proxy")


def test_pod_log_exec_and_proxy_are_routed_to_streams(
    monkeypatch: pytest.MonkeyPatch, lab_store: Store, tmp_path: Path
) -> None:
    recorder = StreamsRecorder()
    monkeypatch.setattr(endpoints, "streams", recorder)
    lab_store.create(
        lab_store.registry.by_key("/pods"),
        {
            "metadata": {"name": "test-0"},
            "spec": {
                "containers": [{"name": "php", "image": "php", "ports": [{"containerPort": 8080, "name": "http"}]}]
            },
        },
        "demo",
    )
    hooks = cast(PodHooks, object())  # the server only hands it on
    with running_server(lab_store, tmp_path / "state", hooks=hooks) as server:
        pod = "/api/v1/namespaces/demo/pods/test-0"

        def routed(method: str, path: str, body: bytes | None = None) -> tuple[str, Any]:
            answer = raw_request(server, method, pod + path, body=body)
            assert answer.status == 200, answer.body
            return recorder.calls.pop()

        assert routed("GET", "/log?container=php&follow=true&tailLines=5&timestamps=1") == (
            "log",
            LogRequest(namespace="demo", pod="test-0", container="php", follow=True, timestamps=True, tail_lines=5),
        )
        assert routed("GET", "/exec?command=ip&command=addr&stdin=true&stdout=true") == (
            "exec",
            ExecRequest(namespace="demo", pod="test-0", container=None, command=("ip", "addr"), stdin=True),
        )
        assert routed("POST", "/exec?command=true")[0] == "exec"
        assert routed("GET", "/proxy/metrics?name[]=x") == (
            "proxy",
            ("demo", "test-0", 8080, "/metrics?name[]=x", "GET", b""),
        )
        assert routed("GET", "/proxy")[1][2:4] == (8080, "/")
        assert routed("POST", "/proxy/api/", b"data")[1][2:] == (8080, "/api/", "POST", b"data")
        assert routed("GET", "/proxy/")[1][3] == "/"
        for target, port in (("test-0:9650", 9650), ("test-0:http", 8080), ("https:test-0:9650", 9650)):
            answer = raw_request(server, "GET", f"/api/v1/namespaces/demo/pods/{target}/proxy/metrics")
            assert answer.status == 200
            assert recorder.calls.pop()[1][1:4] == ("test-0", port, "/metrics")
        assert raw_request(server, "GET", f"{pod}:nope/proxy/").status == 400
        assert raw_request(server, "PUT", f"{pod}/log").status == 405
        assert recorder.calls == []
