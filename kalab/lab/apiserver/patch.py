"""PATCH bodies as kube-apiserver understands them: JSON merge patch, JSON patch, strategic merge patch and apply.

- JSON merge patch (RFC 7386) is hand-written: it is a dozen lines and has no edge the RFC leaves open.
- JSON patch (RFC 6902) uses the `jsonpatch` library.
- Strategic merge patch is hand-written because no library implements it: kube-apiserver derives the merge key of
  each list from Go struct tags; here a table names the lists the runbook touches (containers by name, ports by
  containerPort or port, conditions by type, …). Lists not in the table are replaced, as for atomic lists.
  Directives: `$patch: replace|delete|merge`, `$retainKeys`, `$setElementOrder/<list>`,
  `$deleteFromPrimitiveList/<list>`.
- Server-side apply (`application/apply-patch+yaml`) is not a patch format but field ownership: the API server
  hands it to `kalab.lab.apiserver.fieldmanager` (managedFields, conflicts, removal of dropped fields). Here it is
  only parsed, and merged as a strategic merge patch where no ownership applies (the scale subresource).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Final

import jsonpatch
import yaml

from kalab.lab.apiserver.decoding import MAX_DEPTH, depth_error
from kalab.lab.apiserver.errors import ApiError, bad_request
from kalab.model.wording import shorten

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES: Final = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

_CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})
# list field → merge key; `ports` depends on where it sits (see _merge_key)
_MERGE_KEYS: Final[dict[str, str]] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
    "addresses": "type",  # node status addresses
}
_SET_LISTS = frozenset({"finalizers"})  # primitive lists merged as sets
_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


class _Delete:
    """Marker: the patched map asked to be removed (`$patch: delete`)."""


_DELETE = _Delete()


# -- JSON merge patch (RFC 7386) ---------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- JSON patch (RFC 6902) ---------------------------------------------------------------------------------------


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    try:
        return jsonpatch.JsonPatch(operations).apply(copy.deepcopy(target))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
        # A failed `test` operation or a path that does not exist: kube-apiserver answers 422 for both.
        message = f"the server rejected our request due to an error in our request: {err}"
        raise ApiError(422, "Invalid", message) from err
    except (TypeError, KeyError, ValueError) as err:
        raise bad_request(f"invalid JSON patch: {err}") from err


# -- strategic merge patch ---------------------------------------------------------------------------------------


def _merge_key(field: str, parent: str) -> str | None:
    if field == "ports":
        return "containerPort" if parent in _CONTAINER_LISTS else "port"
    return _MERGE_KEYS.get(field)


def strategic_merge(original: Any, patch: Any) -> Any:
    """Apply a strategic merge patch to `original` (neither is changed)."""
    result = _merge_map(copy.deepcopy(original) if isinstance(original, dict) else {}, patch, "")
    if isinstance(result, _Delete):
        return {}
    return result


def _merge_map(original: dict[str, Any], patch: Any, parent: str) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip(patch)
    retain = patch.get("$retainKeys")
    orders = {k[len(_ORDER) :]: v for k, v in patch.items() if k.startswith(_ORDER)}
    for key, value in patch.items():
        if key.startswith("$"):
            if key.startswith(_DELETE_PRIMITIVE):
                field = key[len(_DELETE_PRIMITIVE) :]
                drop = value if isinstance(value, list) else []
                if isinstance(original.get(field), list):
                    original[field] = [v for v in original[field] if v not in drop]
            continue
        if value is None:
            original.pop(key, None)
        elif isinstance(value, dict):
            current = original.get(key)
            merged = _merge_map(current if isinstance(current, dict) else {}, value, parent)
            if isinstance(merged, _Delete):
                original.pop(key, None)
            else:
                original[key] = merged
        elif isinstance(value, list):
            original[key] = _merge_list(original.get(key), value, key, parent, orders.get(key))
        else:
            original[key] = value
    for field, order in orders.items():
        if field not in patch and isinstance(original.get(field), list) and isinstance(order, list):
            original[field] = _reorder(original[field], order, _merge_key(field, parent))
    if isinstance(retain, list):
        keep = set(retain) | {k for k in patch if not k.startswith("$")}
        for key in [k for k in original if k not in keep]:
            del original[key]
    return original


def _strip(value: Any) -> Any:
    """A patch value with its directives removed (what lands in the object when a value is replaced)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and set(v) == {"$patch"})]
    return copy.deepcopy(value)


def _merge_list(original: Any, patch: list[Any], field: str, parent: str, order: Any) -> list[Any]:
    current = original if isinstance(original, list) else []
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if field in _SET_LISTS:
        merged = list(current)
        merged += [v for v in patch if v not in merged]
        return merged
    key = _merge_key(field, parent)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return _strip(patch)  # type: ignore[no-any-return]
    merged = [copy.deepcopy(item) for item in current]
    for item in patch:
        wanted = item.get(key)
        index = next((i for i, old in enumerate(merged) if isinstance(old, dict) and old.get(key) == wanted), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
            continue
        if index is None:
            merged.append(_strip(item))
        else:
            result = _merge_map(merged[index], item, field)
            if isinstance(result, _Delete):
                del merged[index]
            else:
                merged[index] = result
    if isinstance(order, list):
        merged = _reorder(merged, order, key)
    return merged


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """Put items in `$setElementOrder`'s order; items it does not name keep their place after those it does."""

    def ident(item: Any) -> Any:
        value = item.get(key) if key and isinstance(item, dict) else item
        return json.dumps(value, sort_keys=True)

    wanted = [json.dumps(o.get(key) if key and isinstance(o, dict) else o, sort_keys=True) for o in order]
    rank = {ident_: i for i, ident_ in enumerate(wanted)}
    named = sorted((i for i in items if ident(i) in rank), key=lambda i: rank[ident(i)])
    return named + [i for i in items if ident(i) not in rank]


# -- applying a PATCH request ------------------------------------------------------------------------------------


def parse_body(body: bytes, content_type: str) -> Any:
    """A request body as JSON, or as YAML for apply patches and YAML uploads; 400 when it is neither, or nests
    deeper than any object does (which would otherwise exhaust the stack of every walk over it)."""
    try:
        if "yaml" in content_type:
            parsed = yaml.safe_load(body.decode("utf-8")) if body.strip() else None
        else:
            parsed = json.loads(body) if body.strip() else None
    except (ValueError, yaml.YAMLError) as err:
        raise bad_request(f"the request body could not be decoded: {shorten(str(err))}") from err
    except RecursionError:
        raise bad_request(f"the request body could not be decoded: it nests deeper than {MAX_DEPTH} levels") from None
    too_deep = depth_error(parsed)
    if too_deep is not None:
        raise bad_request(f"the request body could not be decoded: {too_deep}")
    return parsed


def apply_patch(current: Mapping[str, Any], patch: Any, patch_type: str) -> dict[str, Any]:
    """The object after applying `patch` of `patch_type` (one of PATCH_TYPES) to `current`."""
    if patch_type == JSON_PATCH:
        result = json_patch(dict(current), patch)
    elif not isinstance(patch, dict):
        raise bad_request("the patch must be a JSON object")
    elif patch_type == MERGE_PATCH:
        result = merge_patch(dict(current), patch)
    elif patch_type in (STRATEGIC_PATCH, APPLY_PATCH):
        result = strategic_merge(dict(current), patch)
    else:
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {patch_type}")
    if not isinstance(result, dict):
        raise ApiError(422, "Invalid", "the patched object is not a JSON object")
    return result
