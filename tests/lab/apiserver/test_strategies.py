"""Per-kind write rules (strategies) and request routing, without HTTP: what the verb handlers rely on."""

from __future__ import annotations

import pytest

from kalab.lab.apiserver import routing, strategies, validation
from kalab.lab.apiserver.errors import ApiError
from tests.lab.apiserver.api_kit import seeded_store


def test_names_follow_their_kinds_rule_and_must_be_addressable() -> None:
    registry = seeded_store().registry
    assert validation.name_rule(registry.by_key("/configmaps"))("web.config-1") == []
    assert validation.name_rule(registry.by_key("/configmaps"))("Web_Config") != []
    assert validation.name_rule(registry.by_key("/services"))("web.config-1")[0].startswith("a DNS-1035 label")
    assert validation.name_rule(registry.by_key("/namespaces"))("web.config-1") == ["must not contain dots"]
    assert validation.name_rule(registry.by_key("rbac.authorization.k8s.io/clusterroles"))("system:controller:x") == []
    strategies.check_addressable("system:controller:x")
    with pytest.raises(ApiError) as raised:
        strategies.check_addressable("a/b")
    assert raised.value.code == 400


def test_a_create_drops_server_set_fields_and_starts_with_the_kinds_status() -> None:
    registry = seeded_store().registry
    service = {
        "metadata": {"name": "web", "uid": "forged", "resourceVersion": "7", "creationTimestamp": "then"},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    }
    strategies.prepare_for_create(registry.by_key("/services"), service)
    strategies.set_initial_status(registry.by_key("/services"), service)
    assert service == {"metadata": {"name": "web"}, "status": {"loadBalancer": {}}}
    with pytest.raises(ApiError):
        strategies.prepare_for_create(registry.by_key("/services"), {"metadata": {"name": "not/valid"}})


def test_an_update_is_of_the_object_the_url_names() -> None:
    obj: dict[str, object] = {"metadata": {}}
    strategies.prepare_for_update(obj, "web")
    assert obj == {"metadata": {"name": "web"}}
    with pytest.raises(ApiError) as raised:
        strategies.prepare_for_update({"metadata": {"name": "other"}}, "web")
    assert raised.value.code == 400


def test_nothing_new_in_a_terminating_namespace() -> None:
    store = seeded_store()
    namespaces = store.registry.by_key("/namespaces")
    current = store.get(namespaces, None, "demo")
    store.update(namespaces, {**current, "status": {"phase": "Terminating"}}, None, subresource="status")
    configmaps = store.registry.by_key("/configmaps")
    with pytest.raises(ApiError) as raised:
        strategies.check_not_terminating(store, configmaps, "demo", "new")
    assert raised.value.code == 403
    assert raised.value.details["causes"][0]["reason"] == "NamespaceTerminating"
    strategies.check_not_terminating(store, configmaps, "default", "new")  # another namespace is fine


def test_routing_finds_namespace_watch_and_subresource() -> None:
    registry = seeded_store().registry
    req = routing.parse(registry, "GET", "/api/v1/watch/namespaces/demo/pods/web", "", b"", "application/json")
    assert (req.rt.key, req.namespace, req.name, req.sub, req.watch) == ("/pods", "demo", "web", None, True)
    req = routing.parse(registry, "PUT", "/apis/apps/v1/namespaces/demo/deployments/web/scale", "", b"", "")
    assert (req.rt.key, req.sub) == ("apps/deployments", "scale")
    for path in ("/api/v1/namespaces/demo/nothings", "/apis/apps/v1/namespaces/demo/deployments/web/log"):
        with pytest.raises(ApiError) as raised:
            routing.parse(registry, "GET", path, "", b"", "")
        assert raised.value.code == 404
