"""The types of the fields kalab reads from input files, checked before anything uses them.

The KeepalivedGroup is checked against the CRD's own openAPIV3Schema; Services and Pods against the few fields
kalab reads, typed as in Kubernetes' API. Only types and ranges are checked here: what is required is for the
renderers to say, since they know which alternatives (e.g. interface or interfaceFromIP) are acceptable.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from kalab.model.errors import KalabError
from kalab.model.operator_manifests import keepalivedgroup_crd
from kalab.model.wording import shorten

if TYPE_CHECKING:
    import jsonschema

_STRING = {"type": "string"}
_INT = {"type": "integer"}
_STRINGS = {"type": "object", "additionalProperties": _STRING}
_METADATA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": _STRING, "namespace": _STRING, "labels": _STRINGS, "annotations": _STRINGS},
}
_SERVICE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "type": _STRING,
                "clusterIP": _STRING,
                "loadBalancerIP": _STRING,
                "externalIPs": {"type": "array", "items": _STRING},
                "externalTrafficPolicy": _STRING,
                "healthCheckNodePort": _INT,
                "selector": _STRINGS,
                "ports": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": _STRING,
                            "protocol": _STRING,
                            "port": _INT,
                            "nodePort": _INT,
                            "targetPort": {"type": ["integer", "string"]},
                        },
                    },
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "loadBalancer": {
                    "type": "object",
                    "properties": {
                        "ingress": {
                            "type": "array",
                            "items": {"type": "object", "properties": {"ip": _STRING, "hostname": _STRING}},
                        }
                    },
                }
            },
        },
    },
}
_POD: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {"nodeName": _STRING}},
        "status": {
            "type": "object",
            "properties": {
                "podIP": _STRING,
                "hostIP": _STRING,
                "podIPs": {"type": "array", "items": {"type": "object", "properties": {"ip": _STRING}}},
            },
        },
    },
}
_TYPE_WORDS = {
    "object": "a map",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
    "number": "a number",
}


def check_shape(obj: dict[str, Any], source: str) -> None:
    """Raise a one-sentence KalabError naming the first field of `obj` (read from `source`) of the wrong type."""
    kind = obj.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise KalabError(f"{source} holds an object whose kind is not a string; write e.g. kind: Service.")
    import jsonschema  # here, not at the top: importing it costs over a second, and most commands never need it

    error = jsonschema.exceptions.best_match(_validator(kind if isinstance(kind, str) else "").iter_errors(obj))
    if error is None:
        return
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    what = f"{kind or 'object'} {_name(obj)}".rstrip()
    if error.validator == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        must = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in expected)
        got = shorten(json.dumps(error.instance, default=str), 40)
        raise KalabError(f"{source}: {what} has {field or 'itself'} = {got}, but it must be {must}; fix the file.")
    raise KalabError(f"{source}: {what} has an invalid {field} ({shorten(error.message)}); fix the file.")


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return ""
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if isinstance(namespace, str) and namespace else str(meta["name"])


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    schema: dict[str, Any] = {"type": "object", "properties": {"apiVersion": _STRING, "kind": _STRING}}
    if kind == "KeepalivedGroup":
        crd = keepalivedgroup_crd()
        schema = _types_only(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    elif kind == "Service":
        schema = {**_SERVICE, "properties": {**schema["properties"], **_SERVICE["properties"]}}
    elif kind == "Pod":
        schema = {**_POD, "properties": {**schema["properties"], **_POD["properties"]}}
    schema["properties"] = {**schema["properties"], "metadata": _METADATA}
    import jsonschema

    validator: jsonschema.protocols.Validator = jsonschema.Draft7Validator(schema)
    return validator


def _types_only(schema: Any) -> Any:
    """The schema without `required`: which fields must be set is the renderer's to say, with its alternatives."""
    if isinstance(schema, dict):
        return {k: _types_only(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [_types_only(v) for v in schema]
    return schema
