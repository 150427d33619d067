"""Decoding a request body into a built-in kind's types, as kube-apiserver's JSON decoder does before anything else.

kube-apiserver decodes a body into Go structs, so a value of the wrong JSON type (`labels: "notamap"`, a port given
as "80a" or 80.5, a list where an object goes) never reaches storage: a create or update answers 400 (`Node in
version "v1" cannot be handled as a Node: json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels
of type map[string]string`), a patch whose result does not decode answers 422 on the field `patch`. Here the same
check walks the body against the kind's OpenAPI definition (`builtin_schemas`, built from the official client's
models, so it names kube-apiserver's types): only the fields present are visited, null is always accepted (Go
leaves the field unset), and unknown fields are left to strict field validation. Custom objects are checked against
their schema instead (`schema_validation`); their metadata is checked here, as for every kind.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from typing import Any, Final

from kalab.lab.apiserver.builtin_schemas import INT_OR_STRING, META, PACKAGES, QUANTITY, TIME, builtin_definitions
from kalab.lab.apiserver.errors import ApiError, FieldError, bad_request, field_invalid
from kalab.lab.apiserver.resources import BUILTINS, ResourceType

Schema = dict[str, Any]
MAX_DEPTH: Final = 200  # nesting a body may have; real objects stay far below (a CRD's schema: about 30)
_OBJECT_META: Final = f"{META}.ObjectMeta"
_QUANTITY_RE: Final = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_QUANTITY_ERROR: Final = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_SPECIAL_TYPES: Final = {INT_OR_STRING: "intstr.IntOrString", QUANTITY: "resource.Quantity", TIME: "v1.Time"}


class DecodeError(Exception):
    """A body value the kind's Go types cannot hold; `str()` is the Go decoder's message."""


@functools.cache
def _definitions() -> tuple[dict[str, Schema], dict[tuple[str, str, str], str]]:
    # The same key the OpenAPI documents build theirs with, so both share one (cached) build.
    gvks = tuple(sorted((rt.group, rt.version, rt.kind) for rt in BUILTINS if rt.group in PACKAGES))
    return builtin_definitions(gvks)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return f"number {value!r}" if not value.is_integer() else f"number {value}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _ref_name(schema: Schema) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _go_type(schema: Schema) -> str:
    """The Go type a schema stands for, as the decoder names it (`map[string]string`, `[]v1.ServicePort`)."""
    name = _ref_name(schema)
    if name is not None:
        return _SPECIAL_TYPES.get(name) or f"v1.{name.rsplit('.', 1)[-1]}"
    kind = schema.get("type")
    if kind == "array":
        return "[]" + _go_type(schema.get("items") or {})
    if kind == "object":
        additional = schema.get("additionalProperties")
        return "map[string]" + (_go_type(additional) if isinstance(additional, dict) else "interface {}")
    if kind == "integer":
        return str(schema.get("format") or "int64")
    if kind == "number":
        return "float64"
    if kind == "boolean":
        return "bool"
    if kind == "string":
        return "[]uint8" if schema.get("format") == "byte" else "string"
    return "interface {}"


class _Walk:
    def __init__(self, definitions: dict[str, Schema]) -> None:
        self.definitions = definitions

    def fail(self, value: Any, struct: str, path: str, schema: Schema) -> DecodeError:
        return DecodeError(
            f"json: cannot unmarshal {_json_kind(value)} into Go struct field {struct}.{path} of type "
            f"{_go_type(schema)}"
        )

    def check(self, value: Any, schema: Schema, struct: str, path: str) -> None:
        """Raise DecodeError where `value` (at Go field `struct`.`path`) cannot decode into `schema`'s type."""
        if value is None:
            return
        name = _ref_name(schema)
        if name is not None:
            self.check_named(value, name, struct, path, schema)
            return
        kind = schema.get("type")
        if kind == "string":
            if not isinstance(value, str):
                raise self.fail(value, struct, path, schema)
            if schema.get("format") == "byte":
                try:
                    base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise DecodeError(f"illegal base64 data at input byte {_bad_byte(value)}") from None
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(value, struct, path, schema)
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(value, struct, path, schema)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise self.fail(value, struct, path, schema)
        elif kind == "array":
            if not isinstance(value, list):
                raise self.fail(value, struct, path, schema)
            items = schema.get("items")
            if isinstance(items, dict):
                for item in value:
                    self.check(item, items, struct, path)
        elif kind == "object":
            if not isinstance(value, dict):
                raise self.fail(value, struct, path, schema)
            properties = schema.get("properties")
            if properties:
                self.check_struct(value, schema, struct, path)
            additional = schema.get("additionalProperties")
            if isinstance(additional, dict):
                for item in value.values():
                    self.check(item, additional, struct, path)

    def check_named(self, value: Any, name: str, struct: str, path: str, schema: Schema) -> None:
        if name == INT_OR_STRING:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise self.fail(value, struct, path, schema)
        elif name == QUANTITY:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise self.fail(value, struct, path, schema)
            if isinstance(value, str) and not _QUANTITY_RE.match(value.strip()):
                raise DecodeError(_QUANTITY_ERROR)
        elif name in _SPECIAL_TYPES:
            if not isinstance(value, str):
                raise self.fail(value, struct, path, schema)
        else:
            definition = self.definitions.get(name, {})
            if not isinstance(value, dict) and definition.get("type") == "object":
                raise self.fail(value, struct, path, schema)
            if isinstance(value, dict):
                self.check_struct(value, definition, name.rsplit(".", 1)[-1], path)

    def check_struct(self, value: dict[str, Any], schema: Schema, struct: str, path: str) -> None:
        properties: dict[str, Schema] = schema.get("properties") or {}
        for key, item in value.items():
            prop = properties.get(key)
            if prop is not None:
                self.check(item, prop, struct, f"{path}.{key}" if path else key)


