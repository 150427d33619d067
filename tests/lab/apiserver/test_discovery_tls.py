from __future__ import annotations

import base64
import ipaddress
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from kalab.lab.apiserver import discovery
from kalab.lab.apiserver.crds import resource_types, validate
from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.kubeconfig import write_kubeconfig
from kalab.lab.apiserver.resources import Registry
from kalab.lab.apiserver.tls import make_tls, new_token


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tls_material_is_private_and_names_loopback(tmp_path: Path) -> None:
    material = make_tls(tmp_path / "pki")
    assert mode(tmp_path / "pki") == 0o700
    for name in ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key"):
        assert mode(tmp_path / "pki" / name) == 0o600, name
    cert = x509.load_pem_x509_certificate(material.cert_file.read_bytes())
    ca = x509.load_pem_x509_certificate(material.ca_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_tokens_are_random_and_long() -> None:
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20
    assert all(len(t) >= 40 for t in tokens)


def test_kubeconfig_is_0600_with_inline_ca(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("old")
    path.chmod(0o644)
    write_kubeconfig(path, "https://127.0.0.1:6443", "secret-token", b"-----BEGIN CERTIFICATE-----\n")
    assert mode(path) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "kalab"
    assert doc["clusters"][0]["name"] == "kalab"
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"-----BEGIN CERTIFICATE-----\n"
    assert doc["users"] == [{"name": "kalab-admin", "user": {"token": "secret-token"}}]
    assert (
        doc["contexts"][0]["context"]["cluster"] == "kalab" and doc["contexts"][0]["context"]["user"] == "kalab-admin"
    )


def test_version_priority_orders_like_kubernetes() -> None:
    versions = ["v1alpha1", "v1", "v2beta1", "v1beta2", "foo", "v2", "v1beta1", "v11alpha2"]
    assert sorted(versions, key=discovery.version_priority) == [
        "v2",
        "v1",
        "v2beta1",
        "v1beta2",
        "v1beta1",
        "v11alpha2",
        "v1alpha1",
        "foo",
    ]


def test_group_list_prefers_the_highest_version() -> None:
    groups = {g["name"]: g for g in discovery.api_group_list(Registry())["groups"]}
    assert "" not in groups
    olm = groups["operators.coreos.com"]
    assert [v["version"] for v in olm["versions"]] == ["v1", "v1alpha1"]
    assert olm["preferredVersion"] == {"groupVersion": "operators.coreos.com/v1", "version": "v1"}


def test_resource_lists_carry_names_verbs_and_subresources() -> None:
    registry = Registry()
    core = discovery.resource_list(registry, "", "v1")
    assert core is not None and core["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["services"]["shortNames"] == ["svc"] and by_name["services"]["categories"] == ["all"]
    assert by_name["pods"]["singularName"] == "pod" and by_name["pods"]["namespaced"]
    assert "watch" in by_name["pods"]["verbs"]
    assert by_name["pods/log"]["verbs"] == ["get"]
    assert by_name["pods/exec"]["kind"] == "PodExecOptions"
    assert by_name["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert not by_name["nodes"]["namespaced"]
    apps = discovery.resource_list(registry, "apps", "v1")
    assert apps is not None
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert discovery.resource_list(registry, "apps", "v9") is None
    assert discovery.api_group(registry, "nothere.example.com") is None


def crd(scope: str = "Namespaced", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "keepalivedgroups.redhatcop.redhat.io"},
        "spec": {
            "group": "redhatcop.redhat.io",
            "scope": scope,
            "names": {
                "kind": "KeepalivedGroup",
                "plural": "keepalivedgroups",
                "singular": "keepalivedgroup",
                "shortNames": ["kg"],
                "categories": ["all"],
            },
            "versions": [
                {"name": "v1alpha1", "served": True, "storage": False},
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Interface", "type": "string", "jsonPath": ".spec.interface"},
                        {"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1},
                    ],
                },
                {"name": "v0", "served": False, "storage": False},
            ],
            **spec,
        },
    }


def test_crd_becomes_one_resource_type_per_served_version() -> None:
    types = resource_types(crd())
    assert [t.version for t in types] == ["v1", "v1alpha1"]  # storage version first
    v1, v1alpha1 = types
    assert (v1.group, v1.kind, v1.plural, v1.singular_name) == (
        "redhatcop.redhat.io",
        "KeepalivedGroup",
        "keepalivedgroups",
        "keepalivedgroup",
    )
    assert v1.namespaced and v1.short_names == ("kg",) and v1.categories == ("all",)
    assert v1.subresources == frozenset({"status"}) and v1alpha1.subresources == frozenset()
    assert [(c.name, c.json_path, c.priority) for c in v1.columns] == [
        ("Interface", ".spec.interface", 0),
        ("Image", ".spec.image", 1),
    ]
    assert [c.name for c in v1alpha1.columns] == ["Age"]  # the default printer column
    assert not resource_types(crd("Cluster"))[0].namespaced


def test_crd_validation() -> None:
    validate(crd())
    bad_name = crd()
    bad_name["metadata"]["name"] = "wrong"
    with pytest.raises(ApiError) as err:
        validate(bad_name)
    assert err.value.code == 422 and "metadata.name" in err.value.message
    no_storage = crd()
    for version in no_storage["spec"]["versions"]:
        version["storage"] = False
    with pytest.raises(ApiError):
        validate(no_storage)
    with pytest.raises(ApiError):
        validate(crd(scope="Galaxy"))
