"""Structural-schema defaulting and pruning of custom objects, as kube-apiserver does for every CRD.

Defaulting fills each absent field (and each null one that is not nullable) whose schema has a `default`, at every
level whose parent object exists. Pruning drops every field the schema does not specify, except under
`x-kubernetes-preserve-unknown-fields`, and every null of a field that is not `nullable`; apiVersion, kind and
metadata at the root (and in embedded resources) stay.
Both walk the same schema shapes: properties, additionalProperties and items.
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]
_OBJECT_ROOT = ("apiVersion", "kind", "metadata")


def apply_defaults(value: Any, schema: Schema) -> None:
    """Fill defaults into `value` in place."""
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties") or {}
        for name, prop in properties.items():
            if "default" not in prop:
                continue
            if name not in value or (value[name] is None and not prop.get("nullable")):
                value[name] = copy.deepcopy(prop["default"])
        for name, item in value.items():
            if name in properties:
                apply_defaults(item, properties[name])
            elif isinstance(schema.get("additionalProperties"), dict):
                apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


def prune(value: Any, schema: Schema, root: bool = True) -> None:
    """Drop, in place, the fields of `value` that `schema` does not specify."""
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True or additional is True
        kept_as_is = _OBJECT_ROOT if root or schema.get("x-kubernetes-embedded-resource") else ()
        for name in list(value):
            if name in kept_as_is and name not in properties:
                continue
            if name in properties:
                if value[name] is None and not properties[name].get("nullable"):
                    # As apiextensions does before defaulting: a null where null is not allowed is no value.
                    del value[name]
                elif not (root and name == "metadata"):
                    prune(value[name], properties[name], root=False)
            elif isinstance(additional, dict):
                prune(value[name], additional, root=False)
            elif not keep_unknown:
                del value[name]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            prune(item, schema["items"], root=False)


def unknown_fields(value: Any, schema: Schema, path: str = "", root: bool = True) -> list[str]:
    """The dotted paths of fields `prune` would drop: what strict field validation reports."""
    found: list[str] = []
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True or additional is True
        kept_as_is = _OBJECT_ROOT if root or schema.get("x-kubernetes-embedded-resource") else ()
        for name, item in value.items():
            here = f"{path}.{name}" if path else name
            if name in kept_as_is and name not in properties:
                continue
            if name in properties:
                if not (root and name == "metadata"):
                    found += unknown_fields(item, properties[name], here, root=False)
            elif isinstance(additional, dict):
                found += unknown_fields(item, additional, here, root=False)
            elif not keep_unknown:
                found.append(here)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{index}]", root=False)
    return found