def _bad_byte(text: str) -> int:
    allowed = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    return next((i for i, b in enumerate(text.encode()) if b not in allowed), len(text))


def depth_error(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """Why a decoded body nests too deep to be an object, or None; iterative, so no depth can overflow it."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return f"the object nests deeper than {limit} levels"
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, dict | list))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return None


def decode_error(rt: ResourceType, obj: dict[str, Any]) -> str | None:
    """The Go decoder's complaint about `obj` as a `rt`, or None when every value fits its type."""
    definitions, by_gvk = _definitions()
    walk = _Walk(definitions)
    try:
        name = by_gvk.get((rt.group, rt.version, rt.kind)) if rt.group in PACKAGES else None
        if name is not None:
            walk.check_struct(obj, definitions[name], name.rsplit(".", 1)[-1], "")
        elif "metadata" in obj:  # custom objects: their metadata is an ObjectMeta all the same
            walk.check(obj["metadata"], {"$ref": f"#/definitions/{_OBJECT_META}"}, rt.kind, "metadata")
    except DecodeError as err:
        return str(err)
    return None


SCALE: Final = "io.k8s.api.autoscaling.v1.Scale"
DELETE_OPTIONS: Final = f"{META}.DeleteOptions"


def definition_error(name: str, value: dict[str, Any]) -> str | None:
    """The Go decoder's complaint about `value` as the type named `name` (SCALE, DELETE_OPTIONS), or None."""
    definitions, _ = _definitions()
    try:
        _Walk(definitions).check_struct(value, definitions.get(name, {}), name.rsplit(".", 1)[-1], "")
    except DecodeError as err:
        return str(err)
    return None


def check_body(rt: ResourceType, obj: dict[str, Any]) -> None:
    """400, as kube-apiserver answers a create or update whose body does not decode into the kind."""
    problem = decode_error(rt, obj)
    if problem is not None:
        raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {problem}')


def check_patched(rt: ResourceType, name: str, patched: dict[str, Any], patch: Any) -> None:
    """422 on the field `patch`, as kube-apiserver answers a patch whose result does not decode into the kind."""
    problem = decode_error(rt, patched)
    if problem is not None:
        raise patch_invalid(rt, name, patch, problem)


def patch_invalid(rt: ResourceType, name: str, patch: Any, problem: str) -> ApiError:
    return field_invalid(
        rt.kind, name, [FieldError("FieldValueInvalid", "patch", _patch_text(patch), problem)], rt.group
    )


def _patch_text(patch: Any) -> str:
    return json.dumps(patch, separators=(",", ":"), default=str)
