from __future__ import annotations

from typing import Any

import pytest

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    apply_patch,
    json_patch,
    merge_patch,
    parse_body,
    strategic_merge,
)


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc7386(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_merge_patch_does_not_change_its_inputs() -> None:
    target = {"spec": {"externalIP": {"autoAssignCIDRs": ["172.21.6.33/27"]}}}
    merge_patch(target, {"spec": {"externalIP": {"autoAssignCIDRs": ["172.21.6.32/27"]}}})
    assert target == {"spec": {"externalIP": {"autoAssignCIDRs": ["172.21.6.33/27"]}}}


def test_seed_network_patch_as_merge_patch() -> None:
    network = {"spec": {"serviceNetwork": ["172.30.0.0/16"], "networkType": "OpenShiftSDN"}}
    patch = {
        "spec": {"externalIP": {"policy": {"allowedCIDRs": ["172.21.6.33/27"]}, "autoAssignCIDRs": ["172.21.6.33/27"]}}
    }
    patched = apply_patch(network, patch, MERGE_PATCH)
    assert patched["spec"]["externalIP"]["autoAssignCIDRs"] == ["172.21.6.33/27"]
    assert patched["spec"]["serviceNetwork"] == ["172.30.0.0/16"]


def test_json_patch_operations_and_failures() -> None:
    obj = {"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [{"port": 80}]}}
    patched = json_patch(
        obj,
        [
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "replace", "path": "/spec/ports/0/port", "value": 8080},
            {"op": "remove", "path": "/metadata/labels/a"},
        ],
    )
    assert patched == {"metadata": {"labels": {"b": "2"}}, "spec": {"ports": [{"port": 8080}]}}
    assert obj["metadata"]["labels"] == {"a": "1"}
    with pytest.raises(ApiError) as failed_test:
        json_patch(obj, [{"op": "test", "path": "/metadata/labels/a", "value": "2"}])
    assert failed_test.value.code == 422
    with pytest.raises(ApiError) as missing:
        json_patch(obj, [{"op": "remove", "path": "/spec/nothere"}])
    assert missing.value.code == 422
    with pytest.raises(ApiError) as not_a_list:
        json_patch(obj, {"op": "add"})
    assert not_a_list.value.code == 400


def pod_spec() -> dict[str, Any]:
    return {
        "spec": {
            "containers": [
                {
                    "name": "keepalived",
                    "image": "k:1",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/keepalived"}],
                },
                {"name": "exporter", "image": "e:1", "ports": [{"containerPort": 9650, "name": "metrics"}]},
            ],
            "tolerations": [{"operator": "Exists"}],
            "volumes": [{"name": "config", "configMap": {"name": "c"}}, {"name": "pid", "emptyDir": {}}],
        },
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]},
    }


def test_strategic_merge_keys_containers_env_ports_volumes() -> None:
    patched = strategic_merge(
        pod_spec(),
        {
            "spec": {
                "containers": [
                    {"name": "exporter", "image": "e:2", "ports": [{"containerPort": 9650, "hostPort": 9650}]},
                    {"name": "keepalived", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]},
                    {"name": "reloader", "image": "r:1"},
                ],
                "volumes": [{"name": "stats", "emptyDir": {}}],
            }
        },
    )
    containers = {c["name"]: c for c in patched["spec"]["containers"]}
    assert [c["name"] for c in patched["spec"]["containers"]] == ["keepalived", "exporter", "reloader"]
    assert containers["exporter"]["image"] == "e:2"
    assert containers["exporter"]["ports"] == [{"containerPort": 9650, "name": "metrics", "hostPort": 9650}]
    assert containers["keepalived"]["image"] == "k:1"  # untouched fields stay
    assert containers["keepalived"]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert [v["name"] for v in patched["spec"]["volumes"]] == ["config", "pid", "stats"]


