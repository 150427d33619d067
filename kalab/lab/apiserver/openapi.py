"""The OpenAPI documents kube-apiserver publishes: `/openapi/v2` and `/openapi/v3/<group version>`.

Every served kind has its real schema: built-ins from `builtin_schemas`, the OpenShift/OLM kinds the lab serves as
built-ins from `openshift_schemas` (CRDs on OpenShift), and every CRD from each served version's openAPIV3Schema.
kubectl reads them for `explain`, for client-side validation (`kind: List` files, older clients), for computing
client-side apply patches, and to learn that PATCH takes `fieldValidation` (then it validates on the server).

Documents are built once per state (the set of served types and the CRDs' resourceVersions) and cached; each carries
its hash, so the v3 root's `?hash=` links and the v2 ETag change exactly when a CRD comes, goes or changes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from kalab.lab.apiserver import openapi_proto
from kalab.lab.apiserver.builtin_schemas import INT_OR_STRING, META, PACKAGES, QUANTITY, builtin_definitions
from kalab.lab.apiserver.discovery import GIT_VERSION
from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.openshift_schemas import openshift_schemas
from kalab.lab.apiserver.resources import Registry, ResourceType
from kalab.lab.apiserver.store import Store
from kalab.model import objects

Doc = dict[str, Any]
Gvk = tuple[str, str, str]
# What clients ask for (the older spelling with "@", which Go's mime parser rejects in a Content-Type) and what
# kube-apiserver answers with.
PROTOBUF_V2_ASKED = (
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
)
PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_OBJECT_META = f"{META}.ObjectMeta"
_LIST_META = f"{META}.ListMeta"
_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json")
_PATCH_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
_METADATA_DESCRIPTION = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_LIST_METADATA_DESCRIPTION = (
    "Standard list metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
# Keywords OpenAPI v2 (and gnostic's Schema message) lack; kube-apiserver drops them from CRD schemas in v2.
_V3_ONLY = ("nullable", "oneOf", "anyOf", "not", "x-kubernetes-validations")


def definition_name(group: str, version: str, kind: str) -> str:
    """A CRD kind's definition name: the group's domain reversed, then version and kind (`io.redhat.x.v1.Kind`)."""
    return ".".join([*reversed(group.split(".")), version, kind])


def custom_schemas(crds: list[Doc]) -> dict[Gvk, Doc]:
    """(group, version, kind) → openAPIV3Schema of the OpenShift built-ins and of each CRD's served versions."""
    found = openshift_schemas()
    for crd in crds:
        spec = objects.spec(crd)
        group, kind = spec.get("group", ""), (spec.get("names") or {}).get("kind", "")
        for version in spec.get("versions") or []:
            schema = ((version.get("schema") or {}).get("openAPIV3Schema")) if version.get("served", True) else None
            if group and kind and version.get("name") and isinstance(schema, dict):
                found[(group, version["name"], kind)] = schema
    return found


def _with_meta(schema: Doc, group: str, version: str, kind: str, list_kind: bool) -> Doc:
    doc = copy.deepcopy(schema)
    properties = doc.setdefault("properties", {})
    doc.setdefault("type", "object")
    meta = _LIST_META if list_kind else _OBJECT_META
    properties["metadata"] = {
        "$ref": f"#/definitions/{meta}",
        "description": _LIST_METADATA_DESCRIPTION if list_kind else _METADATA_DESCRIPTION,
    }
    doc["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    return doc


def _list_schema(item_definition: str, kind: str) -> Doc:
    return {
        "description": f"{kind}List is a list of {kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object.",
            },
            "items": {
                "type": "array",
                "description": f"List of {kind.lower()}s.",
                "items": {"$ref": f"#/definitions/{item_definition}"},
            },
            "kind": {
                "type": "string",
                "description": "Kind is a string value representing the REST resource this object represents.",
            },
        },
    }


def _refs(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[-1])
        for key, value in schema.items():
            if key not in ("default", "enum", "example"):
                found |= _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _refs(item)
    return found


