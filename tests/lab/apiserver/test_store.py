from __future__ import annotations

import threading

import pytest

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.namespaces import NamespaceTerminator
from kalab.lab.apiserver.resources import Registry
from kalab.lab.apiserver.store import Event, Store


@pytest.fixture
def store() -> Store:
    s = Store(Registry())
    s.create(s.registry.by_key("/namespaces"), {"metadata": {"name": "demo"}})
    return s


def pod(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"nodeName": "master-0"}}


def test_create_fills_identity_and_refuses_duplicates(store: Store) -> None:
    pods = store.registry.by_key("/pods")
    made = store.create(pods, pod("test-0"), "demo")
    meta = made["metadata"]
    assert meta["namespace"] == "demo" and meta["uid"] and meta["creationTimestamp"]
    assert made["kind"] == "Pod" and made["apiVersion"] == "v1"
    with pytest.raises(ApiError) as err:
        store.create(pods, pod("test-0"), "demo")
    assert err.value.code == 409 and err.value.reason == "AlreadyExists"


def test_generate_name_and_missing_namespace(store: Store) -> None:
    pods = store.registry.by_key("/pods")
    made = store.create(pods, {"metadata": {"generateName": "keepalivedgroup-workers-"}}, "demo")
    assert made["metadata"]["name"].startswith("keepalivedgroup-workers-")
    assert len(made["metadata"]["name"]) == len("keepalivedgroup-workers-") + 5
    with pytest.raises(ApiError) as err:
        store.create(pods, pod("x"), "nowhere")
    assert err.value.code == 404


def test_stale_update_conflicts_and_status_subresource_is_separate(store: Store) -> None:
    pods = store.registry.by_key("/pods")
    first = store.create(pods, pod("test-0"), "demo")
    first["spec"]["nodeName"] = "master-2"
    first["status"] = {"phase": "Running"}
    second = store.update(pods, first, "demo")
    assert second["spec"]["nodeName"] == "master-2"
    assert "status" not in second  # writes to the object never touch status
    assert second["metadata"]["generation"] == 2
    with pytest.raises(ApiError) as err:
        store.update(pods, first, "demo")  # first's resourceVersion is stale now
    assert err.value.reason == "Conflict"
    status = store.update(pods, {**second, "status": {"phase": "Running"}}, "demo", subresource="status")
    assert status["status"] == {"phase": "Running"} and status["metadata"]["generation"] == 2


def test_selectors(store: Store) -> None:
    pods = store.registry.by_key("/pods")
    store.create(pods, pod("a", env="test", tier="web"), "demo")
    store.create(pods, pod("b", env="prod"), "demo")
    names = lambda **kw: [p["metadata"]["name"] for p in store.list(pods, "demo", **kw)[0]]  # noqa: E731
    assert names(labels="env=test") == ["a"]
    assert names(labels="env in (test,prod),!tier") == ["b"]
    assert names(labels="env!=test") == ["b"]
    assert names(fields="metadata.name=b") == ["b"]
    assert names(fields="spec.nodeName=master-0,metadata.name!=a") == ["b"]


def test_delete_cascades_to_owned_objects_and_namespace_contents(store: Store) -> None:
    ds = store.create(store.registry.by_key("apps/daemonsets"), {"metadata": {"name": "kg"}}, "demo")
    ref = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kg", "uid": ds["metadata"]["uid"]}
    pods = store.registry.by_key("/pods")
    store.create(pods, {"metadata": {"name": "kg-1", "ownerReferences": [ref]}}, "demo")
    store.create(pods, pod("loner"), "demo")
    store.delete(store.registry.by_key("apps/daemonsets"), "demo", "kg")
    assert [p["metadata"]["name"] for p in store.list(pods)[0]] == ["loner"]
    marked = store.delete(store.registry.by_key("/namespaces"), None, "demo")
    # The namespace's "kubernetes" finalizer holds it until the namespace controller has emptied it.
    assert marked["status"]["phase"] == "Terminating" and marked["metadata"]["deletionTimestamp"]
    assert [p["metadata"]["name"] for p in store.list(pods)[0]] == ["loner"]
    assert NamespaceTerminator(store, 0).run("demo")
    assert store.list(pods)[0] == []
    assert store.try_get(store.registry.by_key("/namespaces"), None, "demo") is None


def test_watch_resumes_from_a_resource_version_without_losing_events(store: Store) -> None:
    pods = store.registry.by_key("/pods")
    start = store.resource_version
    store.create(pods, pod("a"), "demo")
    store.delete(pods, "demo", "a")
    seen: list[Event] = []
    done = threading.Event()

    def consume() -> None:
        for event in store.watch(pods, "demo", since=start, timeout=5.0, stop=done):
            seen.append(event)
            if len(seen) == 3:
                done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    store.create(pods, pod("b"), "demo")
    thread.join(10)
    assert [(e.type, e.object["metadata"]["name"]) for e in seen] == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")]
    assert [e.rv for e in seen] == sorted(e.rv for e in seen)


def test_noop_update_keeps_the_resource_version(store: Store) -> None:
    cms = store.registry.by_key("/configmaps")
    made = store.create(cms, {"metadata": {"name": "c"}, "data": {"k": "v"}}, "demo")
    again = store.update(cms, made, "demo")
    assert again["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