def test_strategic_merge_replaces_tolerations_and_merges_conditions_by_type() -> None:
    patched = strategic_merge(
        pod_spec(),
        {
            "spec": {"tolerations": [{"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        },
    )
    assert patched["spec"]["tolerations"] == [{"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}]
    assert patched["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "Initialized", "status": "True"},
    ]


def test_strategic_merge_service_ports_merge_on_port() -> None:
    svc = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 80}]}}
    patched = strategic_merge(svc, {"spec": {"ports": [{"port": 80, "nodePort": 31682}, {"port": 443}]}})
    assert patched["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 80, "nodePort": 31682},
        {"port": 443},
    ]


def test_strategic_merge_directives() -> None:
    original = pod_spec()
    deleted = strategic_merge(
        original,
        {
            "spec": {
                "containers": [{"name": "exporter", "$patch": "delete"}],
                "volumes": [{"name": "pid", "$patch": "delete"}],
            }
        },
    )
    assert [c["name"] for c in deleted["spec"]["containers"]] == ["keepalived"]
    assert [v["name"] for v in deleted["spec"]["volumes"]] == ["config"]
    replaced = strategic_merge(
        original, {"spec": {"volumes": [{"$patch": "replace"}, {"name": "only", "emptyDir": {}}]}}
    )
    assert replaced["spec"]["volumes"] == [{"name": "only", "emptyDir": {}}]
    map_replaced = strategic_merge(
        {"metadata": {"labels": {"a": "1", "b": "2"}}}, {"metadata": {"labels": {"$patch": "replace", "c": "3"}}}
    )
    assert map_replaced["metadata"]["labels"] == {"c": "3"}
    map_deleted = strategic_merge(
        {"spec": {"selector": {"a": "1"}, "type": "x"}}, {"spec": {"selector": {"$patch": "delete"}}}
    )
    assert map_deleted == {"spec": {"type": "x"}}
    ordered = strategic_merge(
        original,
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "exporter"}, {"name": "keepalived"}],
                "containers": [{"name": "keepalived", "image": "k:2"}],
            }
        },
    )
    assert [c["name"] for c in ordered["spec"]["containers"]] == ["exporter", "keepalived"]
    assert ordered["spec"]["containers"][1]["image"] == "k:2"
    assert not any(k.startswith("$") for k in ordered["spec"])
    finalizers = strategic_merge(
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}},
    )
    assert finalizers["metadata"]["finalizers"] == ["b", "c"]
    assert original == pod_spec()  # the original is never changed


def test_strategic_merge_null_removes_and_label_patch_like_kubectl_label() -> None:
    node = {"metadata": {"name": "master-1", "labels": {"kubernetes.io/hostname": "master-1", "old": "x"}}}
    patched = apply_patch(
        node, {"metadata": {"labels": {"node-role.kubernetes.io/loadbalancer": "", "old": None}}}, STRATEGIC_PATCH
    )
    assert patched["metadata"]["labels"] == {
        "kubernetes.io/hostname": "master-1",
        "node-role.kubernetes.io/loadbalancer": "",
    }


def test_apply_patch_types_and_bodies() -> None:
    current = {"metadata": {"name": "x"}, "data": {"a": "1"}}
    assert apply_patch(current, [{"op": "add", "path": "/data/b", "value": "2"}], JSON_PATCH)["data"] == {
        "a": "1",
        "b": "2",
    }
    applied = apply_patch(current, parse_body(b"metadata:\n  name: x\ndata:\n  c: '3'\n", APPLY_PATCH), APPLY_PATCH)
    assert applied["data"] == {"a": "1", "c": "3"}
    with pytest.raises(ApiError) as unknown:
        apply_patch(current, {}, "application/xml")
    assert unknown.value.code == 415
    with pytest.raises(ApiError) as not_object:
        apply_patch(current, ["x"], MERGE_PATCH)
    assert not_object.value.code == 400
    with pytest.raises(ApiError) as garbage:
        parse_body(b"{not json", "application/json")
    assert garbage.value.code == 400
