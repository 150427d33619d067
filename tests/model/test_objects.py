"""kalab.model.objects: reading plain-dict Kubernetes objects and building owner references."""

from __future__ import annotations

from typing import Any

from kalab.model import objects

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web-1",
        "namespace": "demo",
        "uid": "u-1",
        "resourceVersion": "42",
        "finalizers": ["kubernetes"],
        "labels": {"app": "web"},
        "annotations": {"note": "x"},
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u-c"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u-rs", "controller": True},
        ],
    },
    "spec": {"nodeName": "worker-0"},
    "status": {
        "phase": "Running",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
    },
}


def test_sections_read_what_is_there() -> None:
    assert objects.spec(POD)["nodeName"] == "worker-0"
    assert objects.status(POD)["phase"] == "Running"
    assert objects.meta(POD)["uid"] == "u-1"
    assert (objects.name_of(POD), objects.namespace_of(POD), objects.uid_of(POD)) == ("web-1", "demo", "u-1")
    assert objects.labels_of(POD) == {"app": "web"}
    assert objects.annotations_of(POD) == {"note": "x"}
    assert objects.resource_version_of(POD) == "42"
    assert objects.finalizers_of(POD) == ["kubernetes"]
    assert objects.finalizers_of(POD) is not objects.meta(POD)["finalizers"]  # a caller may extend it


def test_missing_or_malformed_sections_read_as_empty() -> None:
    for broken in (None, {}, {"spec": None, "status": "oops", "metadata": ["x"]}):
        assert objects.spec(broken) == {}
        assert objects.status(broken) == {}
        assert objects.meta(broken) == {}
        assert objects.name_of(broken) == ""
        assert objects.namespace_of(broken, "default") == "default"
        assert objects.labels_of(broken) == {}
        assert objects.resource_version_of(broken) == ""
        assert objects.finalizers_of(broken) == []
        assert objects.controller_of(broken) is None
        assert objects.conditions_of(broken) == []
        assert not objects.pod_ready(broken)


def test_an_empty_section_is_fresh_so_putting_it_into_a_new_object_shares_nothing() -> None:
    first = objects.spec({})
    assert first is not objects.spec({})


def test_owner_reference_controls_by_default_and_can_merely_own() -> None:
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "uid": "u-rs"}}
    assert objects.owner_reference(rs) == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "rs",
        "uid": "u-rs",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert objects.owner_reference(rs, controller=False) == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "rs",
        "uid": "u-rs",
    }


def test_controller_of_picks_the_controlling_reference() -> None:
    assert objects.controller_of(POD) == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "rs",
        "uid": "u-rs",
        "controller": True,
    }
    assert objects.owned_by(POD, {"metadata": {"uid": "u-rs"}})
    assert not objects.owned_by(POD, {"metadata": {"uid": "u-c"}})  # owns it, but does not control it
    assert len(objects.owner_references(POD)) == 2


def test_conditions_and_pod_state() -> None:
    assert objects.condition_true(POD, "Ready")
    assert objects.condition(POD, "Initialized") is None
    assert objects.pod_ready(POD)
    assert not objects.pod_terminal(POD)
    failed = {"status": {"phase": "Failed", "conditions": [{"type": "Ready", "status": "False"}]}}
    assert objects.phase_of(failed) == "Failed"
    assert objects.pod_terminal(failed)
    assert not objects.pod_ready(failed)
