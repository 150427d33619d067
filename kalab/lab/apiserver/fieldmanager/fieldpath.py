"""Field paths and sets, as structured-merge-diff's `fieldpath` package has them.

A field set is a set of paths; a path is a tuple of elements written as in FieldsV1: `f:<field>`, `k:<json of the
key fields>` for an item of an associative list, `v:<json>` for an item of a set list, `i:<index>`. FieldsV1 (the
tree managedFields hold) is read and written here, and a path printed as a conflict names it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

Path = tuple[str, ...]
FieldSet = set[Path]

# Key fields the schema defaults, so an item that leaves them out still has its full key.
_KEY_DEFAULTS: Final[dict[str, Any]] = {"protocol": "TCP"}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def key_element(item: Any, keys: tuple[str, ...]) -> str | None:
    """The `k:` element of an associative list's item, from its key fields; None when it has none."""
    if not isinstance(item, dict):
        return None
    found = {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in keys}
    found = {k: v for k, v in found.items() if v is not None}
    if not found:
        return None
    return "k:" + _dumps(found)


def value_element(item: Any) -> str:
    """The `v:` element of a set list's item."""
    return "v:" + _dumps(item)


def _element_text(element: str) -> str:
    """One path element as structured-merge-diff prints it in conflicts: `.spec`, `[name="x"]`, `[="v"]`."""
    kind, _, rest = element.partition(":")
    if kind == "f":
        return "." + rest
    if kind == "k":
        fields = json.loads(rest)
        return "[" + ",".join(f"{k}={_dumps(v)}" for k, v in fields.items()) + "]"
    if kind == "v":
        return f"[={rest}]"
    return f"[{rest}]"


def path_text(path: Path) -> str:
    return "".join(_element_text(e) for e in path)


def field_names(path: Path) -> tuple[str, ...]:
    """The field names along a path, list items left out: what the merge schema is asked about."""
    return tuple(e[2:] for e in path if e.startswith("f:"))


def to_fields_v1(fields: Iterable[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    members = set(fields)
    for path in sorted(members):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    for path in members:
        node = tree
        for element in path:
            node = node[element]
        if node and "." not in node:
            node["."] = {}
    return _sorted_tree(tree)


def _sorted_tree(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted_tree(tree[k]) for k in sorted(tree, key=lambda k: (k != ".", k))}


def from_fields_v1(tree: Mapping[str, Any], prefix: Path = ()) -> FieldSet:
    out: FieldSet = set()
    if prefix and (not tree or "." in tree):
        out.add(prefix)
    for key, child in tree.items():
        if key != "." and isinstance(child, Mapping):
            out |= from_fields_v1(child, (*prefix, key))
    return out
