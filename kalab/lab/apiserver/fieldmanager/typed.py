"""Values walked with a merge schema, as structured-merge-diff's `typed` package walks them: the fields a value
sets (`to_set`, for an apply), what changed between two versions (`compare`, for an update), an applied
configuration merged into the live object (`merge`), and fields taken out of it (`remove`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kalab.lab.apiserver.fieldmanager.fieldpath import FieldSet, Path, field_names, key_element, value_element
from kalab.lab.apiserver.fieldmanager.schema import Schema

# -- the fields a value holds (apply) ----------------------------------------------------------------------------


def to_set(obj: Mapping[str, Any], schema: Schema) -> FieldSet:
    """The fields an applied configuration sets (structured-merge-diff's ToFieldSet)."""
    out: FieldSet = set()
    _collect(obj, (), schema, out)
    return out


def _collect(value: Any, path: Path, schema: Schema, out: FieldSet) -> None:
    names = field_names(path)
    if isinstance(value, dict):
        if schema.atomic_map(names):
            out.add(path)
            return
        for key, child in value.items():
            child_path = (*path, f"f:{key}")
            if child is None or child == {}:
                out.add(child_path)
            else:
                _collect(child, child_path, schema, out)
    elif isinstance(value, list):
        kind, keys = schema.list_type(names)
        if kind == "atomic":
            out.add(path)
        elif kind == "set":
            out.update((*path, value_element(item)) for item in value)
        else:
            for index, item in enumerate(value):
                item_path = (*path, key_element(item, keys) or f"i:{index}")
                out.add(item_path)
                if isinstance(item, dict):
                    _collect(item, item_path, schema, out)
    else:
        out.add(path)


# -- comparing two versions of an object (update) ----------------------------------------------------------------


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)

    def changed(self) -> FieldSet:
        return self.added | self.modified


_ABSENT: Final = object()


def compare(old: Any, new: Any, schema: Schema) -> Comparison:
    """What `new` added, modified and removed relative to `old` (structured-merge-diff's Compare)."""
    result = Comparison()
    _compare(old, new, (), schema, result)
    return result


def _shape(value: Any) -> str:
    if value is _ABSENT or value is None:
        return "none"
    if isinstance(value, dict):
        return "map"
    return "list" if isinstance(value, list) else "scalar"


def _is_empty(value: Any) -> bool:
    return value is _ABSENT or value is None or value == {} or value == []


def _compare(lhs: Any, rhs: Any, path: Path, schema: Schema, out: Comparison) -> None:
    names = field_names(path)
    maps = _shape(lhs) in ("map", "none") and _shape(rhs) in ("map", "none") and "map" in (_shape(lhs), _shape(rhs))
    lists = _shape(lhs) in ("list", "none") and _shape(rhs) in ("list", "none") and "list" in (_shape(lhs), _shape(rhs))
    leaf = not (maps or lists) or (_is_empty(lhs) and _is_empty(rhs))
    if maps and not leaf and schema.atomic_map(names):
        leaf = True
    kind, keys = schema.list_type(names) if lists else ("atomic", ())
    if lists and kind == "atomic":
        leaf = True
    if leaf:
        if path:
            if lhs is _ABSENT:
                out.added.add(path)
            elif rhs is _ABSENT:
                out.removed.add(path)
            elif lhs != rhs:
                out.modified.add(path)
        return
    if maps:
        left = lhs if isinstance(lhs, dict) else {}
        right = rhs if isinstance(rhs, dict) else {}
        for key in [*left, *(k for k in right if k not in left)]:
            _compare(left.get(key, _ABSENT), right.get(key, _ABSENT), (*path, f"f:{key}"), schema, out)
    else:
        left_items = _items(lhs, kind, keys)
        right_items = _items(rhs, kind, keys)
        for element in [*left_items, *(e for e in right_items if e not in left_items)]:
            _compare(left_items.get(element, _ABSENT), right_items.get(element, _ABSENT), (*path, element), schema, out)
    if path:
        if lhs is _ABSENT:
            out.added.add(path)
        elif rhs is _ABSENT:
            out.removed.add(path)


def _items(value: Any, kind: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, list):
        return {}
    if kind == "set":
        return {value_element(item): item for item in value}
    return {(key_element(item, keys) or f"i:{index}"): item for index, item in enumerate(value)}


# -- merging an applied configuration into the live object -------------------------------------------------------


def merge(live: Any, config: Any, schema: Schema, path: Path = ()) -> Any:
    """`config` merged into `live`: maps field by field, associative and set lists item by item."""
    names = field_names(path)
    if isinstance(live, dict) and isinstance(config, dict) and not schema.atomic_map(names):
        out = copy.deepcopy(live)
        for key, value in config.items():
            out[key] = merge(live.get(key, _ABSENT), value, schema, (*path, f"f:{key}"))
        return out
    if isinstance(live, list) and isinstance(config, list):
        kind, keys = schema.list_type(names)
        if kind == "set":
            return copy.deepcopy(live) + [copy.deepcopy(v) for v in config if v not in live]
        if kind == "map":
            merged = _items(live, kind, keys)
            for element, item in _items(config, kind, keys).items():
                merged[element] = merge(merged.get(element, _ABSENT), item, schema, (*path, element))
            return [copy.deepcopy(v) for v in merged.values()]
    return copy.deepcopy(config)


def remove(obj: dict[str, Any], paths: Iterable[Path], schema: Schema) -> None:
    """Remove the fields and items at `paths` from `obj` (in place); maps left empty by it go too."""
    wanted = set(paths)
    # A path whose parent goes too goes with it (and an item must be found by its key before its fields go).
    outermost = [p for p in wanted if not any(p[:n] in wanted for n in range(1, len(p)))]
    for path in sorted(outermost, key=len, reverse=True):
        _remove_one(obj, path, schema)


def _remove_one(obj: Any, path: Path, schema: Schema) -> None:
    trail: list[tuple[Any, Any]] = []  # (container, index or key) down to the field
    node = obj
    for depth, element in enumerate(path):
        if isinstance(node, dict) and element.startswith("f:") and element[2:] in node:
            trail.append((node, element[2:]))
            node = node[element[2:]]
        elif isinstance(node, list):
            kind, keys = schema.list_type(field_names(path[:depth]))
            found = next((i for i, e in enumerate(_items(node, kind, keys)) if e == element), None)
            if found is None:
                return
            trail.append((node, found))
            node = node[found]
        else:
            return
    container, where = trail.pop()
    del container[where]
    # Parents emptied by the removal go as well, like an omitempty field of a compiled type.
    while trail and container in ({}, []):
        container, where = trail.pop()
        del container[where]
