"""Kubernetes' protobuf wire format: the magic `k8s\\0`, then a runtime.Unknown naming the kind and holding it."""

from __future__ import annotations

from typing import Any

from kalab.lab.apiserver.protobuf import convert
from kalab.lab.apiserver.protobuf.schema import RUNTIME, descriptor_for, message_class, pool

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


class NotDecodable(ValueError):
    """A body that is not Kubernetes protobuf, or holds a kind the lab has no schema for."""


def _unknown() -> Any:
    return message_class(pool().FindMessageTypeByName(f"{RUNTIME}.Unknown"))()


def decode(data: bytes, api_version: str = "", kind: str = "") -> dict[str, Any]:
    """The JSON object a protobuf body holds; `api_version`/`kind` stand in when the envelope names none."""
    if not data.startswith(MAGIC):
        raise NotDecodable("it does not start with Kubernetes' protobuf prefix")
    envelope = _unknown()
    try:
        envelope.ParseFromString(data[len(MAGIC) :])
    except Exception as err:  # the library's DecodeError, or upb's own for malformed input
        raise NotDecodable(f"its envelope does not parse: {err}") from err
    if envelope.contentEncoding:
        raise NotDecodable(f"its content encoding {envelope.contentEncoding!r} is not supported")
    api_version = envelope.typeMeta.apiVersion or api_version
    kind = envelope.typeMeta.kind or kind
    descriptor = descriptor_for(api_version, kind)
    if descriptor is None:
        raise NotDecodable(f"{api_version} {kind} has no protobuf form the lab knows")
    message = message_class(descriptor)()
    try:
        message.ParseFromString(envelope.raw)
    except Exception as err:
        raise NotDecodable(f"its {kind} does not parse: {err}") from err
    obj = convert.to_json(message)
    return {"apiVersion": api_version, "kind": kind, **obj}


def encode(doc: Any) -> bytes | None:
    """`doc` (a JSON object naming its apiVersion and kind) in protobuf, or None when it has no protobuf form."""
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        return None
    api_version, kind = str(doc.get("apiVersion") or ""), doc["kind"]
    descriptor = descriptor_for(api_version, kind)
    if descriptor is None:
        return None
    envelope = _unknown()
    envelope.typeMeta.apiVersion, envelope.typeMeta.kind = api_version, kind
    envelope.raw = convert.from_json(descriptor, doc).SerializeToString()
    serialized: bytes = envelope.SerializeToString()
    return MAGIC + serialized
