"""CRD validation ratcheting, on by default since Kubernetes 1.30: an update is not refused for a value it left
as it was, so an object stored before its CRD grew stricter can still have its status (or other fields) written,
while whatever the update changes is judged by the schema of now."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kalab.lab.apiserver.schema_validation import errors_of
from kalab.lab.apiserver.server import RunningServer
from tests.lab.apiserver.api_kit import raw_request, running_server, seeded_store, wait_for

GADGETS = "/apis/kalab-test.example/v1/namespaces/demo/gadgets"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
JSON = {"Content-Type": "application/json"}
MERGE = {"Content-Type": "application/merge-patch+json"}


def schema(most: int, longest: int) -> dict[str, Any]:
    """A gadget's schema: `most` bounds sizes and ports, `longest` the tags' length."""
    port = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "port": {"type": "integer", "maximum": most}},
    }
    return {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "size": {"type": "integer", "maximum": most},
            "colour": {"type": "string"},
            "ports": {"type": "array", "items": port,
                      "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": longest}},
        }},
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    }}  # fmt: skip


def crd(most: int, longest: int) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.kalab-test.example"},
        "spec": {
            "group": "kalab-test.example",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema(most, longest)},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def gadget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kalab-test.example/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec}


OLD = {"spec": {"size": 8, "ports": [{"name": "a", "port": 90}], "tags": ["abc"]}}


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        (lambda o: o["spec"].update(colour="red"), []),  # the too-big size and port are left as they were
        (lambda o: o.update(status={"phase": "Ready"}), []),
        (lambda o: o["spec"].update(size=9), ["spec.size"]),
        (lambda o: o["spec"]["ports"].append({"name": "b", "port": 3}), []),  # item a correlates by its key
        (lambda o: o["spec"]["ports"].append({"name": "b", "port": 99}), ["spec.ports[1].port"]),
        (lambda o: o["spec"]["ports"].insert(0, {"name": "b", "port": 1}), []),  # by key, not by index
        (lambda o: o["spec"]["ports"][0].update(port=91), ["spec.ports[0].port"]),
        (lambda o: o["spec"]["tags"].append("d"), ["spec.tags[0]"]),  # an atomic list is judged whole once changed
        (lambda o: o["spec"].pop("size"), []),
    ],
    ids=["other-field", "status", "changed-value", "map-list-item-added", "bad-item-added", "map-list-reordered",
         "map-list-item-changed", "atomic-list-changed", "field-removed"],
)  # fmt: skip
def test_an_update_is_judged_only_on_what_it_changes(change: Any, refused: list[str]) -> None:
    strict = schema(5, 2)
    old = copy.deepcopy(OLD)
    new = copy.deepcopy(OLD)
    change(new)
    assert [e.field for e in errors_of(new, strict, old)] == refused
    # Without an old object (a create) the same body is judged whole: the kept 3-letter tag is refused too.
    assert "spec.tags[0]" in [e.field for e in errors_of(new, strict)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(seeded_store(), tmp_path_factory.mktemp("ratcheting") / "state") as running:
        created = raw_request(running, "POST", CRDS, JSON, json.dumps(crd(10, 5)).encode())
        assert created.status == 201, created.body
        wait_for(lambda: raw_request(running, "GET", GADGETS).status == 200, what="gadgets served")
        yield running


def test_a_status_write_passes_after_the_crd_grew_stricter(server: RunningServer) -> None:
    body = gadget("old", size=8, tags=["abc"])
    assert raw_request(server, "POST", GADGETS, JSON, json.dumps(body).encode()).status == 201
    stored = raw_request(server, "GET", f"{CRDS}/gadgets.kalab-test.example").json()
    stricter = crd(5, 2) | {"metadata": stored["metadata"]}
    assert (
        raw_request(server, "PUT", f"{CRDS}/gadgets.kalab-test.example", JSON, json.dumps(stricter).encode()).status
        == 200
    )

    def refused_now() -> bool:
        answer = raw_request(server, "POST", GADGETS, JSON, json.dumps(gadget("new", size=8)).encode())
        return answer.status == 422

    wait_for(refused_now, what="the stricter schema served")

    status = raw_request(server, "PATCH", f"{GADGETS}/old/status", MERGE, b'{"status": {"phase": "Ready"}}')
    assert status.status == 200, status.body
    assert status.json()["status"] == {"phase": "Ready"}
    other = raw_request(server, "PATCH", f"{GADGETS}/old", MERGE, b'{"spec": {"colour": "red"}}')
    assert other.status == 200, other.body

    grown = raw_request(server, "PATCH", f"{GADGETS}/old", MERGE, b'{"spec": {"size": 9}}')
    assert grown.status == 422
    assert [c["field"] for c in grown.json()["details"]["causes"]] == ["spec.size"]
    kept = raw_request(server, "GET", f"{GADGETS}/old").json()
    assert kept["spec"] == {"size": 8, "tags": ["abc"], "colour": "red"} and kept["status"] == {"phase": "Ready"}
