"""Validation of custom objects against their CRD version's openAPIV3Schema, as apiextensions-apiserver does it.

kube-apiserver validates a custom object after pruning and defaulting it, with kube-openapi's validator, and turns
each failure into a field error: a wrong type is `spec: Invalid value: "string": spec in body must be of type
object: "string"` (FieldValueTypeInvalid), a missing required field `spec.interface: Required value`, a value outside
an enum `Unsupported value: "x": supported values: "a", "b"`, and formats, patterns, lengths, bounds and item counts
`Invalid value` with kube-openapi's words. This walker follows those rules rather than JSON Schema's: `nullable`
(null is a type error unless the field says it may be null), `x-kubernetes-int-or-string`, integral numbers such
as 1.0 counting as integers, only the formats Kubernetes knows checked (others ignored), and the root's metadata
left to ObjectMeta validation (`validation`). On an update, errors are ratcheted as Kubernetes 1.30 does by
default (CRDValidationRatcheting): a value deep-equal to its correlated old value is not judged again, so an
object stored before its CRD grew stricter can still have its status written. Values correlate through object
properties and map keys, and list items only in `x-kubernetes-list-type: map` lists (by their keys); an atomic
list correlates only as a whole. A JSON Schema library would need every one of those rewritten into
the schema and its errors translated back, and its import costs over a second. Schemas need no compiling: the walk
visits only the values present; regular expressions are compiled once.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import uuid
from collections.abc import Callable
from typing import Any, Final

from kalab.lab.apiserver.errors import FieldError

Schema = dict[str, Any]
_MISSING: Final = object()  # no correlated old value: a create, a new field, or an item of an atomic list
_DATE_TIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?$")
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOSTNAME: Final = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,62})?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,62})?)*\.?$")


def _type_of(value: Any) -> str:
    """The JSON type kube-openapi names a value by."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits(value: Any, wanted: str) -> bool:
    actual = _type_of(value)
    return actual == wanted or (wanted == "number" and actual == "integer")


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


def _uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# The string formats apiextensions checks that the lab's schemas could use; others are accepted as any string.
_FORMATS: Final[dict[str, Callable[[str], bool]]] = {
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "cidr": _cidr,
    "date-time": lambda t: bool(_DATE_TIME.match(t)),
    "datetime": lambda t: bool(_DATE_TIME.match(t)),
    "date": lambda t: bool(_DATE.match(t)),
    "uuid": _uuid,
    "hostname": lambda t: len(t) <= 255 and bool(_HOSTNAME.match(t)),
}


@functools.lru_cache(maxsize=512)
def _pattern(text: str) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error:
        return None


