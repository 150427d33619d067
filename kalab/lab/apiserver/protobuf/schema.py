"""Kubernetes' protobuf schema: message classes by apiVersion and kind, built from the descriptors kubectl ships.

descriptors.py holds the real generated.proto files of k8s.io/api and k8s.io/apimachinery in compiled form
(FileDescriptorProtos); the `protobuf` library turns them into message classes at import, so nothing is
generated ahead of time.
"""

from __future__ import annotations

import base64
import functools
import gzip
from typing import cast

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, unknown_fields
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from kalab.lab.apiserver.protobuf import descriptors

META = "k8s.io.apimachinery.pkg.apis.meta.v1"
RUNTIME = "k8s.io.apimachinery.pkg.runtime"
_GOGO_NULLABLE = 65001  # (gogoproto.nullable): false on every field that is not a Go pointer
# API groups whose Go package is not named after the group's first label.
_PACKAGE_OF_GROUP = {"": "core", "internal.apiserver.k8s.io": "apiserverinternal"}
# Go structs embedded with `json:",inline"`: their fields sit in the parent's JSON object. The descriptors cannot
# tell these from a field named like its type (RoleBinding.roleRef), so they are listed, as Kubernetes' stable
# groups have them; tests/lab/apiserver/test_protobuf.py checks every field against the official client's names.
_INLINE = frozenset(
    {
        "k8s.io.api.core.v1.Volume.volumeSource",
        "k8s.io.api.core.v1.PersistentVolumeSpec.persistentVolumeSource",
        "k8s.io.api.core.v1.Probe.handler",
        "k8s.io.api.core.v1.EphemeralContainer.ephemeralContainerCommon",
        *(
            f"k8s.io.api.core.v1.{kind}.localObjectReference"
            for kind in (
                "ConfigMapEnvSource",
                "ConfigMapKeySelector",
                "ConfigMapProjection",
                "ConfigMapVolumeSource",
                "SecretEnvSource",
                "SecretKeySelector",
                "SecretProjection",
            )
        ),
        "k8s.io.api.networking.v1.IngressRule.ingressRuleValue",
        "k8s.io.api.admissionregistration.v1.NamedRuleWithOperations.ruleWithOperations",
        "k8s.io.api.admissionregistration.v1.RuleWithOperations.rule",
    }
)
# Protobuf names that are not the JSON name (DaemonEndpoint's `Port` is `Port` in JSON too).
_ADMISSION = "k8s.io.api.admissionregistration.v1"
_JSON_NAMES = {
    "k8s.io.api.authentication.v1.BoundObjectReference.uID": "uid",
    "k8s.io.api.networking.v1.IngressClassParametersReference.aPIGroup": "apiGroup",
    f"{_ADMISSION}.MutatingWebhookConfiguration.Webhooks": "webhooks",
    f"{_ADMISSION}.ValidatingWebhookConfiguration.Webhooks": "webhooks",
    f"{_ADMISSION}.Validation.Expression": "expression",
    f"{_ADMISSION}.Variable.Name": "name",
    f"{_ADMISSION}.Variable.Expression": "expression",
}


@functools.cache
def pool() -> descriptor_pool.DescriptorPool:
    files = descriptor_pb2.FileDescriptorSet.FromString(
        gzip.decompress(base64.b64decode("".join(descriptors.FILE_DESCRIPTOR_SET)))
    )
    found = descriptor_pool.DescriptorPool()
    for file in files.file:  # written in dependency order
        found.Add(file)
    return found


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def _package(group: str, version: str) -> str:
    if group == "meta.k8s.io":
        return META
    return f"k8s.io.api.{_PACKAGE_OF_GROUP.get(group, group.split('.')[0])}.{version}"


@functools.cache
def descriptor_for(api_version: str, kind: str) -> Descriptor | None:
    """The message of `kind` in `api_version`, or None when Kubernetes has no protobuf form of it (CRDs, OpenShift)."""
    group, _, version = api_version.rpartition("/")
    # Kinds every group shares (Status, DeleteOptions, APIResourceList, …) live in meta/v1, as in the Go scheme.
    for package in (_package(group, version), META):
        try:
            return pool().FindMessageTypeByName(f"{package}.{kind}")
        except KeyError:
            continue
    return None


def fields(descriptor: Descriptor) -> list[FieldDescriptor]:
    return cast(list[FieldDescriptor], list(descriptor.fields))


@functools.cache
def json_fields(descriptor: Descriptor) -> dict[str, tuple[FieldDescriptor, ...]]:
    """Each JSON key of the message's object, with the path of fields to it (longer than one through an inline)."""
    found: dict[str, tuple[FieldDescriptor, ...]] = {}
    for field in fields(descriptor):
        if is_inline(field):
            found.update({key: (field, *path) for key, path in json_fields(field.message_type).items()})
        else:
            found[json_name(field)] = (field,)
    return found


def is_inline(field: FieldDescriptor) -> bool:
    return field.full_name in _INLINE


def json_name(field: FieldDescriptor) -> str:
    return _JSON_NAMES.get(field.full_name, field.name)


@functools.cache
def is_pointer(field: FieldDescriptor) -> bool:
    """Whether the Go field behind `field` is a pointer, so that a zero value it carries is a value, not absence."""
    options = unknown_fields.UnknownFieldSet(field.GetOptions())
    return not any(options[i].field_number == _GOGO_NULLABLE and options[i].data == 0 for i in range(len(options)))