def _closure(definitions: dict[str, Doc], roots: set[str]) -> list[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        todo += _refs(definitions[name])
    return sorted(seen)


def to_v2(schema: Any) -> Any:
    """A schema as OpenAPI v2 can say it: v3-only keywords dropped, as kube-apiserver publishes CRDs in v2."""
    if isinstance(schema, list):
        return [to_v2(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: Doc = {}
    for key, value in schema.items():
        if key in _V3_ONLY:
            continue
        if key in ("default", "enum", "example"):
            out[key] = value
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: to_v2(prop) for name, prop in value.items()}
        else:
            out[key] = to_v2(value)
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)  # either an integer or a string: v2 can only leave the type open
    if out.get("x-kubernetes-preserve-unknown-fields") and "properties" in out and "additionalProperties" not in out:
        # v2 validators reject fields that are not listed, which this schema allows: leave it open.
        del out["properties"]
        out.pop("required", None)
    return out


def to_v3(schema: Any) -> Any:
    """A definition as OpenAPI v3 spells it: refs under components, a ref with siblings wrapped in allOf."""
    if isinstance(schema, list):
        return [to_v3(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: Doc = {}
    for key, value in schema.items():
        if key in ("default", "enum", "example"):
            out[key] = value
        elif key == "$ref":
            out[key] = str(value).replace("#/definitions/", "#/components/schemas/")
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: to_v3(prop) for name, prop in value.items()}
        else:
            out[key] = to_v3(value)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


# In v3 these two are either of two types, and say so with oneOf instead of a type (explain then names them).
_V3_SPECIAL: dict[str, Doc] = {
    INT_OR_STRING: {"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
    QUANTITY: {"oneOf": [{"type": "string"}, {"type": "number"}]},
}


def _v3_definition(name: str, schema: Doc) -> Doc:
    special = _V3_SPECIAL.get(name)
    if special is not None:
        return {"description": schema.get("description", ""), **special}
    return dict(to_v3(schema))


def _digest(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest().upper()


@dataclass
class Documents:
    """The documents of one state of the served API, built once; the protobuf form on first use."""

    v2: Doc
    v2_json: bytes
    v2_etag: str
    v3: dict[str, bytes]  # group-version path (`api/v1`, `apis/apps/v1`) → document
    v3_hash: dict[str, str]
    definitions: dict[str, Doc] = field(default_factory=dict, repr=False)  # v3 keywords, `#/definitions/` refs
    by_gvk: dict[Gvk, str] = field(default_factory=dict, repr=False)
    _v2_proto: bytes | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def v2_protobuf(self) -> bytes:
        with self._lock:
            if self._v2_proto is None:
                self._v2_proto = openapi_proto.document(self.v2)
            return self._v2_proto

    def v3_root(self) -> Doc:
        return {
            "paths": {
                gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"} for gv, digest in self.v3_hash.items()
            }
        }


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _operations(rt: ResourceType, definition: str, v3: bool) -> Doc:
    """The object path's get and patch, which say what kubectl looks for: the kind, and `fieldValidation`."""
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    ref = f"#/definitions/{definition}"
    parameters: list[Doc]
    ok: Doc
    if v3:
        parameters = [
            {"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for p in _PATCH_PARAMETERS
        ]
        ok = {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}
    else:
        parameters = [{"name": p, "in": "query", "type": "string", "uniqueItems": True} for p in _PATCH_PARAMETERS]
        ok = {"description": "OK", "schema": {"$ref": ref}}
    common = {"x-kubernetes-group-version-kind": gvk, "responses": {"200": ok}}
    patch: Doc = {
        "operationId": f"patch{rt.kind}",
        "x-kubernetes-action": "patch",
        "parameters": parameters,
        **common,
    }
    # kubectl computes strategic merge patches from these schemas only where the patch body may be one; custom
    # resources take JSON and merge patches only.
    patch_types = [*_PATCH_TYPES, *(["application/strategic-merge-patch+json"] if rt.group in PACKAGES else [])]
    body_schema = {"$ref": f"#/definitions/{META}.Patch"}
    if v3:
        patch["requestBody"] = {"content": {t: {"schema": body_schema} for t in patch_types}, "required": True}
    else:
        patch["consumes"] = patch_types
        patch["parameters"] = [
            {"name": "body", "in": "body", "required": True, "schema": body_schema},
            *parameters,
        ]
    return {"get": {"operationId": f"read{rt.kind}", "x-kubernetes-action": "get", **common}, "patch": patch}


class OpenApi:
    """Builds and caches the documents; `documents()` is cheap while nothing they describe has changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: object = None
        self._docs: Documents | None = None

    def documents(self, registry: Registry, crds: list[Doc]) -> Documents:
        versions = tuple(sorted((objects.name_of(c), c["metadata"].get("resourceVersion")) for c in crds))
        return self.documents_for(registry, versions, lambda: crds)

    def documents_for(
        self, registry: Registry, crd_versions: tuple[tuple[str, str | None], ...], crds: Callable[[], list[Doc]]
    ) -> Documents:
        """The documents for the served types and the CRDs at `crd_versions` ((name, resourceVersion) pairs,
        sorted); `crds` reads the CRDs themselves, only when the documents must be rebuilt."""
        types = tuple(sorted(registry, key=lambda rt: (rt.group, rt.version, rt.plural)))
        key = (types, crd_versions)
        with self._lock:
            if self._docs is None or key != self._key:
                self._docs = build(list(types), crds())
                self._key = key
            return self._docs


def build(types: list[ResourceType], crds: list[Doc]) -> Documents:
    """The v2 document and one v3 document per group version, for the served `types` and the stored `crds`."""
    builtin_gvks = tuple(sorted((rt.group, rt.version, rt.kind) for rt in types if rt.group in PACKAGES))
    definitions_, by_gvk_ = builtin_definitions(builtin_gvks)
    definitions = dict(definitions_)
    by_gvk = dict(by_gvk_)
    customs = custom_schemas(crds)
    for rt in types:
        gvk = (rt.group, rt.version, rt.kind)
        if gvk in by_gvk or gvk not in customs:
            continue
        name = definition_name(*gvk)
        definitions[name] = _with_meta(customs[gvk], *gvk, list_kind=False)
        list_name = f"{name}List"
        definitions[list_name] = _with_meta(_list_schema(name, rt.kind), rt.group, rt.version, rt.list_kind, True)
        by_gvk[gvk] = name
        by_gvk[(rt.group, rt.version, rt.list_kind)] = list_name

    served = [rt for rt in types if (rt.group, rt.version, rt.kind) in by_gvk]
    v2_paths: Doc = {}
    for rt in served:
        v2_paths[rt.path("{namespace}", "{name}")] = _operations(rt, by_gvk[(rt.group, rt.version, rt.kind)], False)
    used = _closure(definitions, set(by_gvk.values()) | {f"{META}.Patch"})
    v2: Doc = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": v2_paths,
        "definitions": {name: to_v2(definitions[name]) for name in used},
    }
    v2_json = json.dumps(v2, separators=(",", ":"), sort_keys=True).encode()

    v3: dict[str, bytes] = {}
    v3_hash: dict[str, str] = {}
    by_gv: dict[tuple[str, str], list[ResourceType]] = {}
    for rt in served:
        by_gv.setdefault((rt.group, rt.version), []).append(rt)
    for (group, version), gv_types in sorted(by_gv.items()):
        roots = {by_gvk[g] for g in by_gvk if g[:2] == (group, version)} | {f"{META}.Status", f"{META}.Patch"}
        if any("scale" in rt.subresources for rt in gv_types):
            roots.add(by_gvk.get(("autoscaling", "v1", "Scale"), ""))
        paths = {
            rt.path("{namespace}", "{name}"): to_v3(_operations(rt, by_gvk[(group, version, rt.kind)], True))
            for rt in sorted(gv_types, key=lambda r: r.plural)
        }
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths,
            "components": {
                "schemas": {name: _v3_definition(name, definitions[name]) for name in _closure(definitions, roots)}
            },
        }
        data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        gv = _gv_path(group, version)
        v3[gv], v3_hash[gv] = data, _digest(data)
    return Documents(
        v2=v2,
        v2_json=v2_json,
        v2_etag=f'"{_digest(v2_json)}"',
        v3=v3,
        v3_hash=v3_hash,
        definitions=definitions,
        by_gvk=by_gvk,
    )


# -- serving ---------------------------------------------------------------------------------------------------------

_CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
_caches: weakref.WeakKeyDictionary[Store, OpenApi] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def documents_of(store: Store) -> Documents:
    """The current documents of the API `store` serves (one cache per store)."""
    with _caches_lock:
        cache = _caches.get(store)
        if cache is None:
            cache = _caches[store] = OpenApi()
    if not any(rt.key == _CRD_KEY for rt in store.registry):
        return cache.documents(store.registry, [])
    # Asked on every strict write: tell whether the CRDs changed from their versions alone, without copying their
    # (large) schemas; read them only to rebuild.
    crd_rt = store.registry.by_key(_CRD_KEY)
    versions = tuple(
        sorted(store.collect(crd_rt, lambda c: (str(objects.name_of(c)), c["metadata"].get("resourceVersion"))))
    )
    return cache.documents_for(store.registry, versions, lambda: store.list(crd_rt)[0])


def _accepts(accept: str, media_type: str) -> bool:
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        if fields[0] == media_type and not any(f.replace(" ", "") == "q=0" for f in fields[1:]):
            return True
    return False


def respond(store: Store, segments: list[str], query: str, accept: str, if_none_match: str) -> Answer | None:
    """The answer to GET /openapi/...; None when there is no such document (a 404)."""
    docs = documents_of(store)
    if segments == ["openapi", "v2"]:
        # kubectl and client-go ask for protobuf only; curl and browsers for JSON or anything.
        proto = any(_accepts(accept, t) for t in PROTOBUF_V2_ASKED) and not _accepts(accept, "application/json")
        if if_none_match and if_none_match == docs.v2_etag:
            return Answer(304, [("ETag", docs.v2_etag)], b"")
        body, content_type = (docs.v2_protobuf(), PROTOBUF_V2) if proto else (docs.v2_json, "application/json")
        headers = [
            ("Content-Type", content_type),
            ("ETag", docs.v2_etag),
            ("Vary", "Accept"),
            ("Cache-Control", "no-cache, private"),
        ]
        return Answer(200, headers, body)
    if segments == ["openapi", "v3"]:
        body = json.dumps(docs.v3_root(), separators=(",", ":")).encode()
        return Answer(200, [("Content-Type", "application/json"), ("Cache-Control", "no-cache, private")], body)
    if segments[:2] != ["openapi", "v3"]:
        return None
    gv = "/".join(segments[2:])
    data = docs.v3.get(gv)
    if data is None:
        return None
    digest = docs.v3_hash[gv]
    wanted = parse_qs(query).get("hash", [""])[0]
    if wanted and wanted != digest:
        # An outdated link, as kube-apiserver answers it: go to the current document.
        return Answer(301, [("Location", f"/openapi/v3/{gv}?hash={digest}"), ("Content-Length", "0")], b"")
    etag = f'"{digest}"'
    if if_none_match == etag:
        return Answer(304, [("ETag", etag)], b"")
    cache = "public, immutable" if wanted else "no-cache, private"
    return Answer(200, [("Content-Type", "application/json"), ("ETag", etag), ("Cache-Control", cache)], data)


# -- field validation ------------------------------------------------------------------------------------------------
# kubectl sends `fieldValidation=Strict` (its default, `--validate=strict`) once the v3 document says PATCH takes it,
# and then relies on the server to reject unknown fields, as kube-apiserver's strict decoding does.

_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


def _resolve(schema: Doc, definitions: dict[str, Doc]) -> Doc:
    for _ in range(32):  # a chain of refs, never a cycle in practice
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            all_of = schema.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and "properties" not in schema:
                schema = all_of[0]
                continue
            return schema
        schema = definitions.get(ref.rsplit("/", 1)[-1], {})
    return schema


def unknown_fields(value: Any, schema: Doc, definitions: dict[str, Doc], path: str = "") -> list[str]:
    """Dotted paths of the fields in `value` its schema does not know (strategic-merge `$` directives aside)."""
    schema = _resolve(schema, definitions)
    found: list[str] = []
    if isinstance(value, dict):
        properties: dict[str, Doc] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        open_ended = schema.get("x-kubernetes-preserve-unknown-fields") is True or bool(additional)
        embedded = not path or schema.get("x-kubernetes-embedded-resource") is True
        for name, item in value.items():
            here = f"{path}.{name}" if path else name
            if name.startswith("$"):
                continue
            if name in properties:
                found += unknown_fields(item, properties[name], definitions, here)
            elif isinstance(additional, dict):
                found += unknown_fields(item, additional, definitions, here)
            elif properties and not open_ended and not (embedded and name in _ROOT_FIELDS):
                found.append(here)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], definitions, f"{path}[{index}]")
    return found


def check_fields(store: Store, rt: ResourceType, document: Any, directive: str | None) -> None:
    """Reject a write whose body has unknown fields when the client asked for `fieldValidation=Strict`."""
    if (directive or "").lower() != "strict" or not isinstance(document, dict):
        return
    docs = documents_of(store)
    name = docs.by_gvk.get((rt.group, rt.version, rt.kind))
    if name is None:
        return
    unknown = unknown_fields(document, docs.definitions[name], docs.definitions)
    if unknown:
        listed = ", ".join(f'unknown field "{f}"' for f in unknown)
        raise ApiError(
            400,
            "BadRequest",
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: {listed}',
        )