def _enum_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class _Validator:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def invalid(self, path: str, value: Any, message: str) -> None:
        self.errors.append(FieldError("FieldValueInvalid", path, value, f"{path} in body {message}"))

    def walk(self, value: Any, schema: Schema, path: str, root: bool = False, old: Any = _MISSING) -> None:
        if old is not _MISSING and old == value:
            return  # ratcheted: an unchanged value keeps whatever the schema now says of it
        if value is None:
            if schema.get("nullable") is True or "type" not in schema:
                return
            self.errors.append(
                FieldError(
                    "FieldValueTypeInvalid", path, "null", f'{path} in body must be of type {schema["type"]}: "null"'
                )
            )
            return
        if schema.get("x-kubernetes-int-or-string") is True:
            if not _fits(value, "integer") and not isinstance(value, str):
                self.errors.append(
                    FieldError(
                        "FieldValueTypeInvalid",
                        path,
                        _type_of(value),
                        f'{path} in body must be of type integer,string: "{_type_of(value)}"',
                    )
                )
                return
        elif "type" in schema and not _fits(value, str(schema["type"])):
            actual = _type_of(value)
            self.errors.append(
                FieldError(
                    "FieldValueTypeInvalid",
                    path,
                    actual,
                    f'{path} in body must be of type {schema["type"]}: "{actual}"',
                )
            )
            return
        enum = schema.get("enum")
        if isinstance(enum, list) and value not in enum:
            listed = ", ".join(json.dumps(_enum_text(e)) for e in enum)
            self.errors.append(FieldError("FieldValueNotSupported", path, value, f"supported values: {listed}"))
        if isinstance(value, str):
            self.string(value, schema, path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self.number(value, schema, path)
        elif isinstance(value, list):
            self.array(value, schema, path, old)
        elif isinstance(value, dict):
            self.object(value, schema, path, root, old)

    def string(self, value: str, schema: Schema, path: str) -> None:
        max_length, min_length = schema.get("maxLength"), schema.get("minLength")
        if isinstance(max_length, int) and len(value) > max_length:
            self.errors.append(FieldError("FieldValueTooLong", path, detail=f"may not be more than {max_length} bytes"))
        if isinstance(min_length, int) and len(value) < min_length:
            self.invalid(path, value, f"should be at least {min_length} chars long")
        pattern = schema.get("pattern")
        compiled = _pattern(pattern) if isinstance(pattern, str) else None
        if compiled is not None and not compiled.search(value):
            self.invalid(path, value, f"should match '{pattern}'")
        check = _FORMATS.get(str(schema.get("format") or ""))
        if check is not None and not check(value):
            self.invalid(path, value, f"must be of type {schema['format']}: {json.dumps(value)}")

    def number(self, value: float, schema: Schema, path: str) -> None:
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(low, int | float):
            if schema.get("exclusiveMinimum") is True and value <= low:
                self.invalid(path, value, f"should be greater than {low}")
            elif value < low:
                self.invalid(path, value, f"should be greater than or equal to {low}")
        if isinstance(high, int | float):
            if schema.get("exclusiveMaximum") is True and value >= high:
                self.invalid(path, value, f"should be less than {high}")
            elif value > high:
                self.invalid(path, value, f"should be less than or equal to {high}")

    def array(self, value: list[Any], schema: Schema, path: str, old: Any) -> None:
        max_items, min_items = schema.get("maxItems"), schema.get("minItems")
        if isinstance(max_items, int) and len(value) > max_items:
            self.errors.append(
                FieldError("FieldValueTooMany", path, len(value), f"must have at most {max_items} items")
            )
        if isinstance(min_items, int) and len(value) < min_items:
            self.invalid(path, value, f"should have at least {min_items} items")
        items = schema.get("items")
        if isinstance(items, dict):
            olds = _old_items(value, old, schema)
            for index, item in enumerate(value):
                self.walk(item, items, f"{path}[{index}]", old=olds[index])

    def object(self, value: dict[str, Any], schema: Schema, path: str, root: bool, old: Any) -> None:
        properties: dict[str, Schema] = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value and not (root and name == "metadata"):
                self.errors.append(FieldError("FieldValueRequired", _join(path, name)))
        additional = schema.get("additionalProperties")
        olds: dict[str, Any] = old if isinstance(old, dict) else {}
        for name, item in value.items():
            if root and name == "metadata":
                continue  # ObjectMeta: checked as for every kind
            prop = properties.get(name)
            if prop is not None:
                self.walk(item, prop, _join(path, name), old=olds.get(name, _MISSING))
            elif isinstance(additional, dict):
                self.walk(item, additional, _join(path, name), old=olds.get(name, _MISSING))


def _old_items(value: list[Any], old: Any, schema: Schema) -> list[Any]:
    """Each item's correlated old item: by the map keys of a `list-type: map` list, else none (atomic lists)."""
    keys = schema.get("x-kubernetes-list-map-keys")
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(keys, list) or not isinstance(old, list):
        return [_MISSING] * len(value)

    def key(item: Any) -> tuple[str, ...] | None:
        return tuple(json.dumps(item.get(k), sort_keys=True) for k in keys) if isinstance(item, dict) else None

    by_key = {key(item): item for item in old if key(item) is not None}
    return [by_key.get(key(item), _MISSING) if key(item) is not None else _MISSING for item in value]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def errors_of(obj: dict[str, Any], schema: Schema, old: dict[str, Any] | None = None) -> list[FieldError]:
    """Every way `obj` (pruned and defaulted) breaks its openAPIV3Schema, in the order the walk meets them; on an
    update (`old` given), none in values left as they were (ratcheting)."""
    validator = _Validator()
    validator.walk(obj, schema, "", root=True, old=_MISSING if old is None else old)
    return validator.errors
